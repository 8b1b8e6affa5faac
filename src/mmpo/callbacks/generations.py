"""Show what the policy writes while it trains: every ``every_n_steps`` optimizer steps, generate for the
first ``num_records`` validation records and log a ``wandb.Table`` ``generations`` with the columns
:data:`COLUMNS` (the step, the record id, its image, prompt, the generated output, and the record's chosen
and rejected responses).

Generation is :func:`mmpo.generation.generate` (what ``evaluate.py`` runs: the training chat template,
greedy decoding up to ``max_new_tokens``) with the processor and family of the training data module, on
the record's first image. Only the global-zero process generates; the other ranks wait for it.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from mmpo.benchmarks.base import EvalItem
from mmpo.callbacks.periodic import EveryNSteps
from mmpo.config import ConfigError
from mmpo.data.records import Record
from mmpo.generation import generate

COLUMNS = ["step", "id", "image", "prompt", "output", "chosen", "rejected"]
TABLE_KEY = "generations"


class LogGenerations(EveryNSteps):
    """Log generations for fixed validation records every ``every_n_steps`` steps (module docstring)."""

    def __init__(
        self, every_n_steps: int = 50, num_records: int = 4, max_new_tokens: int = 32, batch_size: int = 4
    ) -> None:
        super().__init__(every_n_steps)
        if num_records < 1:
            raise ValueError(f"LogGenerations: num_records must be a positive integer, got {num_records}")
        self.num_records = num_records
        self.decoding = {"max_new_tokens": max_new_tokens}
        self.batch_size = batch_size
        self.records: list[Record] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            raise ConfigError(
                "callbacks=log_generations logs a wandb.Table and needs a wandb logger: logger=default or "
                "logger=wandb"
            )
        self.records = trainer.datamodule.datasets["val"].records[: self.num_records]

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.log_table(trainer, self.rows(trainer, pl_module))

    def rows(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[list[object]]:
        import wandb

        items = [EvalItem(r.id, r.images[0] if r.images else None, r.prompt) for r in self.records]
        datamodule = trainer.datamodule
        outputs = generate(
            pl_module.policy,
            datamodule.processor,
            datamodule.family,
            items,
            self.decoding,
            self.batch_size,
            progress=False,
        )
        return [
            [
                trainer.global_step,
                item.id,
                wandb.Image(item.image) if item.image else None,
                item.prompt,
                outputs[item.id],
                record.chosen,
                record.rejected,
            ]
            for item, record in zip(items, self.records, strict=True)
        ]

    def log_table(self, trainer: L.Trainer, rows: list[list[object]]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(TABLE_KEY, columns=COLUMNS, data=rows, step=trainer.global_step)
