"""Negative samplers (the ``negative_sampler`` config group): a record's K negative images.

``conf/negative_sampler/<name>.yaml`` holds ``_target_: mmpo.negatives.<Class>`` and the paper's defaults;
:func:`build_negative_sampler` turns that config into a sampler, or ``None`` for ``negative_sampler=none``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mmpo.config import CONF_DIR
from mmpo.negatives.base import Negative, NegativeSampler, Pool, TransformSampler, seeded_generator
from mmpo.negatives.blank import BlankSampler
from mmpo.negatives.crop import CropSampler, sample_crop_box
from mmpo.negatives.diffusion import DiffusionNoiseSampler, noise_schedule
from mmpo.negatives.listed import ListedSampler
from mmpo.negatives.mocov2 import MoCoV2Sampler
from mmpo.negatives.random_image import RandomImageSampler
from mmpo.negatives.retrieval import ClipKnnSampler, PoolSampler, SaeSampler
from mmpo.negatives.rotate import RotateSampler

__all__ = [
    "BlankSampler",
    "ClipKnnSampler",
    "CropSampler",
    "DiffusionNoiseSampler",
    "ListedSampler",
    "MoCoV2Sampler",
    "Negative",
    "NegativeSampler",
    "Pool",
    "PoolSampler",
    "RandomImageSampler",
    "RotateSampler",
    "SaeSampler",
    "TransformSampler",
    "build_negative_sampler",
    "noise_schedule",
    "sample_crop_box",
    "sampler_options",
    "seeded_generator",
]


def sampler_options() -> list[str]:
    """The options of ``conf/negative_sampler`` that draw negatives (all but ``none``)."""
    return sorted(p.stem for p in (CONF_DIR / "negative_sampler").glob("*.yaml") if p.stem != "none")


def build_negative_sampler(cfg: Mapping[str, Any] | None) -> NegativeSampler | None:
    """Instantiate the sampler described by ``cfg`` (a DictConfig with ``_target_``).

    ``None`` or an empty config (``conf/negative_sampler/none.yaml`` composes to ``{}``) means no negative
    images and returns ``None``. A non-empty config without ``_target_`` is a mistake and raises, as do the
    samplers' own argument checks (``ValueError`` naming the key).
    """
    if cfg is None or len(cfg) == 0:
        return None
    if cfg.get("_target_") is None:
        raise ValueError(
            f"negative_sampler config {dict(cfg)!r} has no _target_; choose one of "
            f"conf/negative_sampler/*.yaml {[*sampler_options(), 'none']}"
        )
    try:
        sampler = instantiate(cfg)
    except InstantiationException as error:  # a sampler's own check, or an option it does not take
        raise ValueError(str(error.__cause__ or error)) from None
    if not isinstance(sampler, NegativeSampler):
        raise ValueError(
            f"negative_sampler._target_={cfg['_target_']!r} built a {type(sampler).__name__}, "
            "not a mmpo.negatives.NegativeSampler"
        )
    return sampler
