"""Negative samplers: a record's K negative images, drawn once per record before collation.

A negative image ``m_l`` is an image that should *not* explain the chosen response: mDPO's corrupted image
(CoPO, ``-log sigma(r(m_w, y_w) - r(m_l, y_w))``, methods.md §1.1-1.2), MCM-DPO's noised image (§2.2-2.4),
MISP-DPO's K retrieved images (§4). A sampler maps a record (with its loaded images) to K
:class:`Negative` s. Two kinds:

- **transforms** of the original (:class:`TransformSampler`: crop, diffusion, blank, rotate, mocov2), on
  the PIL image before the image processor (``apply_to="pil"``) or on one processed, normalized pixel
  tensor ``[C, H, W]`` after it (``apply_to="pixels"``); either way the output keeps the input's size, so
  the number of image placeholder tokens never changes;
- **draws** of other images (``random_image``; the images listed in the record, ``listed``; retrieval-based
  samplers).

All randomness comes from generators that :func:`seeded_generator` builds from (global seed, record id,
epoch, stream): the k-th negative's stream is the sampler's name (k = 0) or ``<name>[k]``. The data
pipeline draws the negatives of a record once, per epoch, in the data set; the policy, the reference and
any reference cache see the same images. ``resample_per_forward=True`` asks for the official mDPO
behaviour instead: the reference gets its own draw (stream ``<name>:reference``), methods.md §1.7.2.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from PIL import Image

ApplyTo = Literal["pil", "pixels"]

OtherImage = Callable[[torch.Generator], Image.Image]
"""Draws another record's image with the given generator."""


def seeded_generator(seed: int, record_id: str, epoch: int, name: str) -> torch.Generator:
    """CPU generator seeded by a stable hash of ``(seed, record_id, epoch, name)``.

    The key is the JSON list ``[seed, str(record_id), epoch, name]`` (unambiguous, unlike plain
    concatenation), hashed with 64-bit BLAKE2b. Python's ``hash()`` is salted per process and would give
    each dataloader worker and each run a different draw.
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


@dataclass(frozen=True)
class SamplingKey:
    """What seeds one negative's draw: ``seeded_generator(seed, record_id, epoch, stream)``."""

    seed: int
    record_id: str
    epoch: int
    stream: str

    def generator(self) -> torch.Generator:
        return seeded_generator(self.seed, self.record_id, self.epoch, self.stream)


@dataclass(frozen=True)
class PixelTransform:
    """A drawn transform of the processed pixel tensors of a negative's images: applying it twice gives
    the same pixels (its generator is rebuilt from the key), so every row that shows the negative gets it."""

    sampler: TransformSampler
    key: SamplingKey

    def __call__(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        generator = self.key.generator()
        return [self.sampler.corrupt_pixels(p, generator) for p in pixels]


@dataclass(frozen=True)
class Negative:
    """The k-th negative of a record: the images the processor sees in place of the record's images, and
    optionally a drawn transform of their processed pixel tensors."""

    images: tuple[Image.Image, ...]
    pixel_transform: PixelTransform | None = None
    log_q: float | None = None
    """log q of the draw, for importance-weighted losses (MISP-DPO); None when the draw is not weighted."""


@dataclass
class Pool:
    """What draws of other images may pick from: the image paths of the split's records."""

    images: Sequence[str] = field(default_factory=list)


class NegativeSampler(abc.ABC):
    """Base class: ``negatives(...)`` gives a record's ``count`` negatives. Subclasses set ``name`` (the
    sampler's config name, also the generator stream) and declare ``epoch_dependent``."""

    name: str
    epoch_dependent: bool = True
    """Whether the draws change with the epoch (the reference cache then keys them by epoch)."""

    def __init__(self, resample_per_forward: bool = False) -> None:
        self.resample_per_forward = bool(resample_per_forward)

    def stream(self, k: int, reference: bool = False) -> str:
        return (self.name if k == 0 else f"{self.name}[{k}]") + (":reference" if reference else "")

    @abc.abstractmethod
    def negatives(
        self,
        record,
        images: list[Image.Image],
        count: int,
        seed: int,
        epoch: int,
        pool: Pool,
        reference: bool = False,
    ) -> list[Negative]:
        """The first ``count`` negatives of ``record`` (whose loaded images are ``images``); ``reference``
        draws the reference's own ones (``resample_per_forward``)."""

    def fingerprint_fields(self) -> dict[str, Any]:
        """What determines the sampler's draws, for the reference-cache fingerprint."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def problems(self, count: int) -> list[str]:
        """Start-up problems of drawing ``count`` negatives per record (files the sampler reads, options
        that depend on ``count``), checked before any model loads; none by default."""
        return []


class TransformSampler(NegativeSampler):
    """A negative is a transformation of the record's own image(s); ``count`` negatives are independent
    draws. Subclasses set ``modes`` (the ``apply_to`` values they support) and implement both methods."""

    modes: tuple[ApplyTo, ...] = ("pil", "pixels")

    def __init__(self, apply_to: ApplyTo, resample_per_forward: bool = False) -> None:
        if apply_to not in self.modes:
            raise ValueError(
                f"negative_sampler.apply_to={apply_to!r} is not supported by the {self.name!r} sampler; "
                f"allowed: {list(self.modes)}"
            )
        super().__init__(resample_per_forward)
        self.apply_to: ApplyTo = apply_to

    @abc.abstractmethod
    def corrupt_image(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        """Corrupted RGB copy of ``image`` with the same size."""

    @abc.abstractmethod
    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Corrupted copy of one normalized ``[C, H, W]`` tensor with the same shape, dtype and device."""

    def __call__(
        self, image: Image.Image | torch.Tensor, generator: torch.Generator
    ) -> Image.Image | torch.Tensor:
        """Dispatch on the input: a tensor goes to :meth:`corrupt_pixels`, a PIL image to :meth:`corrupt_image`."""
        if isinstance(image, torch.Tensor):
            return self.corrupt_pixels(image, generator)
        return self.corrupt_image(image, generator)

    def negatives(self, record, images, count, seed, epoch, pool, reference=False) -> list[Negative]:
        out = []
        for k in range(count):
            key = SamplingKey(seed, record.id, epoch, self.stream(k, reference))
            if self.apply_to == "pixels":
                out.append(Negative(tuple(images), PixelTransform(self, key)))
            else:
                generator = key.generator()
                out.append(Negative(tuple(self.corrupt_image(image, generator) for image in images)))
        return out
