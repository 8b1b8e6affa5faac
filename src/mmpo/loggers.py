"""Loggers that ``conf/logger/*.yaml`` name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

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
