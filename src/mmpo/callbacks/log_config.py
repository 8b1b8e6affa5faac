"""Give the loggers the run's composed config: wandb shows it as the run's config (filterable, comparable
across the runs of a sweep).

Lightning hands a logger the module's ``hparams`` at the start of fit only when the module called
``save_hyperparameters``; mmpo's modules take built objects (policy, loss), not the config, so this
callback logs the composed config instead: ``config.yaml`` of the run directory, which ``train.py`` writes
resolved before the trainer is built. The CSV logger is skipped: that file already sits beside its
``metrics.csv``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.loggers import CSVLogger


class LogConfig(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # only global rank 0 writes config.yaml, and loggers log there
            return
        config = yaml.safe_load(self.path.read_text())
        for logger in trainer.loggers:
            if not isinstance(logger, CSVLogger):
                logger.log_hyperparams(config)
