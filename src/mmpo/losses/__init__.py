"""Pure losses (``loss=<name>`` selects ``conf/loss/<name>.yaml``, whose ``_target_`` names the class).

A loss's name is its config file's: nothing in mmpo keeps a registry of them, so a loss defined outside
``src/`` (a Python file and a YAML on ``hydra.searchpath``) is as good as one of these.
"""

from hydra.utils import instantiate
from omegaconf import DictConfig

from mmpo.losses.base import Loss, LossInputs, LossOutput, PreferenceLoss, Requirements
from mmpo.losses.dpo import DPOLoss
from mmpo.losses.ipo import IPOLoss
from mmpo.losses.mdpo import MDPOLoss
from mmpo.losses.metrics import preference_metrics
from mmpo.losses.misp_dpo import MISPDPOLoss
from mmpo.losses.sft import SFTLoss


def build_loss(cfg: DictConfig | dict) -> Loss:
    """The loss of a ``loss`` config node (``_target_`` plus the constructor's arguments)."""
    loss = instantiate(cfg)
    if not isinstance(loss, Loss):
        raise TypeError(
            f"loss._target_={cfg['_target_']!r} built a {type(loss).__name__}, not a mmpo.losses.Loss"
        )
    return loss


__all__ = [
    "DPOLoss",
    "IPOLoss",
    "Loss",
    "LossInputs",
    "LossOutput",
    "MDPOLoss",
    "MISPDPOLoss",
    "PreferenceLoss",
    "Requirements",
    "SFTLoss",
    "build_loss",
    "preference_metrics",
]
