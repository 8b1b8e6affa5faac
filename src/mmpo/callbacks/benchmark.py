"""Benchmark the policy while it trains: generate, score and log every ``every_n_steps`` optimizer steps.

The benchmark runs on the module's own evaluation handle (for a generative module the
:class:`~mmpo.generation.Generator` that ``evaluate.py`` uses, with the benchmark's pinned decoding). The metrics go to every
logger as ``benchmark/<name>/<metric>`` at the current global step, and into the trainer's callback
metrics, so a sweep can optimise one (``optimized_metric=benchmark/shapes_pope/avg/accuracy``). Only the
global-zero process generates (all processes hold the same weights), so other ranks wait for it.
"""

from __future__ import annotations

import lightning as L
import torch

from mmpo.benchmarks.base import Benchmark, EvalItem
from mmpo.callbacks.periodic import EveryNSteps


class BenchmarkCallback(EveryNSteps):
    """Run ``benchmark`` on the training policy every ``every_n_steps`` steps (module docstring)."""

    def __init__(
        self, benchmark: Benchmark, every_n_steps: int = 50, batch_size: int = 16, name: str | None = None
    ) -> None:
        super().__init__(every_n_steps)
        self.benchmark = benchmark
        self.batch_size = batch_size
        self.name = name or benchmark.name
        self.items: list[EvalItem] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.items = self.benchmark.items()  # missing data fails before the first step

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.log_metrics(trainer, self.evaluate(trainer, pl_module))

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        metrics, _ = self.benchmark.run(pl_module.evaluation_handle(self.batch_size), self.items)
        return {f"benchmark/{self.name}/{key}": float(value) for key, value in metrics.items()}

    def log_metrics(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in metrics.items()})
