"""Every engine mode gives the per-branch log-probs and gradients of ``naive`` (one HF forward per
branch, full logits), for DPO and mDPO branch sets, LLaVA (1-D positions) and Qwen2-VL (M-RoPE), with
gradient checkpointing on, padding from variable response lengths, and batches of one.

Log-probs are compared in fp32 with ``atol=1e-5`` and PyTorch's default fp32 ``rtol`` (1.3e-6): a sum of
~20 token log-probs near -100 is only resolved to 7.6e-6 (one fp32 ulp), and the shared-prefix path
sums in another order, so a pure ``atol=1e-5`` would test rounding, not correctness.
"""

from __future__ import annotations

import pytest
import torch

from mmpo.engine.forward import MODES, branch_logps, resolve_mode

from .conftest import BRANCH_SETS, collate, make_policy, mixed_records

LOGP_TOL = {"atol": 1e-5, "rtol": 1.3e-6}


def run(policy, batch, mode: str) -> tuple[dict, dict, dict]:
    """Log-probs, token counts and the gradient of a fixed random combination of all log-probs."""
    policy.zero_grad(set_to_none=True)
    logps, counts = branch_logps(policy, batch, mode)
    generator = torch.Generator().manual_seed(0)
    total = sum((torch.rand(len(batch), generator=generator) * logps[b]).sum() for b in sorted(logps))
    total.backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}
    return logps, counts, grads


def assert_same(result, expected) -> None:
    logps, counts, grads = result
    want_logps, want_counts, want_grads = expected
    assert logps.keys() == want_logps.keys()
    for branch in want_logps:
        assert logps[branch].dtype == torch.float32
        torch.testing.assert_close(logps[branch], want_logps[branch], **LOGP_TOL)
        assert torch.equal(counts[branch], want_counts[branch])
    assert grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        assert grad.abs().max() > 0, name  # every trainable parameter is exercised
        torch.testing.assert_close(
            grads[name], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item(), msg=name
        )


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("loss", sorted(BRANCH_SETS))
def test_every_mode_matches_naive(family, loss, records):
    policy, processor, fam = make_policy(family)
    batch = collate(processor, fam, mixed_records(records, 3), BRANCH_SETS[loss])
    lengths = batch.rows[BRANCH_SETS[loss][0]].tensors["attention_mask"].sum(-1)
    assert len(set(lengths.tolist())) > 1  # variable lengths: the batch is padded
    expected = run(policy, batch, "naive")
    for mode in MODES:
        if mode not in ("naive", "auto"):
            assert_same(run(policy, batch, mode), expected)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_batch_of_one(family, records):
    policy, processor, fam = make_policy(family)
    batch = collate(processor, fam, mixed_records(records, 1), BRANCH_SETS["mdpo"])
    assert_same(run(policy, batch, "shared_prefix"), run(policy, batch, "naive"))


@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("llava", {"gradient_checkpointing": False}),
        ("llava", {"train_projector": True}),  # gradients flow through encode-once features
        ("llava", {"attn_implementation": "eager"}),  # additive 4-D mask
        ("qwen2_5_vl", {}),
    ],
)
def test_shared_prefix_variants(family, options, records):
    policy, processor, fam = make_policy(family, **options)
    batch = collate(processor, fam, mixed_records(records, 2), BRANCH_SETS["mdpo"])
    assert_same(run(policy, batch, "shared_prefix"), run(policy, batch, "naive"))


def test_unknown_mode_names_the_allowed_values(records):
    policy, processor, fam = make_policy("llava", gradient_checkpointing=False)
    batch = collate(processor, fam, mixed_records(records, 1), BRANCH_SETS["dpo"])
    with pytest.raises(
        ValueError, match=r"engine.mode='packed'; allowed: \['naive', 'batched', 'shared_prefix', 'auto'\]"
    ):
        branch_logps(policy, batch, "packed")


def test_auto_picks_shared_prefix_where_supported_else_batched():
    policy, _, _ = make_policy("llava", gradient_checkpointing=False)
    assert resolve_mode("auto", policy) == "shared_prefix"
    assert resolve_mode("naive", policy) == "naive"
    policy.config.model_type = "llava_next"  # AnyRes tiling: no shared-prefix adapter
    assert resolve_mode("auto", policy) == "batched"
