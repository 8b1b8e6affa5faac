"""Two runs' results on one benchmark, item by item: what a method changed.

Records are paired by item id. A pair's :attr:`Pair.change` is, in display order (:data:`CHANGES`):
``fixed`` (A wrong, B right), ``broken`` (A right, B wrong), ``changed`` (other differences of answer
or verdict) and ``same``. Pairs are sorted by that order, then by A's item order, so the items where
the runs differ come first. The metrics are listed side by side, and
:func:`~mmpo.provenance.comparability_problems` names anything (data files, decoding, judge, config)
that makes the two numbers measure different things.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmpo.provenance import comparability_problems
from mmpo.reports.items import ItemView, view

CHANGES = ("fixed", "broken", "changed", "same")


@dataclass(frozen=True)
class Pair:
    first: ItemView
    second: ItemView

    @property
    def change(self) -> str:
        verdicts = (self.first.verdict, self.second.verdict)
        if verdicts == ("wrong", "right"):
            return "fixed"
        if verdicts == ("right", "wrong"):
            return "broken"
        if self.first.answer != self.second.answer or verdicts[0] != verdicts[1]:
            return "changed"
        return "same"


@dataclass(frozen=True)
class Comparison:
    """One benchmark of two runs: ordered pairs, unpaired ids, metric rows and comparability problems."""

    name: str
    pairs: list[Pair]
    only_first: list[str]
    only_second: list[str]
    metric_rows: list[tuple[str, float | None, float | None]]
    problems: list[str]

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(pair.change for pair in self.pairs)
        return {change: counted[change] for change in CHANGES if counted[change]}


def compare(first: Mapping[str, Any], second: Mapping[str, Any]) -> Comparison:
    """Pair the records of two result documents of one benchmark (module docstring)."""
    if first["benchmark"] != second["benchmark"]:
        raise ValueError(f"cannot compare benchmark {first['benchmark']!r} with {second['benchmark']!r}")
    views_a = [view(record) for record in first["records"]]
    by_id_b = {item.id: item for item in (view(record) for record in second["records"])}
    ids_a = {item.id for item in views_a}
    pairs = [Pair(item, by_id_b[item.id]) for item in views_a if item.id in by_id_b]
    pairs.sort(key=lambda pair: CHANGES.index(pair.change))  # stable: A's order within each change
    metrics = list(dict.fromkeys([*first["metrics"], *second["metrics"]]))
    return Comparison(
        name=first["benchmark"],
        pairs=pairs,
        only_first=[item.id for item in views_a if item.id not in by_id_b],
        only_second=[item_id for item_id in by_id_b if item_id not in ids_a],
        metric_rows=[(key, first["metrics"].get(key), second["metrics"].get(key)) for key in metrics],
        problems=comparability_problems(first, second),
    )


def run_documents(run: str | Path) -> dict[str, dict[str, Any]]:
    """``{benchmark: result document}`` of ``<run>/benchmarks/*.json`` (``run`` may be that folder)."""
    directory = Path(run)
    folder = directory if directory.name == "benchmarks" else directory / "benchmarks"
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(
            f"{directory} has no benchmarks/*.json; evaluate it first: python evaluate.py run={directory}"
        )
    return {path.stem: json.loads(path.read_text()) for path in files}
