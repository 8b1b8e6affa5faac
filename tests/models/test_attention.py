"""``model.attn_implementation``: what ``auto`` resolves to where, and that every value reaches the model
(a tiny model included)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mmpo.engine.forward import engine_problems
from mmpo.models.loading import load_model, set_attention
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl


def implementations(model) -> tuple[str, str]:
    """(language model, vision tower)."""
    return model.get_decoder().config._attn_implementation, model.config.vision_config._attn_implementation


@pytest.mark.parametrize(
    ("builder", "cuda", "flex_allowed", "expected"),
    [
        (build_tiny_llava, False, True, ("sdpa", "sdpa")),  # FlexAttention has no CPU backward
        (build_tiny_llava, True, True, ("flex_attention", "sdpa")),
        (build_tiny_llava, True, False, ("sdpa", "sdpa")),  # the embedding module: dense masks
        (build_tiny_qwen2vl, True, True, ("sdpa", "sdpa")),  # transformers: no flex for Qwen2-VL's LM
    ],
)
def test_auto_picks_flex_attention_for_the_language_model_where_it_trains(
    builder, cuda, flex_allowed, expected, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    model, _ = builder()
    set_attention(model, "auto", flex_allowed)
    assert implementations(model) == expected


def test_every_value_reaches_a_tiny_model(compose):
    """A tiny model used to keep transformers' default whatever the config said."""
    cfg = compose(["model=tiny_llava", "model.attn_implementation=eager"])
    policy, _, _ = load_model(cfg.model)
    assert implementations(policy) == ("eager", "eager")


def test_a_token_budget_without_the_shared_prefix_engine_is_a_start_up_problem():
    model = OmegaConf.create({"family": "llava", "attn_implementation": "auto"})
    (problem,) = engine_problems(OmegaConf.create({"mode": "batched"}), model, token_budget=2048)
    assert problem.startswith("data.token_budget=2048 packs the rows of engine.mode=shared_prefix")
    assert engine_problems(OmegaConf.create({"mode": "auto"}), model, token_budget=2048) == []
    llava_next = OmegaConf.create({"family": "llava_next", "attn_implementation": "sdpa"})
    problems = engine_problems(OmegaConf.create({"mode": "auto"}), llava_next, token_budget=2048)
    assert len(problems) == 2 and "model.family='llava_next'" in problems[1]
