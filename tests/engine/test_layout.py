"""The shared-prefix layout: grouping from the data, positions (1-D and M-RoPE), the block mask."""

from __future__ import annotations

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.data.rows import IGNORE_INDEX, Rows
from mmpo.engine.layout import Layout, attention_mask, build_layout
from mmpo.models.families import base_model, family_of

from .conftest import BRANCH_SETS, collate, make_policy, mixed_records


@pytest.fixture(params=["llava", "qwen2_vl"])
def setup(request, records):
    policy, processor, family = make_policy(request.param, gradient_checkpointing=False)
    batch = collate(processor, family, mixed_records(records, 2), BRANCH_SETS["mdpo"])
    return policy, batch, build_layout(policy, family_of(policy), batch)


def test_one_row_per_image_group_and_each_prefix_once(setup):
    policy, batch, layout = setup
    assert layout.input_ids.shape[0] == 2 * len(batch)  # (chosen, rejected)@original and chosen@corrupted
    for record in range(len(batch)):
        lengths = {b: int(batch.rows[b].tensors["attention_mask"][record].sum()) for b in batch.rows}
        prompt = int((batch.rows[CHOSEN].labels[record] != IGNORE_INDEX).int().argmax())
        shared = 2 * record  # groups are created record by record: original first, then corrupted
        response = {b: lengths[b] - prompt for b in batch.rows}
        assert (
            int((layout.segments[shared] >= 0).sum())
            == prompt + response[CHOSEN] - 1 + response[REJECTED] - 1
        )
        assert int((layout.segments[shared + 1] >= 0).sum()) == prompt + response[CHOSEN_NEGATIVE] - 1
    assert layout.targets.shape[0] == sum(int((r.labels != IGNORE_INDEX).sum()) for r in batch.rows.values())


def test_placeholders_alike_but_images_differ_are_not_grouped(setup):
    _, batch, layout = setup
    # chosen@original and chosen@negative[0] have identical prompt ids (same placeholders) ...
    original, corrupted = batch.rows[CHOSEN], batch.rows[CHOSEN_NEGATIVE]
    assert torch.equal(original.tensors["input_ids"], corrupted.tensors["input_ids"])
    # ... but another image, so they are packed in different rows
    first, second = layout.images[0], layout.images[1]
    assert first[0][0][1] == "original" and second[0][0][1] == "negative"


def test_prompt_or_image_mismatch_inside_a_group_is_an_error(setup):
    policy, batch, _ = setup
    tampered = dict(batch.rows[REJECTED].tensors)
    tampered["pixel_values"] = tampered["pixel_values"] + 1.0
    batch.rows[REJECTED] = Rows(tampered)
    with pytest.raises(ValueError, match="same image and context as another branch"):
        build_layout(policy, family_of(policy), batch)


def test_every_branch_continues_where_the_full_row_would(setup):
    """Trap: positions. Each branch's positions equal those of its own unshared row, as the model computes
    them (LLaVA: token count; Qwen2-VL: ``get_rope_index`` M-RoPE, max(image grid) + 1 after the image)."""
    policy, batch, layout = setup
    family = family_of(policy)
    for row, images in enumerate(layout.images):
        record = row // 2
        branches = [CHOSEN, REJECTED] if row % 2 == 0 else [CHOSEN_NEGATIVE]
        for segment, branch in enumerate(branches, start=1):
            rows = batch.rows[branch]
            length = int(rows.tensors["attention_mask"][record].sum())
            if family.position_axes == 3:
                full, _ = base_model(policy).model.get_rope_index(
                    rows.tensors["input_ids"][record, None, :length],
                    mm_token_type_ids=rows.tensors["mm_token_type_ids"][record, None, :length],
                    image_grid_thw=torch.cat([image["image_grid_thw"] for _, image in images]),
                )
                full = full[:, 0]
            else:
                full = torch.arange(length)[None]
            own = (layout.segments[row] == 0) | (layout.segments[row] == segment)
            packed = layout.positions[:, row][:, own]
            assert packed.shape[1] == length - 1  # the last response token is never an input
            torch.testing.assert_close(packed, full[:, :-1], rtol=0, atol=0)


def test_mask_prompt_causal_branches_isolated_padding_self():
    segments = torch.tensor([[0, 0, 1, 1, 2, -1]])
    documents = torch.tensor([[0, 0, 0, 0, 0, -1]])
    mask = attention_mask(segments, documents, "sdpa", torch.float32)[0, 0].int()
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # branch 2 sees the prompt, not branch 1
        [0, 0, 0, 0, 0, 1],  # padding sees itself only (no empty softmax row)
    ]
    additive = attention_mask(segments, documents, "eager", torch.float32)[0, 0]
    assert torch.equal(additive == 0, mask.bool())
    with pytest.raises(
        ValueError, match=r"model.attn_implementation in \['sdpa', 'eager', 'flex_attention'\]"
    ):
        attention_mask(segments, documents, "flash_attention_2", torch.float32)


def decoder_calls(lengths: list[int], at_most: int | None = None) -> list[list[int]]:
    """The decoder calls of rows of ``lengths`` tokens, with a 5% padding bound."""
    segments = torch.tensor([[0] * n + [-1] * (max(lengths) - n) for n in lengths])
    empty = torch.zeros(0, dtype=torch.long)
    layout = Layout(
        segments, segments[None], segments, segments, [[]] * len(lengths), empty, empty, empty, []
    )
    return [call.tolist() for call in layout.decoder_calls(max_padding=0.05, at_most=at_most)]


def test_rows_of_very_different_lengths_never_pad_each_other():
    assert decoder_calls([844, 745]) == [[0], [1]]  # mDPO, one record: the corrupted row lacks a response
    assert decoder_calls([844, 745, 851, 750]) == [[2, 0], [3, 1]]  # two records: similar rows share a call
    assert decoder_calls([100, 100, 100]) == [[0, 1, 2]]


def test_at_most_n_calls_put_the_shortest_rows_into_the_last_one():
    """A sharded decoder runs the same number of calls on every rank: the fewest any rank has."""
    assert decoder_calls([100, 50, 20, 10]) == [[0], [1], [2], [3]]
    assert decoder_calls([100, 50, 20, 10], at_most=2) == [[0], [1, 2, 3]]
    assert decoder_calls([100, 50, 20, 10], at_most=1) == [[0, 1, 2, 3]]
    assert decoder_calls([844, 745, 851, 750], at_most=4) == [[2, 0], [3, 1]]


def test_unsupported_family_names_the_option_and_the_allowed_values():
    from mmpo.engine.forward import shared_prefix_problems

    (problem,) = shared_prefix_problems("llava_next", "sdpa")
    assert problem.startswith(
        "engine.mode=shared_prefix does not support model.family='llava_next'; "
        "allowed families: ['llava', 'qwen2_vl', 'qwen2_5_vl']"
    )
