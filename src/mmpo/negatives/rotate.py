"""Random rotation: MCM-DPO's ``use_image_type='rotate'`` ablation (methods.md §2.4).

The official code applies torchvision ``RandomRotation(degrees=(10, 80))`` to the PIL image: an angle
``a ~ U(degrees)`` (no random sign), counter-clockwise about the image centre, same canvas size, nearest
neighbour, uncovered corners filled with 0. Pixel mode does the same on the tensor with an affine grid.
For an output pixel at offset ``(x, y)`` from the centre (x right, y down, in pixels) the sample point is

    x_in = x cos a - y sin a,     y_in = x sin a + y cos a,

which in ``affine_grid``'s normalized coordinates (``x_n = 2x / W``, ``y_n = 2y / H``) is the matrix
``[[cos a, -sin a * H / W], [sin a * W / H, cos a]]``. The zero fill is the processor's mean colour there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from mmpo.negatives.base import ApplyTo, TransformSampler, as_pair, check_pixels, uniform


class RotateSampler(TransformSampler):
    """Rotate by a random angle in ``degrees``; see the module docstring for the equations."""

    name = "rotate"

    def __init__(
        self,
        degrees: Sequence[float] = (10, 80),
        apply_to: ApplyTo = "pil",
        resample_per_forward: bool = False,
    ) -> None:
        super().__init__(apply_to, resample_per_forward)
        self.degrees = as_pair(degrees, "degrees")

    def corrupt_image(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        angle = uniform(generator, *self.degrees)
        return image.convert("RGB").rotate(angle, resample=Image.Resampling.NEAREST, fillcolor=(0, 0, 0))

    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_pixels(pixels)
        angle = math.radians(uniform(generator, *self.degrees))
        channels, height, width = pixels.shape
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor(
            [[[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]]], device=pixels.device
        )
        grid = F.affine_grid(theta, [1, channels, height, width], align_corners=False)
        rotated = F.grid_sample(
            pixels[None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        return rotated[0].to(pixels.dtype)
