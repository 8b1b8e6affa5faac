"""Packed rows (``data.token_budget``) and the FlexAttention block mask: the groups of several records in
one row give naive's per-branch log-probs and gradients, no padding is processed, and the block mask is
the dense mask's rule with other groups' blocks skipped."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import transformers.integrations.flex_attention as transformers_flex
from torch.nn.attention.flex_attention import flex_attention

from mmpo.data.rows import IGNORE_INDEX, PreferenceBatch
from mmpo.engine.forward import branch_logps
from mmpo.engine.layout import attention_mask, build_layout, pack_rows
from mmpo.models.families import family_of

from .conftest import BRANCH_SETS, collate, make_policy, mixed_records
from .test_modes import LOGP_TOL, assert_same, run


def minimum_tokens(batch: PreferenceBatch) -> int:
    """Each (record, image, context) group's prompt once, each response once but its last token (nothing
    is predicted from it): ``sum_groups P + sum_j (n_j - 1)``, from the collated rows."""
    total = 0
    for record in range(len(batch)):
        prompts = {}
        for branch, rows in batch.rows.items():
            is_response = rows.labels[record] != IGNORE_INDEX
            prompts[(branch.image, branch.k, branch.context)] = int(is_response.int().argmax())
            total += int(is_response.sum()) - 1
        total += sum(prompts.values())
    return total


def decoder_tokens(policy, batch: PreferenceBatch) -> tuple[int, list[int]]:
    """Token positions the decoder processed in one no-grad forward, and the length of each call."""
    lengths = []

    def count(module, args, kwargs):
        lengths.extend([kwargs["inputs_embeds"].shape[1]] * kwargs["inputs_embeds"].shape[0])

    hook = policy.get_decoder().register_forward_pre_hook(count, with_kwargs=True)
    with torch.no_grad():
        branch_logps(policy, batch, "shared_prefix")
    hook.remove()
    return sum(lengths), lengths


def test_first_fit_decreasing_by_hand():
    assert pack_rows([5, 4, 3, 3, 1], 8) == [[0, 2], [1, 3, 4]]
    assert pack_rows([10, 2], 8) == [[0], [1]]  # longer than the budget: alone in its row
    assert pack_rows([3, 2], None) == [[0], [1]]
    with pytest.raises(ValueError, match="data.token_budget=0"):
        pack_rows([3], 0)


def test_mask_keeps_groups_of_one_row_apart():
    segments = torch.tensor([[0, 0, 1, 2, 0, 1, -1]])
    documents = torch.tensor([[0, 0, 0, 0, 1, 1, -1]])
    mask = attention_mask(segments, documents, "sdpa", torch.float32)[0, 0].int()
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],  # the second group's prompt starts afresh
        [0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("size", [1, 4])
def test_packed_rows_match_naive(family, size, records):
    policy, processor, fam = make_policy(family)
    batch = collate(processor, fam, mixed_records(records, size), BRANCH_SETS["mdpo"])
    packed = replace(batch, token_budget=10_000)
    layout = build_layout(policy, family_of(policy), packed)
    assert layout.input_ids.shape[0] == 1 and int(layout.documents.max()) == 2 * size - 1  # all in one row
    assert_same(run(policy, packed, "shared_prefix"), run(policy, batch, "naive"))


@pytest.mark.parametrize("size", [1, 2, 4, 8, 16])
def test_packed_step_processes_the_minimum_tokens(size, records):
    policy, processor, fam = make_policy("llava", gradient_checkpointing=False)
    batch = collate(processor, fam, mixed_records(records, size), BRANCH_SETS["mdpo"])
    longest_group = max(build_layout(policy, fam, batch).lengths.tolist())
    budget = 2 * longest_group
    processed, rows = decoder_tokens(policy, replace(batch, token_budget=budget))
    assert processed == minimum_tokens(batch)  # within 0%: packed rows are never padded
    assert max(rows) <= budget
    unpacked, _ = decoder_tokens(policy, batch)
    assert unpacked >= processed


def test_block_mask_follows_the_dense_rule_and_skips_other_groups():
    block = 128
    segments = torch.tensor([[0] * 200 + [1] * 56 + [0] * 128 + [1] * 100 + [2] * 28])
    documents = torch.tensor([[0] * 256 + [1] * 256])
    dense = attention_mask(segments, documents, "sdpa", torch.float32)[0, 0]
    blocks = attention_mask(segments, documents, "flex_attention", torch.float32)
    q, k = torch.arange(512)[:, None], torch.arange(512)[None, :]
    zero = torch.zeros((), dtype=torch.long)
    assert torch.equal(blocks.mask_mod(zero, zero, q, k), dense)
    assert blocks.BLOCK_SIZE == (block, block)
    # query blocks 2 and 3 (the second group) visit their own group's key blocks only: 1 and 2, not 3 and 4
    visited = blocks.kv_num_blocks[0, 0] + blocks.full_kv_num_blocks[0, 0]
    assert visited.tolist() == [1, 2, 1, 2]


@pytest.mark.parametrize("size", [1, 4])
@pytest.mark.parametrize("token_budget", [None, 10_000])
def test_flex_attention_matches_the_dense_mask(size, token_budget, records, monkeypatch):
    """LLaVA's Llama takes a ``BlockMask`` through transformers' flex_attention. On a CPU FlexAttention
    runs forward only (no backward kernel); it runs uncompiled here (transformers compiles it, 40 s on
    this machine); on a GPU it is compiled and also trains."""

    def uncompiled(query, key, value, training=False, **kwargs):
        return flex_attention(query, key, value, **kwargs)

    monkeypatch.setattr(transformers_flex, "compile_friendly_flex_attention", uncompiled)
    policy, processor, fam = make_policy("llava", gradient_checkpointing=False)
    batch = replace(
        collate(processor, fam, mixed_records(records, size), BRANCH_SETS["mdpo"]), token_budget=token_budget
    )
    with torch.no_grad():
        dense, dense_counts = branch_logps(policy, batch, "shared_prefix")
        policy.set_attn_implementation({"text_config": "flex_attention"})
        assert policy.get_decoder().config._attn_implementation == "flex_attention"
        flex, flex_counts = branch_logps(policy, batch, "auto")
    for branch in dense:
        torch.testing.assert_close(flex[branch], dense[branch], **LOGP_TOL)
        assert torch.equal(flex_counts[branch], dense_counts[branch])
