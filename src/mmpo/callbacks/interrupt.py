"""Save a checkpoint when a run is interrupted, so that ``ckpt_path=<run dir>`` resumes it.

Lightning turns SIGTERM (a scheduler's pre-emption, ``kill``) into a ``SIGTERMException`` at the next safe
point of its loop (after a batch) and Ctrl-C into ``KeyboardInterrupt``; on either, this callback writes
``<dirpath>/last.ckpt``. Any other exception saves nothing: a diverged loss must not overwrite the last
good checkpoint with broken weights. ``kill -9`` runs no code at all: what survives it is the periodic
checkpoint of ``callbacks.model_checkpoint`` (``every_n_train_steps``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class SaveOnInterrupt(L.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException | KeyboardInterrupt) and trainer.global_step > 0:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")
