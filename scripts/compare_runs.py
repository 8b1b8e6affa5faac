"""Two runs on the same benchmark items, side by side: one self-contained HTML page.

    python scripts/compare_runs.py outputs/sft_shapes/<time> outputs/dpo_shapes/<time> \\
        [--benchmark shapes_chair] [--items 60] --out outputs/compare/sft_vs_dpo.html

A and B are run directories (or their ``benchmarks/`` folders) evaluated by ``evaluate.py``. Every
benchmark both have (or each ``--benchmark``) gets a section: the metrics of A and B with the
difference, a warning for each reason the numbers are not comparable (other data files, decoding,
judge or benchmark config), the counts of fixed / broken / changed / same items and the first
``--items`` pairs, the items where A and B differ first (:mod:`mmpo.reports.compare`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mmpo.reports.compare import Comparison, compare, run_documents
from mmpo.reports.html import render_comparison


def label(run: Path) -> str:
    """``<run name>/<time>`` of a run directory (its last two path parts)."""
    run = run.resolve()
    run = run.parent if run.name == "benchmarks" else run
    return "/".join(run.parts[-2:])


def main(argv: Sequence[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="run directory A")
    parser.add_argument("second", type=Path, help="run directory B")
    parser.add_argument(
        "--benchmark", action="append", help="benchmark to compare (repeatable); default: all in common"
    )
    parser.add_argument("--items", type=int, default=60, help="item pairs shown per benchmark")
    parser.add_argument("--out", type=Path, required=True, help="the HTML page to write")
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error(f"--items must be positive, got {args.items}")
    try:
        first, second = run_documents(args.first), run_documents(args.second)
    except FileNotFoundError as error:
        parser.error(str(error))
    common = [name for name in first if name in second]
    names = args.benchmark or common
    evaluated = f"A has {sorted(first)}, B has {sorted(second)}"
    if not names:
        parser.error(f"A and B have no evaluated benchmark in common; {evaluated}")
    if missing := [name for name in names if name not in common]:
        parser.error(f"--benchmark {missing}: not evaluated in both runs; {evaluated}")
    comparisons = [compare(first[name], second[name]) for name in names]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    labels = (label(args.first), label(args.second))
    args.out.write_text(render_comparison(comparisons, labels, args.items), encoding="utf-8")
    for comparison in comparisons:
        counts = ", ".join(f"{count} {change}" for change, count in comparison.counts.items())
        warning = f"; NOT COMPARABLE: {'; '.join(comparison.problems)}" if comparison.problems else ""
        print(f"{comparison.name}: {len(comparison.pairs)} common items ({counts}){warning}")
    print(f"-> {args.out}")
    return comparisons


if __name__ == "__main__":
    main()
