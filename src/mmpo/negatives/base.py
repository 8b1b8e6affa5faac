"""Shared interface of the corrupted-image samplers and their seeded randomness.

A negative sampler turns a record's original image ``m_w`` into the corrupted image ``m_l`` that
conditional image preferences contrast against: mDPO's CoPO term
``-log sigma(beta * [log pi(y_w|m_w,q)/ref - log pi(y_w|m_l,q)/ref])`` (methods.md §1.1-1.2) and the
image components of MCM-DPO (methods.md §2.2-2.4).

A sampler works either on the PIL image before the image processor (``apply_to="pil"``) or on one
processed, normalized pixel tensor ``[C, H, W]`` after it (``apply_to="pixels"``). Either way the output
keeps the input's size, so the number of image placeholder tokens never changes.

All randomness comes from the generator passed in, which the data pipeline builds with
:func:`seeded_generator` from (global seed, record id, epoch, sampler name): policy, reference and any
reference cache then see the same corrupted image (DESIGN.md §3). ``resample_per_forward=True`` asks the
pipeline for the official mDPO behaviour instead, a fresh draw on every forward pass (methods.md §1.7.2).
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from PIL import Image

ApplyTo = Literal["pil", "pixels"]

OtherImage = Callable[[torch.Generator], Image.Image]
"""Draws another record's image with the given generator (used by ``random_image``)."""


def seeded_generator(seed: int, record_id: str, epoch: int, name: str) -> torch.Generator:
    """CPU generator seeded by a stable hash of ``(seed, record_id, epoch, name)``.

    The key is the JSON list ``[seed, str(record_id), epoch, name]`` (unambiguous, unlike plain
    concatenation), hashed with 64-bit BLAKE2b. Python's ``hash()`` is salted per process and would give
    each dataloader worker and each run a different corruption.
    """
    key = json.dumps([int(seed), str(record_id), int(epoch), str(name)]).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest, "little"))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw from U(low, high) using ``generator``."""
    return low + (high - low) * torch.rand((), generator=generator).item()


def as_pair(value: Sequence[float], key: str) -> tuple[float, float]:
    """``value`` (list, tuple or Hydra ListConfig) as a float pair ``(lo, hi)`` with ``lo <= hi``.

    Raises ``ValueError`` naming ``negative_sampler.<key>`` otherwise.
    """
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"negative_sampler.{key}={value!r} must be a pair [lo, hi] of numbers") from None
    if low > high:
        raise ValueError(f"negative_sampler.{key}={value!r} must satisfy lo <= hi")
    return low, high


def check_pixels(pixels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``pixels`` is one floating-point image tensor ``[C, H, W]``."""
    if pixels.ndim != 3 or not pixels.is_floating_point():
        raise ValueError(
            f"negative samplers take one processed image as a floating-point [C, H, W] tensor; "
            f"got shape {tuple(pixels.shape)} and dtype {pixels.dtype}"
        )


class NegativeSampler(abc.ABC):
    """Base class: builds a corrupted image of the same size from the original one.

    Subclasses set ``name`` (the sampler's config name, also part of the generator seed) and
    ``modes`` (the ``apply_to`` values they support), and implement both corruption methods.
    """

    name: str
    modes: tuple[ApplyTo, ...] = ("pil", "pixels")

    def __init__(self, apply_to: ApplyTo, resample_per_forward: bool = False) -> None:
        if apply_to not in self.modes:
            raise ValueError(
                f"negative_sampler.apply_to={apply_to!r} is not supported by the {self.name!r} sampler; "
                f"allowed: {list(self.modes)}"
            )
        self.apply_to: ApplyTo = apply_to
        self.resample_per_forward = bool(resample_per_forward)

    @abc.abstractmethod
    def corrupt_image(
        self, image: Image.Image, generator: torch.Generator, other_image: OtherImage | None = None
    ) -> Image.Image:
        """Corrupted RGB copy of ``image`` with the same size."""

    @abc.abstractmethod
    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Corrupted copy of one normalized ``[C, H, W]`` tensor with the same shape, dtype and device."""

    def __call__(
        self,
        image: Image.Image | torch.Tensor,
        generator: torch.Generator,
        other_image: OtherImage | None = None,
    ) -> Image.Image | torch.Tensor:
        """Dispatch on the input: a tensor goes to :meth:`corrupt_pixels`, a PIL image to :meth:`corrupt_image`."""
        if isinstance(image, torch.Tensor):
            return self.corrupt_pixels(image, generator)
        return self.corrupt_image(image, generator, other_image)
