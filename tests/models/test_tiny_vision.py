"""The tiny LLaVA's vision pre-training (labels by hand, it learns, it is deterministic) and its init std."""

from __future__ import annotations

import pytest
import torch

from mmpo.data import shapes
from mmpo.models.tiny import build_tiny_llava
from mmpo.models.tiny_vision import cell_labels, pretrain_vision_tower

SCENE = shapes.Scene(
    "x",
    (
        shapes.ShapeObject("red", "circle", "top left"),
        shapes.ShapeObject("orange", "triangle", "bottom right"),
    ),
)


def test_cell_labels_name_the_object_of_each_patch_cell():
    names = shapes.all_object_names()
    red_circle, orange_triangle = 1 + names.index("red circle"), 1 + names.index("orange triangle")
    assert cell_labels(SCENE, 2) == [red_circle, 0, 0, orange_triangle]
    # 4x4 patches: each cell spans 2x2 of them
    top = [red_circle] * 2 + [0] * 2
    bottom = [0] * 2 + [orange_triangle] * 2
    assert cell_labels(SCENE, 4) == top + top + bottom + bottom
    with pytest.raises(ValueError, match="3x3"):
        cell_labels(SCENE, 3)


def _tower(**kwargs) -> tuple[dict[str, torch.Tensor], float]:
    model, processor = build_tiny_llava(patch_size=16)
    loss = pretrain_vision_tower(model, processor, steps=60, num_scenes=256, batch_size=32, **kwargs)
    return model.model.vision_tower.state_dict(), loss


def test_pretraining_learns_the_cells_and_is_deterministic():
    state, loss = _tower()
    # cross-entropy over 19 classes starts near ln 19 = 2.94
    assert loss < 0.3
    again, _ = _tower()
    assert all(torch.equal(state[k], again[k]) for k in state)
    other, _ = _tower(seed=1)
    assert not all(torch.equal(state[k], other[k]) for k in state)


def test_initializer_range_sets_the_language_model_init_std():
    for std in (None, 0.088):
        model, _ = build_tiny_llava(hidden_size=128, initializer_range=std)
        weight = model.model.language_model.layers[0].self_attn.q_proj.weight
        assert weight.std().item() == pytest.approx(std or 0.02, rel=0.05)
