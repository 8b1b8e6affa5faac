"""Random resized crop: mDPO's corrupted image (arXiv 2406.11839 §3.1 and Table 3; methods.md §1.2).

Keep a random window covering a fraction ``s ~ U(scale)`` of the image area with aspect ratio
``r = exp(U(log ratio))``, i.e. ``w = round(sqrt(s*H*W*r))``, ``h = round(sqrt(s*H*W/r))``, then resize the
window back to ``H x W`` (bilinear). The paper's "Crop 0-20%" is ``scale=(0.01, 0.2)``: the official code
keeps 1-20% of the area, on the processed tensor, with a fresh crop per forward pass (methods.md §1.7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from mmpo.negatives.base import ApplyTo, TransformSampler, as_pair, check_pixels, uniform

MAX_TRIES = 10


def sample_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """Crop window ``(top, left, h, w)`` inside an ``height x width`` image.

    Same algorithm as torchvision's ``RandomResizedCrop.get_params`` (re-written here because torchvision
    is not a dependency of mmpo): up to ``MAX_TRIES`` draws of area fraction and log-uniform aspect ratio;
    the first window that fits is placed uniformly at random. If none fits, fall back to the largest
    central window whose aspect ratio lies within ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(MAX_TRIES):
        target_area = area * uniform(generator, *scale)
        aspect = math.exp(uniform(generator, *log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w

    image_ratio = width / height
    if image_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class CropSampler(TransformSampler):
    """RandomResizedCrop corruption; see the module docstring for the equations."""

    name = "crop"

    def __init__(
        self,
        scale: Sequence[float] = (0.01, 0.2),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        apply_to: ApplyTo = "pixels",
        resample_per_forward: bool = False,
    ) -> None:
        super().__init__(apply_to, resample_per_forward)
        self.scale = as_pair(scale, "scale")
        self.ratio = as_pair(ratio, "ratio")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"negative_sampler.scale={list(scale)} must satisfy 0 < lo <= hi <= 1")
        if self.ratio[0] <= 0:
            raise ValueError(f"negative_sampler.ratio={list(ratio)} must satisfy 0 < lo <= hi")

    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_pixels(pixels)
        height, width = pixels.shape[-2:]
        top, left, h, w = sample_crop_box(height, width, self.scale, self.ratio, generator)
        window = pixels[None, :, top : top + h, left : left + w].float()
        resized = F.interpolate(
            window, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
        return resized[0].to(pixels.dtype)

    def corrupt_image(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        width, height = image.size
        top, left, h, w = sample_crop_box(height, width, self.scale, self.ratio, generator)
        box = (left, top, left + w, top + h)
        return image.convert("RGB").resize(image.size, Image.Resampling.BILINEAR, box=box)
