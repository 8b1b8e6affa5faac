"""Rows of a local copy of a public data set: JSON list, JSONL, parquet (a file or a folder of shards) or an
HF ``datasets`` folder written by ``save_to_disk``.

Parquet and arrow rows are read through pyarrow without decoding, so an HF ``Image`` column arrives as
``{"bytes": ..., "path": ...}`` and a list of structs as a list of dicts, whatever wrote the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmpo.data.converters.base import BadRow

SUFFIXES = (".json", ".jsonl", ".parquet")
BATCH_ROWS = 256


class SourceError(ValueError):
    """The input path cannot be read as any supported layout."""


@dataclass
class Source:
    """The files of one input and their row count (for the progress bar)."""

    files: list[Path]
    total: int | None

    def rows(self) -> Iterator[tuple[Path, int, Any]]:
        """``(file, row number from 1, row)`` in file order; an unparsable JSONL line comes as a BadRow."""
        for path in self.files:
            yield from ((path, number, row) for number, row in _rows(path))


def open_source(path: str | Path) -> Source:
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            return Source([path], _arrow_dataset(path).num_rows)
        if (path / "dataset_dict.json").is_file():
            splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise SourceError(f"{path} holds several splits {splits}; point --input at one of them")
        shards = sorted(path.glob("*.parquet"))
        if not shards:
            raise SourceError(f"{path} holds no *.parquet file and is no datasets folder (save_to_disk)")
        return Source(shards, sum(_parquet_rows(p) for p in shards))
    if not path.is_file():
        raise SourceError(f"input {str(path)!r} does not exist")
    if path.suffix not in SUFFIXES:
        raise SourceError(f"input {path.name!r}: unknown file type; allowed: {list(SUFFIXES)} or a folder")
    return Source([path], _parquet_rows(path) if path.suffix == ".parquet" else None)


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    if path.is_dir():
        yield from _table_rows(_arrow_dataset(path).with_format("arrow").iter(batch_size=BATCH_ROWS))
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from _table_rows(pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS))
    elif path.suffix == ".jsonl":
        with open(path) as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as error:
                        yield number, BadRow("(line)", f"not valid JSON: {error}")
    else:
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise SourceError(f"{path}: not valid JSON: {error}") from None
        if not isinstance(rows, list):
            raise SourceError(f"{path}: a .json input must hold a list of rows, got {type(rows).__name__}")
        yield from enumerate(rows, start=1)


def _table_rows(batches) -> Iterator[tuple[int, Any]]:
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _arrow_dataset(path: Path):
    import datasets

    return datasets.load_from_disk(str(path))
