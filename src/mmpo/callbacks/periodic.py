"""The trigger the periodic callbacks share: once after every ``every_n_steps``-th optimizer step."""

from __future__ import annotations

import lightning as L


class EveryNSteps(L.Callback):
    """Call :meth:`run` on the global-zero process when ``trainer.global_step`` reaches a multiple of
    ``every_n_steps`` (once per optimizer step, also under gradient accumulation, where several batches
    end at the same step). Other processes go on; the work needs the weights only, which every rank holds."""

    def __init__(self, every_n_steps: int) -> None:
        if every_n_steps < 1:
            raise ValueError(
                f"{type(self).__name__}: every_n_steps must be a positive integer, got {every_n_steps}"
            )
        self.every_n_steps = every_n_steps
        self.last_step = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step == self.last_step:
            return
        self.last_step = step
        if trainer.is_global_zero:
            self.run(trainer, pl_module)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError
