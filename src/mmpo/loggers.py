"""Loggers that ``conf/logger/*.yaml`` name, and the wandb run's life cycle around a training run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from omegaconf import DictConfig, open_dict

log = logging.getLogger("mmpo")


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger without the ``anonymous`` argument it always hands to ``wandb.init``: wandb
    0.31 ignores the setting and warns about it on every run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)


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
