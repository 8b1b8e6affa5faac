"""Pure losses (``loss=<name>`` selects ``conf/loss/<name>.yaml``, whose ``_target_`` names the class).

A loss's name is its config file's: nothing in mmpo keeps a registry of them, so a loss defined outside
``src/`` (a Python file and a YAML on ``hydra.searchpath``) is as good as one of these. The TRL-named
pairwise family lives in :mod:`mmpo.losses.pairwise` (``_target_: mmpo.losses.pairwise.Hinge``, ...).
"""

from hydra.utils import instantiate
from omegaconf import DictConfig

from mmpo.losses.base import Loss, LossInputs, LossOutput, PreferenceLoss, Requirements
from mmpo.losses.chip import CHiPLoss
from mmpo.losses.dpo import DPOLoss
from mmpo.losses.ipo import IPOLoss
from mmpo.losses.kto import KTOLoss
from mmpo.losses.mcm_dpo import MCMDPOLoss
from mmpo.losses.mdpo import MDPOLoss
from mmpo.losses.metrics import preference_metrics
from mmpo.losses.misp_dpo import MISPDPOLoss
from mmpo.losses.mixture import Mixture
from mmpo.losses.orpo import ORPOLoss
from mmpo.losses.sft import SFTLoss
from mmpo.losses.simpo import SimPOLoss


def build_loss(cfg: DictConfig | dict) -> Loss:
    """The loss of a ``loss`` config node (``_target_`` plus the constructor's arguments)."""
    loss = instantiate(cfg)
    if not isinstance(loss, Loss):
        raise TypeError(
            f"loss._target_={cfg['_target_']!r} built a {type(loss).__name__}, not a mmpo.losses.Loss"
        )
    return loss


__all__ = [
    "CHiPLoss",
    "DPOLoss",
    "IPOLoss",
    "KTOLoss",
    "Loss",
    "LossInputs",
    "LossOutput",
    "MCMDPOLoss",
    "MDPOLoss",
    "MISPDPOLoss",
    "Mixture",
    "ORPOLoss",
    "PreferenceLoss",
    "Requirements",
    "SFTLoss",
    "SimPOLoss",
    "build_loss",
    "preference_metrics",
]
