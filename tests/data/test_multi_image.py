"""Records with several images (of different sizes) and several rejected responses, read from an arrow
folder, through both model families: one placeholder per image in order, counts checked, and the engine's
log-probs equal one plain forward per row."""

from __future__ import annotations

import pytest
import torch

from mmpo.branches import CHOSEN, REJECTED, Branch
from mmpo.data.collator import PreferenceCollator
from mmpo.data.records import RecordError
from mmpo.engine.forward import branch_logps, rows_logps

from ..engine.conftest import make_policy
from .test_arrow import write_sets

LISTWISE = [CHOSEN, REJECTED, Branch("rejected", j=1)]


def multi_image_records() -> list[dict]:
    return [
        {"id": "pair", "images": ["a.png", "b.png"], "prompt": "Which image is green?", "chosen": "The second.",
         "rejected": ["The first.", "Both."]},
        {"id": "triple", "images": ["b.png", "a.png", "b.png"], "prompt": "Count the green ones.",
         "chosen": "Two.", "rejected": ["One.", "Three."]},
    ]  # fmt: skip


@pytest.fixture
def arrow_dir(tmp_path):
    return write_sets(tmp_path, multi_image_records())["embed"]


def placeholder_runs(ids: torch.Tensor, token: int) -> list[int]:
    """Lengths of the runs of consecutive image tokens in a row, in order."""
    runs, current = [], 0
    for value in [*ids.tolist(), None]:
        if value == token:
            current += 1
        elif current:
            runs, current = [*runs, current], 0
    return runs


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_multi_image_records_give_one_placeholder_block_per_image_in_order(arrow_dir, make, family):
    module = make(arrow_dir, "data.format=arrow", "data.shuffle=false", "data.batch_size=2", family=family)
    batch = next(iter(module.train_dataloader()))
    processor, fam = module.processor, module.family
    rows = batch.rows[CHOSEN].tensors
    token = fam.image_token_id(processor)
    if family == "llava":  # every image (24x16 and 20x20) resized to 32x32, 8 px patches: 16 tokens each
        expected = [[16, 16], [16, 16, 16]]
    else:  # Qwen2-VL: each image's own grid, t*h*w / merge^2 tokens, in the record's order
        grids = rows["image_grid_thw"]
        assert grids.shape[0] == 5
        per_image = (grids.prod(-1) // processor.image_processor.merge_size**2).tolist()
        expected = [per_image[:2], per_image[2:]]
        assert per_image[0] == per_image[3] and per_image[1] == per_image[2] == per_image[4]  # a, b order
        assert per_image[0] != per_image[1]  # the two sizes give different token counts
    assert [placeholder_runs(ids, token) for ids in rows["input_ids"]] == expected


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_the_engine_scores_multi_image_rows_like_one_forward_per_row(arrow_dir, make, family):
    policy, processor, fam = make_policy(family, gradient_checkpointing=False)
    dataset = make(arrow_dir, "data.format=arrow", family=family).datasets["train"]
    collator = PreferenceCollator(processor, fam, LISTWISE)
    batch = collator([dataset[0], dataset[1]])
    with torch.no_grad():
        for mode in ("batched", "shared_prefix"):
            logps, _ = branch_logps(policy, batch, mode)
            for branch in LISTWISE:
                for i in range(2):
                    one = collator([dataset[i]]).rows[branch]
                    expected, _ = rows_logps(policy, one)
                    torch.testing.assert_close(logps[branch][i], expected[0], atol=1e-5, rtol=1.3e-6)
        swapped = dataset[0]
        swapped.images = swapped.images[::-1]
        reordered, _ = rows_logps(policy, collator([swapped]).rows[CHOSEN])
        original, _ = rows_logps(policy, collator([dataset[0]]).rows[CHOSEN])
        assert not torch.allclose(reordered, original)  # which image fills which placeholder matters


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_a_template_that_drops_an_image_placeholder_is_named_before_training(
    arrow_dir, make, family, monkeypatch
):
    from mmpo.models.families import Family, QwenVLFamily

    cls = QwenVLFamily if family == "qwen2_vl" else Family
    chat_prompt = cls.chat_prompt
    monkeypatch.setattr(
        cls, "chat_prompt", lambda self, p, text, n: chat_prompt(self, p, text, max(n - 1, 0))
    )
    with pytest.raises(RecordError, match=r"train row 0 \(record id 'train-pair'\): field 'images'"):
        make(arrow_dir, "data.format=arrow", family=family)
