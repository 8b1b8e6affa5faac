"""MCM-DPO's 8 branches: built once each, one packed row per (image, context) of a record, the same
log-probs and gradients as separate forwards in every engine mode, and inputs (swapped context,
diffusion noise) that are deterministic per record and the same for policy and reference."""

from __future__ import annotations

import math

import pytest
import torch

from mmpo.branches import CHOSEN, Branch
from mmpo.data.examples import draws_per_epoch
from mmpo.data.records import read_records
from mmpo.engine.forward import MODES, branch_logps
from mmpo.engine.layout import build_layout
from mmpo.losses import MCMDPOLoss
from mmpo.models.families import family_of
from mmpo.negatives import DiffusionNoiseSampler

from .conftest import Reference, collate, make_policy
from .test_modes import assert_same, run

BRANCHES = MCMDPOLoss().requirements.branches
SWAPPED = [b for b in BRANCHES if b.context == "swapped"]
NEGATIVE = [b for b in BRANCHES if b.image == "negative"]


@pytest.fixture(scope="module")
def alt_records(shapes_dir):
    """Alt-text pairs (every record has a context); chosen and rejected lengths differ, so rows pad."""
    return read_records(shapes_dir / "alt_text_train.jsonl")[:3]


def mcm_batch(processor, family, records, epoch=0, context_swap="per_record", seed=0):
    sampler = DiffusionNoiseSampler(step=700)
    return collate(processor, family, records, BRANCHES, epoch, seed, sampler, context_swap)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_eight_branches_match_separate_forwards_in_every_mode(family, alt_records):
    policy, processor, fam = make_policy(family)
    batch = mcm_batch(processor, fam, alt_records)
    assert list(batch.rows) == list(BRANCHES) and len(BRANCHES) == 8  # each branch's rows built once
    assert all(rows.num_rows == len(alt_records) for rows in batch.rows.values())
    expected = run(policy, batch, "naive")  # one HF forward per branch
    for mode in MODES:
        if mode not in ("naive", "auto"):
            assert_same(run(policy, batch, mode), expected)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_layout_packs_four_rows_per_record_one_per_image_and_context(family, alt_records):
    policy, processor, fam = make_policy(family, gradient_checkpointing=False)
    batch = mcm_batch(processor, fam, alt_records)
    layout = build_layout(policy, family_of(policy), batch)
    assert layout.input_ids.shape[0] == 4 * len(batch)
    assert (layout.segments.max(dim=1).values == 2).all()  # chosen and rejected share every row
    rows_of = {}
    for owner, (branch, record) in enumerate(layout.owner_keys):
        row = int(layout.sources[layout.owners == owner][0]) // layout.input_ids.shape[1]
        rows_of.setdefault((record, branch.image, branch.context), set()).add(row)
    assert len(rows_of) == 4 * len(batch) and all(len(rows) == 1 for rows in rows_of.values())
    # two distinct images per record (the image and its noised copy), whatever the context
    keys = {key for row in layout.images for key, _ in row}
    assert len(keys) == 2 * len(batch)


def test_swapped_context_per_record_is_the_same_every_epoch_and_per_epoch_is_not(alt_records, shapes_dir):
    _, processor, family = make_policy("llava", gradient_checkpointing=False)
    records = read_records(shapes_dir / "alt_text_train.jsonl")[:8]

    def prompts(epoch, rule):
        sampler = DiffusionNoiseSampler(step=700)
        batch = collate(processor, family, records, SWAPPED, epoch, 0, sampler, rule)
        return {b: batch.rows[b].tensors["input_ids"] for b in SWAPPED}

    first, again, later = prompts(0, "per_record"), prompts(0, "per_record"), prompts(3, "per_record")
    for branch in SWAPPED:
        assert torch.equal(first[branch], again[branch]) and torch.equal(first[branch], later[branch])
        assert not draws_per_epoch(branch, None, "per_record")
    # the epoch-0 draw of per_epoch is the per_record draw; later epochs draw other contexts
    assert all(torch.equal(prompts(0, "per_epoch")[b], first[b]) for b in SWAPPED)
    assert not torch.equal(prompts(3, "per_epoch")[SWAPPED[0]], first[SWAPPED[0]])
    assert draws_per_epoch(SWAPPED[0], None, "per_epoch")
    # the swapped context is another record's, in every swapped branch of a record alike
    batch = mcm_batch(processor, family, records)
    text = processor.tokenizer.batch_decode(
        batch.rows[Branch("chosen", context="swapped")].tensors["input_ids"]
    )
    for record, decoded in zip(records, text, strict=True):
        assert record.context not in decoded and "Posted by" in decoded


def test_diffusion_noise_is_drawn_once_per_record_and_epoch_for_all_four_negative_rows(alt_records):
    _, processor, family = make_policy("llava", gradient_checkpointing=False)
    batch, again = (mcm_batch(processor, family, alt_records) for _ in "ab")
    pixels = {b: batch.rows[b].tensors["pixel_values"] for b in BRANCHES}
    for branch in NEGATIVE:
        assert torch.equal(pixels[branch], pixels[NEGATIVE[0]])  # one noised image per record
        assert torch.equal(pixels[branch], again.rows[branch].tensors["pixel_values"])  # deterministic
    # x_t = sqrt(abar_700) x_0 + sqrt(1 - abar_700) eps (0.5927 x_0 + 0.8054 eps): eps is standard normal
    abar = DiffusionNoiseSampler(step=700).alpha_bar
    assert abar == pytest.approx(0.3513, abs=1e-4)
    eps = (pixels[NEGATIVE[0]] - math.sqrt(abar) * pixels[CHOSEN]) / math.sqrt(1 - abar)
    assert abs(eps.std().item() - 1.0) < 0.05 and abs(eps.mean().item()) < 0.05
    # new noise in a new epoch (the official code draws it in __getitem__, every epoch)
    later = mcm_batch(processor, family, alt_records, epoch=1)
    assert not torch.equal(later.rows[NEGATIVE[0]].tensors["pixel_values"], pixels[NEGATIVE[0]])


def test_policy_and_reference_see_the_same_noise_and_contexts(alt_records):
    """reference=copy at step 0: every branch's reference log-prob equals the policy's, so the loss is
    exactly log 2; a reference that drew its own noise or context would differ on 6 of the 8 branches."""
    policy, processor, family = make_policy("llava", gradient_checkpointing=False)
    batch = mcm_batch(processor, family, alt_records)
    assert batch.for_reference() is batch
    reference = Reference("copy", policy, "shared_prefix")
    with torch.no_grad():
        logps, _ = branch_logps(policy, batch, "shared_prefix")
        ref = reference.logps(policy, batch)
    for branch in BRANCHES:
        torch.testing.assert_close(ref[branch], logps[branch], rtol=0, atol=1e-5)
    loss = MCMDPOLoss()(logps, ref).loss
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
