"""Forward-diffusion noise: the VCD / POVID / MCM-DPO corrupted image (methods.md §2.4).

One step of the DDPM forward process at time ``t`` (``step``) of ``T`` (``num_steps``):

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps,      eps ~ N(0, I)
    abar_t = prod_{s <= t} (1 - beta_s)
    beta   = sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start     (schedule="sigmoid")
    beta   = linspace(beta_start, beta_end, T)                                     (schedule="linear")

With the defaults ``abar_700 = 0.3513`` (x_t = 0.5927 x_0 + 0.8054 eps); MCM-DPO uses ``step=700`` on the
normalized CLIP tensor, VCD's default is ``step=500``. In PIL mode ``x_0`` is the image mapped to [-1, 1]
and ``x_t`` is mapped back and clamped to [0, 1] before quantizing to uint8.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from mmpo.negatives.base import ApplyTo, TransformSampler, check_pixels

SCHEDULES = ("sigmoid", "linear")


def noise_schedule(num_steps: int, beta_start: float, beta_end: float, schedule: str) -> torch.Tensor:
    """``abar_t`` for ``t = 0 .. num_steps-1`` as float32 (the precision of the official code)."""
    if schedule == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, num_steps)) * (beta_end - beta_start) + beta_start
    elif schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_steps)
    else:
        raise ValueError(f"negative_sampler.schedule={schedule!r}; allowed: {list(SCHEDULES)}")
    return torch.cumprod(1 - betas, dim=0)


class DiffusionNoiseSampler(TransformSampler):
    """Noise the image to diffusion step ``step``; see the module docstring for the equations."""

    name = "diffusion"

    def __init__(
        self,
        step: int = 500,
        num_steps: int = 1000,
        beta_start: float = 1e-5,
        beta_end: float = 0.5e-2,
        schedule: str = "sigmoid",
        apply_to: ApplyTo = "pixels",
        resample_per_forward: bool = False,
    ) -> None:
        super().__init__(apply_to, resample_per_forward)
        if num_steps < 1:
            raise ValueError(f"negative_sampler.num_steps={num_steps} must be >= 1")
        if not 0 <= step < num_steps:
            raise ValueError(f"negative_sampler.step={step} must satisfy 0 <= step < num_steps={num_steps}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(
                f"negative_sampler.beta_start={beta_start}, beta_end={beta_end} must satisfy "
                "0 < beta_start <= beta_end < 1"
            )
        self.step = step
        self.alpha_bar = float(noise_schedule(num_steps, beta_start, beta_end, schedule)[step])

    def _noise(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``sqrt(abar) x0 + sqrt(1 - abar) eps`` in float32, with ``eps`` drawn on the CPU generator."""
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        return math.sqrt(self.alpha_bar) * x0.float() + math.sqrt(1 - self.alpha_bar) * eps

    def corrupt_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_pixels(pixels)
        return self._noise(pixels, generator).to(pixels.dtype)

    def corrupt_image(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        unit = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        noisy = ((self._noise(unit * 2 - 1, generator) + 1) / 2).clamp(0, 1)
        quantized = (noisy * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(quantized)
