"""Collect the benchmark results of many runs into one table: markdown, CSV, a bar chart and wandb.

    python scripts/results_table.py outputs/dpo_shapes/multirun_<time> outputs/sft_shapes/<time> \\
        --metrics 'shapes_pope/avg/accuracy' 'shapes_chair/CHAIR*' --out outputs/results

Each argument is a run directory, a directory above runs (a multirun sweep) or a glob of either; a run
is any directory with ``benchmarks/*.json`` written by ``evaluate.py`` or a training ``metrics.csv``.
Columns are ``<benchmark>/<metric>`` names, plus the run's final validation metrics as ``val/<metric>``
(the last logged value of each ``val/`` column of ``metrics.csv``), matching the ``--metrics``
patterns (fnmatch; default all), in the order of the patterns.

Rows are methods. A run's method is the loss option in its ``config.yaml`` (``choices.loss``; ``<model name>
(no training)`` when there is none, e.g. a model evaluated with ``run=null``) followed by its command-line
overrides
(``.hydra/overrides.yaml``) except those matching :data:`IGNORED_OVERRIDES` (seeds, paths, loggers,
``model.init_from``, ...) or an ``--ignore`` pattern, so that the seeds of one method share a row,
e.g. ``dpo``, ``dpo data.image=none``, ``mdpo negative_sampler=crop``. A cell is ``mean ± std``
over the method's runs: ``m = Σ x_i / n`` and the sample standard deviation
``s = sqrt(Σ (x_i - m)^2 / (n - 1))`` (0 for n = 1); ``n`` is shown in its own column.

Writes ``results.md``, ``results.csv`` (``method, n, <column>_mean, <column>_std, ...``) and
``results.png`` (one panel per column on a grid of up to three per row, a horizontal bar per method
with ±std error bars and its ``mean ± std``) under ``--out``. When
any run was logged to wandb (it has a ``wandb/`` directory) the table is also logged as a
``wandb.Table`` in a ``results`` run (offline unless ``WANDB_MODE`` says otherwise).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import yaml

from mmpo.rundirs import final_metrics, read_overrides

IGNORED_OVERRIDES = (
    "seed",
    "experiment",
    "run_name",
    "task_name",
    "loss",
    "paths.*",
    "hydra.*",
    "hydra/*",
    "hparams_search",
    "optimized_*",
    "logger",
    "logger.*",
    "callbacks",
    "callbacks.*",
    "trainer.*",
    "model.init_from",
    "ckpt_path",
    "data.path",
    "data.limit_*",
    "run",
    "benchmark",
    "benchmarks.*",
    "batch_size",
    "device",
    "progress",
    "merge_adapter",
)


@dataclass
class RunResult:
    directory: Path
    method: str
    metrics: dict[str, float]
    logged_to_wandb: bool


@dataclass
class Cell:
    values: list[float]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1 in the denominator); 0 for a single value."""
        if len(self.values) < 2:
            return 0.0
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (len(self.values) - 1))


@dataclass
class Table:
    columns: list[str]
    rows: dict[str, dict[str, Cell]]
    counts: dict[str, int]


def find_runs(arguments: Iterable[str]) -> list[Path]:
    """Run directories under the arguments (globs expanded), in argument order, each once."""
    runs: dict[Path, None] = {}
    for argument in arguments:
        matches = sorted(glob.glob(argument)) or [argument]
        for match in map(Path, matches):
            if not match.is_dir():
                raise FileNotFoundError(f"{match} is not a directory")
            found = {path.parent.parent for path in match.rglob("benchmarks/*.json")}
            found |= {path.parent for path in match.rglob("metrics.csv")}
            runs.update(dict.fromkeys(sorted(found)))
    return list(runs)


def method_label(run: Path, ignore: Sequence[str]) -> str:
    """Loss name (``base`` without one) and the overrides that are not ignored, e.g. ``dpo data.image=none``."""
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    config = config or {}
    untrained = f"{(config.get('model') or {}).get('name', 'base')} (no training)"
    name = (config.get("choices") or {}).get("loss") or untrained
    kept = []
    for override in read_overrides(run):
        key = override.lstrip("+~").split("=", 1)[0]
        if not any(fnmatch(key, pattern) for pattern in ignore):
            kept.append(override.lstrip("+"))
    return " ".join([name, *sorted(kept)])


def read_run(run: Path, ignore: Sequence[str]) -> RunResult:
    metrics = final_metrics(run, prefix="val/")
    for path in sorted((run / "benchmarks").glob("*.json")):
        document = json.loads(path.read_text())
        for key, value in document["metrics"].items():
            metrics[f"{document['benchmark']}/{key}"] = float(value)
    return RunResult(run, method_label(run, ignore), metrics, (run / "wandb").is_dir())


def aggregate(results: Sequence[RunResult], patterns: Sequence[str]) -> Table:
    """Group runs by method (first-seen order); the columns are the metrics matching ``patterns``, in
    pattern order."""
    names = dict.fromkeys(key for result in results for key in result.metrics)
    if not names:
        raise SystemExit(
            f"none of the {len(results)} runs logged validation metrics or benchmark results (a run that "
            "stops before validating logs none); nothing to tabulate"
        )
    columns = [key for pattern in patterns for key in names if fnmatch(key, pattern)]
    columns = list(dict.fromkeys(columns))
    if not columns:
        raise SystemExit(f"no metric matches {list(patterns)}; available: {list(names)}")
    rows: dict[str, dict[str, Cell]] = {}
    counts: dict[str, int] = {}
    for result in results:
        row = rows.setdefault(result.method, {})
        counts[result.method] = counts.get(result.method, 0) + 1
        for column in columns:
            if column in result.metrics:
                row.setdefault(column, Cell([])).values.append(result.metrics[column])
    return Table(columns, rows, counts)


def cell_text(cell: Cell | None, digits: int) -> str:
    return "—" if cell is None else f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"


def to_markdown(table: Table, digits: int = 3) -> str:
    header = ["method", "n", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, row in table.rows.items():
        cells = [cell_text(row.get(column), digits) for column in table.columns]
        lines.append("| " + " | ".join([method, str(table.counts[method]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def csv_rows(table: Table) -> list[list[str | float | int]]:
    header: list[str | float | int] = ["method", "n"]
    for column in table.columns:
        header += [f"{column}_mean", f"{column}_std"]
    rows = [header]
    for method, row in table.rows.items():
        values: list[str | float | int] = [method, table.counts[method]]
        for column in table.columns:
            cell = row.get(column)
            values += ["", ""] if cell is None else [cell.mean, cell.std]
        rows.append(values)
    return rows


CHART_COLUMNS = 3


def chart_grid(panels: int) -> tuple[int, int]:
    """(rows, columns) of the chart: one panel per metric, at most :data:`CHART_COLUMNS` per row."""
    columns = max(1, min(CHART_COLUMNS, panels))
    return math.ceil(panels / columns), columns


def write_chart(table: Table, path: Path) -> None:
    """One panel per metric on a grid: a horizontal bar per method (its name readable on the y axis)
    at the mean, ±std error bars, and the ``mean ± std`` value beside it; unused panels hidden."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(table.rows)
    rows, columns = chart_grid(len(table.columns))
    height = 0.9 + 0.35 * len(methods)
    label_width = min(0.09 * max(len(m) for m in methods), 3.5)
    figure, axes = plt.subplots(
        rows, columns, figsize=(columns * (3.4 + label_width), rows * height), squeeze=False
    )
    positions = range(len(methods))
    for axis, column in zip(axes.flat, table.columns, strict=False):
        cells = [table.rows[m].get(column) for m in methods]
        means = [c.mean if c else math.nan for c in cells]
        stds = [c.std if c else 0.0 for c in cells]
        axis.barh(positions, means, xerr=stds, capsize=3, color=[f"C{i}" for i in positions])
        for y, cell in zip(positions, cells, strict=True):
            end = cell.mean + cell.std if cell and math.isfinite(cell.mean) else 0.0
            axis.annotate(
                cell_text(cell, 3),
                (end, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        axis.margins(x=0.45)  # room for the value labels
        axis.set_title("\n".join(textwrap.wrap(column, 40)), fontsize=9)
        axis.set_yticks(list(positions), methods, fontsize=8)
        axis.invert_yaxis()  # first method on top, as in the table
        axis.tick_params(axis="x", labelsize=7)
        axis.grid(axis="x", alpha=0.3)
    for axis in list(axes.flat)[len(table.columns) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def log_to_wandb(rows: list[list[str | float | int]], out: Path, project: str) -> None:
    import wandb

    run = wandb.init(
        project=project,
        name="results",
        job_type="results",
        dir=str(out),
        mode=os.environ.get("WANDB_MODE", "offline"),
    )
    # a missing cell is None, never "": wandb types each column from its values and rejects mixed ones
    data = [[None if value == "" else value for value in row] for row in rows[1:]]
    run.log({"results": wandb.Table(columns=[str(c) for c in rows[0]], data=data)})
    run.finish()


def main(argv: Sequence[str] | None = None) -> Table:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run directories, sweep directories or globs")
    parser.add_argument("--out", type=Path, default=Path("outputs/results"), help="output directory")
    parser.add_argument(
        "--metrics", nargs="+", default=["*"], help="fnmatch patterns of <benchmark>/<metric>"
    )
    parser.add_argument(
        "--ignore", nargs="*", default=[], help="more override keys (fnmatch) that do not define a method"
    )
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument(
        "--wandb",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: log the table when some run has a wandb/ directory",
    )
    parser.add_argument("--project", default="mmpo", help="wandb project of the results run")
    args = parser.parse_args(argv)

    runs = find_runs(args.paths)
    if not runs:
        raise SystemExit(f"no benchmarks/*.json or metrics.csv under {args.paths}; train or evaluate first")
    results = [read_run(run, [*IGNORED_OVERRIDES, *args.ignore]) for run in runs]
    table = aggregate(results, args.metrics)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table, args.digits)
    (args.out / "results.md").write_text(markdown)
    rows = csv_rows(table)
    with open(args.out / "results.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    write_chart(table, args.out / "results.png")
    if args.wandb == "on" or (args.wandb == "auto" and any(r.logged_to_wandb for r in results)):
        log_to_wandb(rows, args.out, args.project)
    print(markdown, end="")
    print(f"{len(runs)} runs -> {args.out}/results.{{md,csv,png}}")
    return table


if __name__ == "__main__":
    main()
