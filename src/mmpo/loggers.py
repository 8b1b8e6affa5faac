"""Loggers that ``conf/logger/*.yaml`` name, and the wandb run's life cycle around a training run."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

log = logging.getLogger("mmpo")

BENCHMARK_PREFIX = "benchmark/"
BENCHMARK_TABLE = "benchmark/results"
BENCHMARK_COLUMNS = ["benchmark", "metric", "value"]


def sweep_group(name: str | None) -> str | None:
    """The wandb group of a run: the sweep directory's name for a job of a Hydra multirun (all its points
    in one group), ``name`` (the run name) otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return name


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger with three changes:

    - ``group=None`` becomes :func:`sweep_group` of the run name;
    - ``benchmark/<name>/<metric>`` values (the in-training benchmark callback, ``benchmark=[...]`` after
      training) are also logged as a ``wandb.Table`` ``benchmark/results`` with columns benchmark, metric,
      value, one row per metric of the call;
    - no ``anonymous`` argument to ``wandb.init``: wandb 0.31 ignores the setting and warns about it on
      every run.
    """

    def __init__(self, *args: Any, name: str | None = None, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, name=name, group=group or sweep_group(name), **kwargs)
        self._wandb_init.pop("anonymous", None)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        rows = [
            [*key[len(BENCHMARK_PREFIX) :].split("/", 1), float(value)]
            for key, value in metrics.items()
            if key.startswith(BENCHMARK_PREFIX) and key.count("/") >= 2 and isinstance(value, int | float)
        ]
        if rows:
            import wandb

            metrics = {**metrics, BENCHMARK_TABLE: wandb.Table(columns=BENCHMARK_COLUMNS, data=rows)}
        super().log_metrics(metrics, step)


def wandb_mode() -> str:
    """wandb runs offline unless ``WANDB_MODE`` says otherwise, and keeps its own terminal output to
    itself unless ``WANDB_SILENT=false`` (train.py logs where the run's files are)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    return os.environ.setdefault("WANDB_MODE", "offline")


def continue_wandb_run(cfg: DictConfig, checkpoint: str | None) -> None:
    """Resuming from ``<run>/checkpoints/last.ckpt`` logs to the wandb run of ``<run>`` (same id) unless
    ``logger.wandb.id`` is set. wandb names its run directories ``<run>/wandb/[offline-]run-<time>-<id>``."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if not checkpoint or wandb_cfg is None or wandb_cfg.get("id"):
        return
    runs = sorted(
        (Path(checkpoint).resolve().parents[1] / "wandb").glob("*run-*-*"),
        key=lambda path: path.name.split("run-", 1)[1],  # by time, offline and online runs alike
    )
    if runs:
        with open_dict(cfg):
            wandb_cfg.id = runs[-1].name.rsplit("-", 1)[1]
        log.info("resuming wandb run %s", wandb_cfg.id)


def finish_wandb_runs(trainer: L.Trainer) -> None:
    """Close this run's wandb run: Lightning leaves it open, and the next job of a Hydra multirun in the
    same process would otherwise log into it."""
    if any(isinstance(logger, LightningWandbLogger) for logger in trainer.loggers):
        import wandb

        if wandb.run is not None and trainer.is_global_zero:
            directory = wandb.run.settings.sync_dir
            log.info(
                "wandb run %s (%s): %s; `wandb sync %s` uploads it",
                wandb.run.id,
                wandb_mode(),
                directory,
                directory,
            )
        wandb.finish()
