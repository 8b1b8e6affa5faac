"""Loggers that ``conf/logger/*.yaml`` name."""

from __future__ import annotations

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger without the ``anonymous`` argument it always hands to ``wandb.init``: wandb
    0.31 ignores the setting and warns about it on every run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
