"""MoCo v2 augmentation: mDPO's "MoCo v2" rejected-image ablation (arXiv 2406.11839 Table 3).

The augmentation of MoCo v2 (Chen et al., 2020, "Improved Baselines with Momentum Contrastive
Learning"), applied to the PIL image and kept at its size, as the chain

    1. random resized crop keeping a fraction s ~ U(crop_scale) = U(0.2, 1) of the area, resized back;
    2. with probability 0.8, colour jitter: brightness, contrast and saturation factors ~ U(0.6, 1.4)
       and a hue shift ~ U(-0.1, 0.1) of a full turn, applied in a random order;
    3. with probability 0.2, grayscale (kept as 3 channels);
    4. with probability 0.5, Gaussian blur with sigma ~ U(0.1, 2.0) pixels;
    5. with probability 0.5, horizontal flip.

Written with PIL (``ImageEnhance``, ``ImageFilter``, HSV) because torchvision does not import beside
mmpo's torch build. The operations follow torchvision's definitions: brightness blends with black,
contrast with the mean grey level, saturation with the grayscale image, hue rotates the HSV hue channel.
The paper does not give its parameters; these are MoCo v2's published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from mmpo.negatives.base import ApplyTo, TransformSampler, as_pair, uniform
from mmpo.negatives.crop import sample_crop_box


def shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue channel by ``shift`` of a full turn (``shift`` in [-0.5, 0.5])."""
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


class MoCoV2Sampler(TransformSampler):
    """MoCo v2's augmentation chain; see the module docstring for the steps and probabilities."""

    name = "mocov2"
    modes = ("pil",)

    def __init__(
        self,
        crop_scale: Sequence[float] = (0.2, 1.0),
        jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
        p_jitter: float = 0.8,
        p_grayscale: float = 0.2,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        p_blur: float = 0.5,
        p_flip: float = 0.5,
        apply_to: ApplyTo = "pil",
        resample_per_forward: bool = False,
    ) -> None:
        super().__init__(apply_to, resample_per_forward)
        self.crop_scale = as_pair(crop_scale, "crop_scale")
        self.blur_sigma = as_pair(blur_sigma, "blur_sigma")
        self.brightness, self.contrast, self.saturation, self.hue = (float(j) for j in jitter)
        self.p_jitter, self.p_grayscale, self.p_blur, self.p_flip = p_jitter, p_grayscale, p_blur, p_flip
        for key, p in {
            "p_jitter": p_jitter,
            "p_grayscale": p_grayscale,
            "p_blur": p_blur,
            "p_flip": p_flip,
        }.items():
            if not 0 <= p <= 1:
                raise ValueError(f"negative_sampler.{key}={p} must be a probability in [0, 1]")

    def _jitter(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        """torchvision's ColorJitter: each of the four adjustments once, in a random order."""
        operations = [
            lambda im, f: ImageEnhance.Brightness(im).enhance(f),
            lambda im, f: ImageEnhance.Contrast(im).enhance(f),
            lambda im, f: ImageEnhance.Color(im).enhance(f),
            shift_hue,
        ]
        spreads = [self.brightness, self.contrast, self.saturation]
        factors = [uniform(generator, max(0.0, 1 - s), 1 + s) for s in spreads] + [
            uniform(generator, -self.hue, self.hue)
        ]
        for index in torch.randperm(4, generator=generator).tolist():
            image = operations[index](image, factors[index])
        return image

    def corrupt_image(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        image = image.convert("RGB")
        width, height = image.size
        top, left, h, w = sample_crop_box(height, width, self.crop_scale, (3 / 4, 4 / 3), generator)
        image = image.resize(image.size, Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
        if uniform(generator, 0, 1) < self.p_jitter:
            image = self._jitter(image, generator)
        if uniform(generator, 0, 1) < self.p_grayscale:
            image = image.convert("L").convert("RGB")
        if uniform(generator, 0, 1) < self.p_blur:
            image = image.filter(ImageFilter.GaussianBlur(uniform(generator, *self.blur_sigma)))
        if uniform(generator, 0, 1) < self.p_flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise ValueError(
            "the 'mocov2' negative sampler works on PIL images only (negative_sampler.apply_to='pil')"
        )
