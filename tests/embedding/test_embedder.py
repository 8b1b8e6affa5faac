"""The embedder: mean pooling over real tokens only, batch-independent, bidirectional as transformers' own
switch gives it, causal as the model's default forward gives it, for every supported family."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmpo.embedding.attention import attention_mask_4d
from mmpo.embedding.embedder import Embedder, mean_pool
from tests.embedding.helpers import dynamic_resolution
from tests.engine.conftest import BUILDERS, make_policy

FAMILIES = ["llava", "qwen2_vl", "qwen2_5_vl"]
SHORT = "a red circle"
LONG = "a blue square at the top left and a green triangle at the bottom right."


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    model, processor = BUILDERS[request.param]()
    return model.eval(), processor


def images() -> list[Image.Image]:
    return [Image.new("RGB", (56, 56), (220, 30, 30)), Image.new("RGB", (56, 56), (30, 60, 220))]


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [7.0, 8.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [6.0, 7.0]]))


def test_mask_4d_by_hand():
    mask = torch.tensor([[1, 1, 0]])
    causal = attention_mask_4d(mask, bidirectional=False, implementation="sdpa", dtype=torch.float32)
    both = attention_mask_4d(mask, bidirectional=True, implementation="sdpa", dtype=torch.float32)
    assert causal[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert both[0, 0].int().tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 1]]
    eager = attention_mask_4d(mask, bidirectional=True, implementation="eager", dtype=torch.float32)
    assert torch.equal(eager == 0, both)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_changes_nothing(tiny, bidirectional):
    embedder = Embedder(*tiny, bidirectional=bidirectional)
    with torch.no_grad():
        alone = embedder.encode_texts([SHORT])
        batched = embedder.encode_texts([LONG, SHORT])
    assert torch.allclose(batched[1], alone[0], atol=1e-5)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_bidirectional_is_transformers_non_causal_forward(tiny):
    """Our 4-D mask = transformers' own ``is_causal=False`` switch on the unpadded prompt; and it
    differs from the causal embedding, which equals the model's default forward."""
    model, processor = tiny
    embedder = Embedder(model, processor, bidirectional=True)
    inputs = processor(text=[embedder.prompt(SHORT, 0)], return_tensors="pt")
    with torch.no_grad():
        causal = model.model(**inputs).last_hidden_state.mean(1)
        text_config = model.config.get_text_config()
        text_config.is_causal = False
        try:
            non_causal = model.model(**inputs).last_hidden_state.mean(1)
        finally:
            text_config.is_causal = True
        ours = embedder.encode_texts([SHORT])
        ours_causal = Embedder(model, processor, bidirectional=False).encode_texts([SHORT])
    assert torch.allclose(ours, torch.nn.functional.normalize(non_causal, dim=-1), atol=1e-5)
    assert torch.allclose(ours_causal, torch.nn.functional.normalize(causal, dim=-1), atol=1e-5)
    assert (ours - ours_causal).abs().max() > 1e-3


def test_images_batch_independent_and_eager_equals_sdpa(tiny):
    model, processor = tiny
    with torch.no_grad():
        sdpa = Embedder(model, processor).encode_images(images())
        alone = Embedder(model, processor).encode_images(images()[1:])
        model.set_attn_implementation("eager")
        try:
            eager = Embedder(model, processor).encode_images(images())
        finally:
            model.set_attn_implementation("sdpa")
    assert sdpa.shape == (2, model.config.get_text_config().hidden_size)
    assert torch.allclose(alone[0], sdpa[1], atol=1e-5)
    assert torch.allclose(eager, sdpa, atol=1e-5)
    assert (sdpa[0] - sdpa[1]).abs().max() > 1e-4


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_images_of_different_token_counts_pad_without_effect(family):
    """Right padding of an image prompt: M-RoPE positions from the 2-D mask, as the model computes them."""
    model, processor = BUILDERS[family]()
    embedder = Embedder(model.eval(), dynamic_resolution(processor))
    small, big = Image.new("RGB", (28, 28), (220, 30, 30)), Image.new("RGB", (56, 56), (30, 60, 220))
    with torch.no_grad():
        batched = embedder.encode_images([small, big])
        alone = embedder.encode_images([small])
        inputs = processor(
            text=[embedder.prompt(embedder.image_prompt, 1)], images=[small], return_tensors="pt"
        )
        text_config = model.config.get_text_config()
        text_config.is_causal = False
        try:
            reference = model.model(**inputs).last_hidden_state.mean(1)
        finally:
            text_config.is_causal = True
    assert torch.allclose(batched[0], alone[0], atol=1e-5)
    assert torch.allclose(alone, torch.nn.functional.normalize(reference, dim=-1), atol=1e-5)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_gradients_reach_every_lora_matrix_through_checkpointing(family):
    policy, processor, _ = make_policy(family)  # LoRA on all LLM linears, gradient checkpointing on
    embedder = Embedder(policy, processor)
    loss = (embedder.encode_images(images()[:1]) * embedder.encode_texts([SHORT])).sum()
    loss.backward()
    lora = {name: p.grad for name, p in policy.named_parameters() if "lora_" in name}
    assert lora and all(grad is not None and grad.abs().sum() > 0 for grad in lora.values())


def test_clear_errors():
    model, processor = BUILDERS["llava"]()
    with pytest.raises(ValueError, match=r"\{text\}"):
        Embedder(model, processor, text_template="no placeholder")
    model.get_decoder().config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="allowed: \\['sdpa', 'eager'\\]"):
        Embedder(model, processor)
