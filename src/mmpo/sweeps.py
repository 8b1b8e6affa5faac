"""Hydra multiruns: refuse those that would nest process groups, summarise those that ran.

:class:`SweepSummary` is a Hydra callback (``hydra.callbacks.sweep_summary`` in conf/hydra/default.yaml).

- ``on_multirun_start`` checks the sweep's process layout (:func:`process_layout_problem`): Hydra's basic
  launcher (and submitit's local one) runs every job in a process of its own making, so a trainer that
  starts more than one process per job (DDP, FSDP, DeepSpeed over ``trainer.devices > 1`` or
  ``trainer.num_nodes > 1``) would start its ranks by re-running the command line, i.e. the whole sweep
  once more per rank (lightning-hydra-template #393, #194). Multi-GPU sweeps run one SLURM job per point
  instead (``hydra/launcher=slurm``), where srun starts one task per GPU and Lightning's SLURM environment
  joins them; ``on_job_start`` checks each job too (a sweep over ``trainer=`` or ``trainer.devices=``).
  ``on_multirun_start`` also creates the sweep directory, where the Optuna sweeper keeps its study.
- ``on_multirun_end`` reads every job's run directory (:mod:`mmpo.rundirs`) and writes
  ``sweep_summary.csv``, ``sweep_summary.md`` and ``sweep_summary.png`` (``optimized_metric`` per point)
  into the sweep directory; the best point is the one whose final ``optimized_metric`` is highest
  (``optimized_direction=maximize``) or lowest (``minimize``), the earliest job on ties.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import yaml
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig

from mmpo.config import ConfigError
from mmpo.rundirs import final_metrics, read_overrides, read_summary

log = logging.getLogger("mmpo")

DIRECTIONS = ("maximize", "minimize")
"""Allowed values of ``optimized_direction``."""

SUMMARY_NAME = "sweep_summary"


def processes_per_node(trainer: DictConfig) -> int | None:
    """How many processes Lightning runs per node for ``trainer.devices``: the count of an int, a
    comma-separated string or a list of device ids; 1 for ``auto`` on the CPU; ``None`` when it depends on
    the machine (``-1``, ``auto`` on an accelerator) or is unknown."""
    devices = trainer.get("devices", "auto")
    if isinstance(devices, ListConfig | list):
        return len(devices)
    text = str(devices).strip()
    if text == "auto":
        return 1 if trainer.get("accelerator") == "cpu" else None
    if "," in text:
        return len([part for part in text.split(",") if part.strip()])
    try:
        count = int(text)
    except ValueError:  # not a form Lightning counts; it reports the value itself
        return None
    return count if count > 0 else None


def process_layout_problem(config: DictConfig) -> str | None:
    """Why this multirun's jobs cannot run their trainer's processes, or ``None`` when they can
    (module docstring). ``config`` is the sweep's composed config, with its ``hydra`` node."""
    trainer = config.trainer
    per_node = processes_per_node(trainer)
    nodes = int(trainer.get("num_nodes", 1))
    launcher = config.hydra.launcher
    devices = trainer.get("devices")
    if str(launcher._target_).endswith(".SlurmLauncher"):
        tasks, slurm_nodes = launcher.tasks_per_node, launcher.nodes
        if per_node == tasks and nodes == slurm_nodes:
            return None
        return (
            f"a SLURM job runs hydra.launcher.tasks_per_node={tasks} tasks on each of hydra.launcher.nodes="
            f"{slurm_nodes} nodes, one per trainer process, but trainer.devices={devices} and trainer."
            f"num_nodes={nodes}; set trainer.devices to the GPUs per node and trainer.num_nodes to the nodes "
            "(hydra/launcher=slurm takes its task and node counts from them)"
        )
    if per_node == 1 and nodes == 1:
        return None
    return (
        f"a multirun with trainer.devices={devices} and trainer.num_nodes={nodes} would start each job's "
        f"ranks by running the command line again, the whole sweep once per rank ({launcher._target_} "
        "runs the jobs on this machine). Sweep with trainer.devices=1 here, or run one SLURM job per point "
        "(hydra/launcher=slurm: srun starts one process per GPU); a single run (no -m) may use DDP"
    )


@dataclass
class SweepPoint:
    """One job of a sweep: its number, run directory, overrides, status and final metrics."""

    job: int
    directory: Path
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float]


def read_points(sweep_dir: Path) -> list[SweepPoint]:
    """The jobs of a sweep in job order: each subdirectory holding ``.hydra/overrides.yaml``; a job that
    wrote no ``summary.txt`` has status ``incomplete``."""
    points = []
    for record in sweep_dir.glob("*/.hydra/overrides.yaml"):
        run = record.parent.parent
        hydra_node = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]
        overrides = dict(o.lstrip("+~").split("=", 1) for o in read_overrides(run) if "=" in o)
        status = read_summary(run).get("status", "incomplete")
        points.append(SweepPoint(int(hydra_node["job"]["num"]), run, overrides, status, final_metrics(run)))
    return sorted(points, key=lambda point: point.job)


def swept_keys(points: list[SweepPoint]) -> list[str]:
    """The override keys whose values differ between points (the sweep's parameters), in first-seen order."""
    keys = dict.fromkeys(key for point in points for key in point.overrides)
    return [k for k in keys if len({point.overrides.get(k) for point in points}) > 1]


def best_point(points: list[SweepPoint], metric: str, direction: str) -> SweepPoint | None:
    """The point whose final ``metric`` is best in ``direction``; the earliest on ties; ``None`` when no
    point logged a finite value."""
    scored = [p for p in points if math.isfinite(p.metrics.get(metric, math.nan))]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda point: point.metrics[metric])  # max/min keep the first of equals


def value_text(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


def to_markdown(points: list[SweepPoint], metric: str, direction: str, storage: str | None) -> str:
    keys = swept_keys(points)
    best = best_point(points, metric, direction)
    header = ["job", *keys, "status", metric]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in points:
        cells = [str(point.job), *(point.overrides.get(k, "") for k in keys), point.status]
        cells.append(value_text(point.metrics.get(metric)) + (" (best)" if point is best else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if best is None:
        lines.append(f"\nno point logged {metric}: no best point")
    else:
        setting = " ".join(f"{k}={best.overrides[k]}" for k in keys if k in best.overrides)
        lines.append(
            f"\nbest ({direction} {metric}): job {best.job} {setting} = {value_text(best.metrics[metric])}"
            f"\n{best.directory}"
        )
    if storage:
        lines.append(f"Optuna study: {storage}")
    return "\n".join(lines) + "\n"


def csv_rows(points: list[SweepPoint], metric: str, direction: str) -> list[list[object]]:
    """``job, directory, <swept keys>, status, <metric>, best`` and then every other final ``val/`` metric."""
    keys = swept_keys(points)
    best = best_point(points, metric, direction)
    others = sorted({k for p in points for k in p.metrics if k.startswith("val/") and k != metric})
    rows: list[list[object]] = [["job", "directory", *keys, "status", metric, "best", *others]]
    for point in points:
        rows.append(
            [
                point.job,
                str(point.directory),
                *(point.overrides.get(k, "") for k in keys),
                point.status,
                point.metrics.get(metric, ""),
                point is best,
                *(point.metrics.get(k, "") for k in others),
            ]
        )
    return rows


def short(value: str) -> str:
    """An override value for a plot label: numbers to 3 significant digits, other text as it is."""
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


def write_plot(points: list[SweepPoint], metric: str, direction: str, path: Path) -> None:
    """``metric`` per point (job number and swept values on the x axis), the best point starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(points)
    best = best_point(points, metric, direction)
    values = [point.metrics.get(metric, math.nan) for point in points]
    labels = [" ".join([str(p.job), *(f"{k}={short(p.overrides.get(k, ''))}" for k in keys)]) for p in points]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.8 * len(points) + 3.0), 4.2))
    axis.plot(range(len(points)), values, "o-", color="C0")
    if best is not None:
        axis.plot([points.index(best)], [best.metrics[metric]], "*", color="C1", markersize=14, label="best")
        axis.legend(fontsize=8)
    axis.set_xticks(range(len(points)), labels, rotation=30, ha="right", fontsize=7)
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} per point ({direction})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_summary(
    sweep_dir: Path, metric: str, direction: str, storage: str | None = None
) -> list[SweepPoint]:
    """``sweep_summary.{csv,md,png}`` in ``sweep_dir``; returns the points it read."""
    points = read_points(sweep_dir)
    markdown = to_markdown(points, metric, direction, storage)
    (sweep_dir / f"{SUMMARY_NAME}.md").write_text(markdown)
    with open(sweep_dir / f"{SUMMARY_NAME}.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(csv_rows(points, metric, direction))
    write_plot(points, metric, direction, sweep_dir / f"{SUMMARY_NAME}.png")
    print(markdown, end="")
    log.info("sweep summary: %s/%s.{md,csv,png}", sweep_dir, SUMMARY_NAME)
    return points


def optimized_direction(config: DictConfig) -> str:
    direction = config.get("optimized_direction", "maximize")
    if direction not in DIRECTIONS:
        raise ConfigError(f"optimized_direction={direction!r}; allowed: {list(DIRECTIONS)}")
    return direction


def refuse(problem: str) -> NoReturn:
    """Stop the sweep with ``mmpo: <problem>`` and exit code 2, as train.py stops on a bad config."""
    print(f"mmpo: {problem}", file=sys.stderr)
    sys.exit(2)


class SweepSummary(Callback):
    """Check a multirun before it starts and each of its jobs before it runs; summarise the multirun when
    it ends (module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        try:
            optimized_direction(config)
        except ConfigError as error:
            refuse(str(error))
        if problem := process_layout_problem(config):
            refuse(problem)
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_job_start(self, config: DictConfig, **kwargs: object) -> None:
        """A sweep over the trainer itself (``trainer=ddp,gpu``, ``trainer.devices=1,2``) is only known job by
        job: the job is refused before it starts, and the directory Hydra made for it removed."""
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if problem := process_layout_problem(config):
            from mmpo.train import remove_stub

            remove_stub(Path(config.hydra.runtime.output_dir))
            refuse(problem)

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        storage = config.hydra.sweeper.get("storage")
        write_summary(
            Path(config.hydra.sweep.dir), config.optimized_metric, optimized_direction(config), storage
        )
