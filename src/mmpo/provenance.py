"""What a benchmark number was computed from, and whether two numbers can be compared.

``evaluate.py`` records per benchmark, beside the metrics:

- ``data``: ``{"root": <benchmark.path>, "files": {<name>: <SHA-256>}}`` over the question and
  annotation files the benchmark read (:meth:`~mmpo.benchmarks.base.Benchmark.data_files`), named
  relative to the root. Images are not hashed (COCO val2014 alone is 6 GB); a changed question file,
  split or annotation changes the hash;
- ``decoding``: the generation settings (:func:`mmpo.generation.decoding_settings`);
- ``judge``: :meth:`~mmpo.benchmarks.base.Benchmark.judge_description` (backend, model, version), or
  ``None`` for rule-based scorers;
- ``config``: the benchmark's resolved config (prompt suffix, limit, parser options, ...).

:func:`comparability_problems` names every setting of these that differs between two result documents
(``config.path`` excepted: the same files may live elsewhere on another machine; ``config.generation``
is compared as ``decoding``), so two numbers are not put side by side as if they measured the same thing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import Benchmark

CHUNK = 1 << 20
#: the parts of a result document that must agree for two of its numbers to be comparable.
COMPARED = ("benchmark", "data", "decoding", "judge", "config")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (weights of many GB never sit in memory whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_provenance(benchmark: Benchmark) -> dict[str, Any]:
    """``{"root", "files"}``: the SHA-256 of every file ``benchmark.data_files()`` names (after ``items()``)."""
    root = benchmark.path
    files = {}
    for path in benchmark.data_files():
        name = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else str(path)
        files[name] = sha256_file(path)
    return {"root": None if root is None else str(root), "files": files}


class _NotRecorded:
    """Stands for a setting a result document does not hold (written before it was recorded)."""

    def __repr__(self) -> str:
        return "not recorded"


NOT_RECORDED = _NotRecorded()


def _part(document: Mapping[str, Any], part: str) -> Any:
    """One :data:`COMPARED` part as compared: the data by its file hashes, the config without ``path``
    and ``generation`` (compared as ``decoding``)."""
    value = document.get(part, NOT_RECORDED)
    if part == "data" and isinstance(value, Mapping):
        return {"files": value.get("files", NOT_RECORDED)}
    if part == "config" and isinstance(value, Mapping):
        return {key: leaf for key, leaf in value.items() if key not in ("path", "generation")}
    return value


def _differences(a: Any, b: Any, key: str) -> list[str]:
    """``key: a vs b`` for every differing leaf; mappings are compared key by key, anything else whole."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return [
            line
            for name in dict.fromkeys([*a, *b])
            for line in _differences(a.get(name, NOT_RECORDED), b.get(name, NOT_RECORDED), f"{key}.{name}")
        ]
    if a is NOT_RECORDED or b is NOT_RECORDED or a != b:
        return [f"{key}: {_short(a)} vs {_short(b)}"]
    return []


def comparability_problems(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """One line per setting of :data:`COMPARED` that differs between two result documents, e.g.
    ``decoding.max_new_tokens: 4 vs 8`` or ``data.files.test.jsonl: '3f..' vs '9c..'``; empty when their
    numbers measure the same thing (the model aside). A setting either document does not record differs."""
    return [line for part in COMPARED for line in _differences(_part(first, part), _part(second, part), part)]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
