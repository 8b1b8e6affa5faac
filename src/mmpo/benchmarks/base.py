"""The contract between the generation harness and a benchmark's scorer.

A benchmark reads its public data files from a local directory (``benchmark.path``) and turns them
into :class:`EvalItem` s; the harness generates one output per item; the benchmark scores the outputs
and returns ``(metrics, records)``: a flat dict of numbers and one dict per item with the id, prompt,
output and whatever the scorer parsed from it, so every number can be traced back to the text.

Nothing here downloads anything. Absent data raises :class:`BenchmarkDataMissing`, whose message
names the benchmark, the config key to set, the exact files expected under it, and where to get them.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class EvalItem:
    """One prompt to generate for.

    Attributes:
        id: unique within the benchmark; the key of the harness's ``outputs`` dict.
        image: local image file path, ``None`` for a text-only question.
        prompt: the question or instruction as shown to the model, without chat template; it already
            ends with the benchmark's ``prompt_suffix``.
        meta: whatever the scorer needs (label, category, ground-truth objects, pair id, ...).
    """

    id: str
    image: str | None
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict)


class BenchmarkDataMissing(FileNotFoundError):
    """A benchmark's local data is absent; the message says what to put where."""

    def __init__(
        self,
        benchmark: str,
        key: str,
        root: str | Path | None,
        expected: Sequence[str],
        source: str,
        missing: Sequence[str] = (),
    ) -> None:
        where = "is not set" if root is None else f"is {str(root)!r}"
        lines = [
            f"{benchmark}: benchmark data not found. The config key `{key}` {where}; it must name a local "
            "directory holding:",
            *(f"  - {name}" for name in expected),
        ]
        if missing:
            lines.append("Missing now: " + ", ".join(missing))
        lines.append(f"Get them from: {source}")
        lines.append("Nothing is downloaded at run time; place the files there or override the key.")
        super().__init__("\n".join(lines))
        self.benchmark = benchmark
        self.key = key
        self.expected = list(expected)


class Benchmark(abc.ABC):
    """Base class of every benchmark; configs instantiate subclasses with Hydra ``_target_``.

    Args:
        path: local directory with the benchmark's files in their public layout.
        prompt_suffix: appended verbatim to every question (e.g. ``"\\nAnswer the question using a
            single word or phrase."``).
        limit: keep only the first ``limit`` items (smoke runs); ``None`` keeps all.
        generation: decoding settings the harness passes to ``generate`` (``max_new_tokens``,
            ``num_beams``, ``do_sample``); kept here so that one config file pins a benchmark's protocol.
    """

    name: ClassVar[str]
    #: where the public files come from, quoted in :class:`BenchmarkDataMissing`.
    source: ClassVar[str]
    #: what evaluates it: ``generative`` benchmarks score generated text (a module kind's
    #: :class:`~mmpo.generation.Generator`), ``embedding`` ones score embeddings (an encoder).
    kind: ClassVar[str] = "generative"
    #: the config node this benchmark was built from; :class:`BenchmarkDataMissing` names its ``.path``.
    #: ``evaluate.load_benchmarks`` and the benchmark callback set it; the default is the usual node.
    config_key: str | None = None

    def __init__(
        self, path: str | None = None, prompt_suffix: str = "", limit: int | None = None, **kwargs: Any
    ) -> None:
        generation = kwargs.pop("generation", None)
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}: unknown option(s) {sorted(kwargs)}; the allowed keys are "
                "path, prompt_suffix, limit, generation and the benchmark's own options."
            )
        if limit is not None and limit < 1:
            raise ValueError(f"{type(self).__name__}: limit must be a positive integer or null, got {limit}")
        self.path = Path(path).expanduser() if path else None
        self.prompt_suffix = prompt_suffix
        self.limit = limit
        self.generation: dict[str, Any] = dict(generation or {})

    @abc.abstractmethod
    def items(self) -> list[EvalItem]:
        """Read the local data in its public format; raise :class:`BenchmarkDataMissing` if absent."""

    def run(self, model: Any, items: list[EvalItem]) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Evaluate ``model`` (the module kind's evaluation handle) on ``items``: generate with the pinned
        decoding, then :meth:`score`."""
        return self.score(items, model.generate(items, self.generation, description=self.name))

    @abc.abstractmethod
    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Score ``outputs`` (item id -> generated text) and return ``(metrics, per-item records)``."""

    def data_files(self) -> list[Path]:
        """The question / annotation files :meth:`items` and :meth:`score` read (not the images), whose
        SHA-256 the results record (:mod:`mmpo.provenance`); valid after :meth:`items`. None by default."""
        return []

    def judge_description(self) -> dict[str, Any] | None:
        """What graded the outputs when a model did (backend, model, version); ``None`` for rule-based
        scorers. Valid after :meth:`score`."""
        return None

    # --- helpers for subclasses -------------------------------------------------------------------

    def require(self, *relative: str) -> Path:
        """Return the data root after checking that every ``relative`` path exists under it."""
        expected = list(relative)
        key = f"{self.config_key or f'benchmarks.{self.name}'}.path"
        missing = expected if self.path is None else [n for n in expected if not (self.path / n).exists()]
        if missing:
            raise BenchmarkDataMissing(self.name, key, self.path, expected, self.source, missing)
        return self.path

    def under_root(self, *relative: str) -> list[Path]:
        """``relative`` paths under the data root (for :meth:`data_files`); none without a root."""
        return [] if self.path is None else [self.path / name for name in relative]

    def resolve(self, location: str) -> Path:
        """A data-relative option (``image_dir``, ...) as a path; absolute values are kept."""
        candidate = Path(location).expanduser()
        if candidate.is_absolute() or self.path is None:
            return candidate
        return self.path / candidate

    def with_suffix(self, question: str) -> str:
        return question + self.prompt_suffix

    def truncate(self, items: list[EvalItem]) -> list[EvalItem]:
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"{self.name}: item ids are not unique, e.g. {duplicates}")
        return items if self.limit is None else items[: self.limit]

    def outputs_for(self, items: Iterable[EvalItem], outputs: Mapping[str, str]) -> list[str]:
        """The outputs in item order; every item must have one."""
        items = list(items)
        missing = [item.id for item in items if item.id not in outputs]
        if missing:
            raise KeyError(
                f"{self.name}: no output for {len(missing)} of {len(items)} items, e.g. {missing[:5]}"
            )
        return [outputs[item.id] for item in items]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; blank lines are skipped, a bad line names file and line number."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error
    return rows


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is 0 (an empty set scores 0)."""
    return numerator / denominator if denominator else 0.0
