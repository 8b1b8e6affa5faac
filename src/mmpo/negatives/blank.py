"""Blank image: MCM-DPO's ``use_image_type='black'`` ablation (methods.md §2.4).

Pixel mode: ``m_l = 0`` on the processed tensor, exactly the official ``torch.zeros_like(image)``. After
normalization zero is the processor's mean colour, not black. PIL mode: ``m_l`` = a uniform image of
colour ``value`` (black by default), which the processor then normalizes like any other image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from mmpo.negatives.base import ApplyTo, TransformSampler, check_pixels


class BlankSampler(TransformSampler):
    """Replace the image with a constant one; deterministic, so the generator is not used."""

    name = "blank"

    def __init__(
        self,
        value: Sequence[int] = (0, 0, 0),
        apply_to: ApplyTo = "pixels",
        resample_per_forward: bool = False,
    ) -> None:
        super().__init__(apply_to, resample_per_forward)
        color = tuple(int(v) for v in value)
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f"negative_sampler.value={list(value)} must be an RGB triple in [0, 255]")
        if apply_to == "pixels" and color != (0, 0, 0):
            raise ValueError(
                f"negative_sampler.value={list(value)} only applies with apply_to='pil'; "
                "with apply_to='pixels' the processed tensor is filled with zeros"
            )
        self.value: tuple[int, int, int] = color

    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_pixels(pixels)
        return torch.zeros_like(pixels)

    def corrupt_image(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        return Image.new("RGB", image.size, self.value)
