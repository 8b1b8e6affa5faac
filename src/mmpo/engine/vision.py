"""Encode-once vision: every unique image of a step goes through the vision tower and projector once.

An image is identified by the data, not by its placeholder tokens (which are identical for every
image): ``(record id, image source, k, index in the prompt)``, e.g. ``("s0-1", "original", 0, 0)``. A
hit is only taken when the stored pixels are equal to the requested ones, so the reference's own
corrupted image (``resample_per_forward``) is never confused with the policy's.

All images a forward still needs are encoded in **one** tower call. With a frozen vision path (tower and
projector, see :func:`~mmpo.models.families.vision_frozen`) the features are computed without autograd
and one :class:`ImageFeatures` serves the policy and the reference of a step
(:meth:`ImageFeatures.for_step`); with a trainable projector each model encodes for itself, with grad.
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from mmpo.models.families import Family, ImageInputs, vision_frozen

ImageKey = tuple[Hashable, ...]


def same_image(a: ImageInputs, b: ImageInputs) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


class ImageFeatures:
    """Projected features of the images of one step, keyed by image identity (see module docstring)."""

    def __init__(self) -> None:
        self._entries: dict[ImageKey, list[tuple[ImageInputs, Tensor]]] = {}

    @classmethod
    def for_step(cls, policy: nn.Module) -> ImageFeatures | None:
        """A cache to share between the policy and the reference, or None when the vision path trains."""
        return cls() if vision_frozen(policy) else None

    def get(
        self, model: nn.Module, family: Family, requests: list[tuple[ImageKey, ImageInputs]]
    ) -> list[Tensor]:
        """Features of each requested image, encoding the missing ones in one vision-tower call."""
        missing: list[tuple[ImageKey, ImageInputs]] = []
        for key, image in requests:
            if self._find(key, image) is None and not any(
                k == key and same_image(i, image) for k, i in missing
            ):
                missing.append((key, image))
        if missing:
            with torch.no_grad() if vision_frozen(model) else nullcontext():
                features = family.encode_images(model, family.join_images([image for _, image in missing]))
            for (key, image), feature in zip(missing, features, strict=True):
                self._entries.setdefault(key, []).append((image, feature))
        return [self._find(key, image) for key, image in requests]

    def _find(self, key: ImageKey, image: ImageInputs) -> Tensor | None:
        return next(
            (feature for stored, feature in self._entries.get(key, ()) if same_image(stored, image)), None
        )
