"""Vision-tower calls per step (policy + reference) are what each mode promises, counted with a hook:

- ``naive``: one call per branch for the policy and again for the reference;
- ``batched``: one call each, over every branch's copy of the images;
- ``shared_prefix``: one call over the unique images (original + corrupted per record), reused by the
  reference when the vision path is frozen; a trainable projector makes the reference encode again.
"""

from __future__ import annotations

import pytest

from mmpo.engine.forward import branch_logps
from mmpo.engine.vision import ImageFeatures
from mmpo.models.families import base_model

from .conftest import BRANCH_SETS, Reference, collate, make_policy, mixed_records

TOWERS = {"llava": "model.vision_tower", "qwen2_vl": "model.visual"}


def count_tower_calls(policy, family: str) -> list[int]:
    """Images encoded by each vision-tower call."""
    calls: list[int] = []

    def hook(module, args, kwargs, output):
        grid = kwargs.get("grid_thw")
        calls.append(grid.shape[0] if grid is not None else args[0].shape[0])

    base_model(policy).get_submodule(TOWERS[family]).register_forward_hook(hook, with_kwargs=True)
    return calls


def step(policy, batch, mode: str) -> None:
    """What the module does per step: the policy forward, then the reference on the same features."""
    features = ImageFeatures.for_step(policy)
    branch_logps(policy, batch, mode, features)
    Reference("adapter_off", policy, mode).logps(policy, batch, features)


@pytest.mark.parametrize("family", sorted(TOWERS))
@pytest.mark.parametrize(
    ("mode", "train_projector", "expected"),
    [
        ("naive", False, [2] * 6),  # 3 branches x (policy, reference), 2 images each
        ("batched", False, [6, 6]),  # policy and reference, every branch's copy of the 2 images
        ("shared_prefix", False, [4]),  # 2 records x (original, corrupted), once per step
        ("shared_prefix", True, [4, 4]),  # the adapters-off projector differs: the reference encodes again
    ],
)
def test_vision_tower_calls_per_step(family, mode, train_projector, expected, records):
    policy, processor, fam = make_policy(
        family, gradient_checkpointing=False, train_projector=train_projector
    )
    batch = collate(processor, fam, mixed_records(records, 2), BRANCH_SETS["mdpo"])
    calls = count_tower_calls(policy, family)
    step(policy, batch, mode)
    assert calls == expected
