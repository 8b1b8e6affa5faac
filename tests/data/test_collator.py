"""The collator: label masks, image-token counts, truncation that never cuts image tokens, branches,
seeded corruptions shared by policy and reference."""

from __future__ import annotations

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, Branch, negatives_needed
from mmpo.data.collator import PreferenceCollator
from mmpo.data.examples import Example, PreferenceDataset
from mmpo.data.records import Record, RecordError, read_records
from mmpo.data.rows import IGNORE_INDEX
from mmpo.images import load_image
from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl
from mmpo.negatives import CropSampler, DiffusionNoiseSampler, Negative

FAMILIES = {"llava": build_tiny_llava, "qwen2_vl": build_tiny_qwen2vl}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def setup(request):
    _, processor = FAMILIES[request.param]()
    return processor, get_family(request.param)


@pytest.fixture(scope="module")
def examples(shapes_dir):
    records = read_records(shapes_dir / "train.jsonl")[:3]
    return [Example(r, [load_image(p) for p in r.images]) for r in records]


def collate(setup, examples, branches=(CHOSEN, REJECTED), sampler=None, epoch=0, **kwargs):
    """What the data module does with ``examples``' records: the data set draws (``sampler``, seeded by
    ``epoch``), the collator builds the rows of ``branches``."""
    processor, family = setup
    if sampler is None and not negatives_needed(branches):
        return PreferenceCollator(processor, family, branches, **kwargs)(examples)
    dataset = PreferenceDataset([e.record for e in examples], sampler, negatives_needed(branches))
    dataset.epoch = epoch
    return PreferenceCollator(processor, family, branches, **kwargs)(
        [dataset[i] for i in range(len(dataset))]
    )


def test_labels_mask_prompt_and_image_and_hold_the_response_then_eos(setup, examples):
    processor, family = setup
    batch = collate(setup, examples)
    tok = processor.tokenizer
    image_id = family.image_token_id(processor)
    for branch in (CHOSEN, REJECTED):
        rows = batch.rows[branch]
        for i, example in enumerate(examples):
            ids, labels, mask = (
                rows.tensors["input_ids"][i],
                rows.labels[i],
                rows.tensors["attention_mask"][i],
            )
            record = example.record
            response = record.chosen if branch.response == "chosen" else record.rejected[branch.j]
            expected = tok(family.response_separator + response, add_special_tokens=False)["input_ids"]
            expected = expected + [tok.eos_token_id]
            kept = labels[labels != IGNORE_INDEX].tolist()
            assert kept == expected
            n = int(mask.sum())
            assert ids[n - len(expected) : n].tolist() == expected  # the response ends the unpadded row
            assert (labels[: n - len(expected)] == IGNORE_INDEX).all()  # prompt and image positions masked
            assert not (labels == image_id).any()
            assert (labels[n:] == IGNORE_INDEX).all() and (mask[n:] == 0).all()


def test_branches_of_a_record_share_identical_prompt_ids(setup, examples):
    batch = collate(setup, examples)
    for i in range(len(examples)):
        c, r = batch.rows[CHOSEN], batch.rows[REJECTED]
        pc = c.tensors["input_ids"][i][c.labels[i] == IGNORE_INDEX][
            : int((r.labels[i] == IGNORE_INDEX).sum())
        ]
        pr = r.tensors["input_ids"][i][r.labels[i] == IGNORE_INDEX][: len(pc)]
        assert torch.equal(pc, pr)


def test_image_token_count_matches_the_processed_image(setup, examples):
    processor, family = setup
    batch = collate(setup, examples)
    rows = batch.rows[CHOSEN]
    count = int((rows.tensors["input_ids"] == family.image_token_id(processor)).sum())
    per_image = 16 if family.name == "llava" else 4  # (32/8)^2 patches; (56/14)^2 / 2^2 merged
    assert count == per_image * len(examples)
    extra = {k for k in rows.tensors if k not in ("input_ids", "attention_mask", "labels")}
    assert "pixel_values" in extra and ("image_grid_thw" in extra) == (family.name == "qwen2_vl")


def test_bad_image_token_count_is_caught(setup, examples, monkeypatch):
    processor, family = setup
    monkeypatch.setattr(type(family), "expected_image_tokens", lambda *a: 999)
    with pytest.raises(RecordError, match="image placeholder tokens"):
        collate(setup, examples)


def _prompt_len(setup, example):
    batch = collate(setup, [example], max_length=10_000)
    return int((batch.rows[CHOSEN].labels[0] == IGNORE_INDEX).sum())


def test_truncation_never_cuts_image_tokens(setup, examples):
    processor, family = setup
    example = examples[0]
    prompt = _prompt_len(setup, example)
    # room for 2 response tokens: delete drops the record, truncate_response keeps prompt + 2 tokens
    deleted = collate(setup, [example, examples[1]], max_length=prompt + 2, truncation="delete")
    assert example.record.id not in deleted.ids and deleted.dropped == {
        "too_long": len(deleted.ids) == 0 and 2 or 1
    }
    cut = collate(setup, [example], max_length=prompt + 2, truncation="truncate_response")
    row = cut.rows[CHOSEN]
    assert row.tensors["input_ids"].shape[1] == prompt + 2
    assert int((row.labels != IGNORE_INDEX).sum()) == 2
    full = collate(setup, [example], max_length=10_000)
    image_id = family.image_token_id(processor)
    assert int((row.tensors["input_ids"] == image_id).sum()) == int(
        (full.rows[CHOSEN].tensors["input_ids"] == image_id).sum()
    )
    # a prompt that alone is too long is dropped, never cut
    short = collate(setup, [example], max_length=prompt - 1, truncation="truncate_response")
    assert len(short) == 0 and short.dropped == {"prompt_too_long": 1}
    with pytest.raises(RecordError, match="exceed data.max_length"):
        collate(setup, [example], max_length=prompt + 2, truncation="raise")


def test_no_image_mode_removes_images_from_every_branch(setup, examples):
    processor, family = setup
    batch = collate(setup, examples, image="none")
    for rows in batch.rows.values():
        assert "pixel_values" not in rows.tensors
        assert not (rows.tensors["input_ids"] == family.image_token_id(processor)).any()


@pytest.mark.parametrize("apply_to", ["pixels", "pil"])
def test_corrupted_branch_is_seeded_and_keeps_the_token_count(setup, examples, apply_to):
    sampler = DiffusionNoiseSampler(apply_to=apply_to)
    branches = (CHOSEN, REJECTED, CHOSEN_NEGATIVE)
    first = collate(setup, examples, branches, sampler=sampler)
    again = collate(setup, examples, branches, sampler=sampler)
    later = collate(setup, examples, branches, sampler=sampler, epoch=1)
    clean, corrupted = first.rows[CHOSEN].tensors, first.rows[CHOSEN_NEGATIVE].tensors
    assert torch.equal(clean["input_ids"], corrupted["input_ids"])
    assert not torch.allclose(clean["pixel_values"], corrupted["pixel_values"])
    assert torch.equal(corrupted["pixel_values"], again.rows[CHOSEN_NEGATIVE].tensors["pixel_values"])
    assert not torch.equal(corrupted["pixel_values"], later.rows[CHOSEN_NEGATIVE].tensors["pixel_values"])
    assert first.reference_rows == {}  # policy and reference score the same corrupted pixels
    assert first.for_reference().rows[CHOSEN_NEGATIVE] is first.rows[CHOSEN_NEGATIVE]


def test_resample_per_forward_gives_the_reference_its_own_crop(setup, examples):
    sampler = CropSampler(resample_per_forward=True)
    batch = collate(setup, examples, (CHOSEN, REJECTED, CHOSEN_NEGATIVE), sampler=sampler)
    policy = batch.rows[CHOSEN_NEGATIVE].tensors["pixel_values"]
    reference = batch.for_reference().rows[CHOSEN_NEGATIVE].tensors["pixel_values"]
    assert policy.shape == reference.shape and not torch.equal(policy, reference)


def test_pixel_tensors_round_trip_through_the_family_layout(setup, examples):
    processor, family = setup
    text = family.chat_prompt(processor, "x", 1)
    inputs = processor(text=[text], images=[examples[0].images[0]], return_tensors="pt")
    images = {k: v for k, v in inputs.items() if k in ("pixel_values", "image_grid_thw")}
    tensors = family.image_tensors(processor, images)
    assert tensors[0].ndim == 3 and tensors[0].shape[0] == 3
    back = family.with_image_tensors(processor, images, tensors)
    assert torch.equal(back["pixel_values"], images["pixel_values"])


def test_swapped_context_and_negative_images(setup, examples, shapes_dir):
    record = Record("x", examples[0].record.images, "Describe.", "a", ["b"], context="ctx one")
    negative = Negative((examples[2].images[0],))  # another scene
    example = Example(record, examples[0].images, [negative], swapped_context="ctx two")
    branches = (Branch("chosen", context="swapped"), Branch("chosen", "negative", 0))
    processor, family = setup
    batch = PreferenceCollator(processor, family, branches)([example])
    swapped = processor.tokenizer.decode(batch.rows[branches[0]].tensors["input_ids"][0])
    assert "ctx two" in swapped and "ctx one" not in swapped
    negative = batch.rows[branches[1]].tensors["pixel_values"]
    own = collate(setup, [example], (CHOSEN,)).rows[CHOSEN].tensors["pixel_values"]
    assert not torch.equal(negative, own)
    with pytest.raises(RecordError, match="needs negative image 1, but the negative_sampler drew 1"):
        PreferenceCollator(processor, setup[1], (Branch("chosen", "negative", 1),))([example])
    with pytest.raises(
        RecordError,
        match="field 'rejected' holds 1, but branch rejected.1.@original needs rejected response 1",
    ):
        PreferenceCollator(processor, setup[1], (Branch("rejected", j=1),))([example])


def test_a_rejected_list_gives_one_branch_per_rejected_response(setup, examples):
    record = examples[0].record
    ranked = Record("r", record.images, record.prompt, record.chosen, ["first no", "second no"])
    batch = collate(setup, [Example(ranked, examples[0].images)], (CHOSEN, REJECTED, Branch("rejected", j=1)))
    tok = setup[0].tokenizer
    texts = [
        tok.decode(batch.rows[b].labels[0][batch.rows[b].labels[0] != IGNORE_INDEX])
        for b in (REJECTED, Branch("rejected", j=1))
    ]
    assert "first no" in texts[0] and "second no" in texts[1]
    assert str(Branch("rejected", j=1)) == "rejected[1]@original" and str(REJECTED) == "rejected@original"


def test_config_errors_name_the_option():
    _, processor = build_tiny_llava()
    family = get_family("llava")
    with pytest.raises(ValueError, match="data.truncation='cut'"):
        PreferenceCollator(processor, family, (CHOSEN,), truncation="cut")
    with pytest.raises(ValueError, match="negative image.* need a negative_sampler"):
        PreferenceDataset([], None, negatives=1)


def test_unpatchified_qwen2vl_pixels_are_the_resized_normalized_image(examples):
    import numpy as np
    from PIL import Image

    _, processor = build_tiny_qwen2vl()
    family = get_family("qwen2_vl")
    image = examples[0].images[0]
    inputs = processor.image_processor(images=[image], return_tensors="pt")
    (pixels,) = family.image_tensors(processor, dict(inputs))
    ip = processor.image_processor
    resized = np.asarray(image.resize((56, 56), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    expected = (resized - np.array(ip.image_mean)) / np.array(ip.image_std)
    assert torch.allclose(pixels, torch.tensor(expected, dtype=torch.float32).permute(2, 0, 1), atol=1e-4)
