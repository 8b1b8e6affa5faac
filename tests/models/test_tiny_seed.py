"""Tiny models are deterministic for their own seed and leave the run's global generator alone."""

import torch

from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl


def test_tiny_builders_do_not_reseed_the_global_generator():
    for build in (build_tiny_llava, build_tiny_qwen2vl):
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        first, _ = build(seed=0)
        assert torch.equal(torch.rand(3), expected)  # LoRA init and data order still follow the run's seed
        second, _ = build(seed=0)
        assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
