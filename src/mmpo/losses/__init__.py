"""Pure preference losses and their registry (``loss=<name>`` selects ``conf/loss/<name>.yaml``)."""

from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmpo.losses.base import LossOutput, PreferenceLoss
from mmpo.losses.dpo import DPOLoss
from mmpo.losses.ipo import IPOLoss
from mmpo.losses.mdpo import MDPOLoss
from mmpo.losses.metrics import preference_metrics
from mmpo.losses.sft import SFTLoss

LOSSES: dict[str, type[PreferenceLoss]] = {cls.name: cls for cls in (DPOLoss, IPOLoss, SFTLoss, MDPOLoss)}


def build_loss(cfg) -> PreferenceLoss:
    """The loss of a ``loss`` config node (``_target_`` plus the constructor's arguments; ``name`` is the
    group option's own name and not an argument)."""
    params = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    params.pop("name", None)
    return instantiate(params)


__all__ = [
    "LOSSES",
    "DPOLoss",
    "IPOLoss",
    "LossOutput",
    "MDPOLoss",
    "PreferenceLoss",
    "SFTLoss",
    "build_loss",
    "preference_metrics",
]
