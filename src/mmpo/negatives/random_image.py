"""Random image: another record's image as the corrupted image.

``m_l = resize(m_other, size(m_w))`` with ``m_other`` drawn by the data pipeline's ``other_image`` callable.
mDPO's "Random image" ablation (arXiv 2406.11839 Table 3) and MCM-DPO's ``use_image_type='random'``
(methods.md §2.4). It needs the PIL image of another record, so it only works with ``apply_to="pil"``.
"""

from __future__ import annotations

import torch
from PIL import Image

from mmpo.negatives.base import ApplyTo, NegativeSampler, OtherImage


class RandomImageSampler(NegativeSampler):
    """Replace the image with another record's image, resized (bilinear) to the original size."""

    name = "random_image"
    modes = ("pil",)

    def __init__(self, apply_to: ApplyTo = "pil", resample_per_forward: bool = False) -> None:
        super().__init__(apply_to, resample_per_forward)

    def corrupt_image(
        self, image: Image.Image, generator: torch.Generator, other_image: OtherImage | None = None
    ) -> Image.Image:
        if other_image is None:
            raise ValueError(
                "the 'random_image' negative sampler needs other_image, a callable that draws another "
                "record's PIL image from the generator"
            )
        return other_image(generator).convert("RGB").resize(image.size, Image.Resampling.BILINEAR)

    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise ValueError(
            "the 'random_image' negative sampler works on PIL images only (negative_sampler.apply_to='pil')"
        )
