"""Batched generation: left padding makes a batch decode exactly like its items one by one."""

from __future__ import annotations

import pytest

from mmpo.benchmarks.base import EvalItem
from mmpo.benchmarks.shapes import ShapesCHAIR, ShapesPOPE
from mmpo.generation import generate
from mmpo.models.loading import load_base

WORLD = {"num_scenes": 40}


@pytest.mark.parametrize("model", ["tiny_llava", "tiny_qwen2vl"])
def test_batched_generation_equals_one_by_one(compose, shapes_dir, model):
    # seed 1: a random model whose greedy continuation depends on its prompt (with seed 0 the tiny
    # LLaVA continues a right-padded row like an unpadded one, and could not expose a padding bug)
    policy, processor, family = load_base(compose([f"model={model}", "model.tiny.seed=1"]).model)
    items = [
        *ShapesCHAIR(path=str(shapes_dir), world=WORLD).items()[:4],
        *ShapesPOPE(path=str(shapes_dir), world=WORLD).items()[:8],
        EvalItem("text-only", None, "Name a shape."),
    ]
    prompts = [family.chat_prompt(processor, item.prompt, int(item.image is not None)) for item in items[:-1]]
    lengths = {len(ids) for ids in processor.tokenizer(prompts)["input_ids"]}
    assert len(lengths) > 1  # the batch needs padding, else this test could not see a padding bug
    policy.train()
    decoding = {"max_new_tokens": 8}
    batched = generate(policy, processor, family, items, decoding, batch_size=12, progress=False)
    single = generate(policy, processor, family, items, decoding, batch_size=1, progress=False)
    assert batched == single
    assert set(batched) == {item.id for item in items} and any(batched.values())
    assert generate(policy, processor, family, items, decoding, batch_size=5, progress=False) == batched
    # the training state is left as found
    assert processor.tokenizer.padding_side == "right" and policy.training


def test_generation_rejects_an_empty_batch_size(compose):
    policy, processor, family = load_base(compose([]).model)
    with pytest.raises(ValueError, match="batch_size"):
        generate(policy, processor, family, [], batch_size=0)
