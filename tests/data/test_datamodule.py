"""The data of a run as the preference module plans it: per-split samplers (a fixed validation
corruption) and the validation branches (image-reliance diagnostics)."""

from __future__ import annotations

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.data.datamodule import PreferenceDataModule
from mmpo.losses import build_loss
from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava
from mmpo.modules.preference import plan


@pytest.fixture(scope="module")
def processor():
    return build_tiny_llava(0)[1]


def datamodule(compose, processor, overrides: list[str]) -> PreferenceDataModule:
    cfg = compose(["data.limit_train=4", "data.limit_val=4", "data.batch_size=4", *overrides])
    data = plan(cfg, build_loss(cfg.loss).requirements)
    module = PreferenceDataModule(
        cfg.data, processor, get_family("llava"), data.branches, data.samplers, cfg.seed
    )
    module.setup()
    return module


def negative_pixels(
    compose, processor, split: str, sampler: str, val_sampler: str | None = None
) -> torch.Tensor:
    overrides = ["loss=mdpo", f"negative_sampler={sampler}"]
    if val_sampler:
        overrides.append(f"negative_sampler@val_negative_sampler={val_sampler}")
    else:  # the default list's fixed crop removed, as a user removes it
        overrides.append("~negative_sampler@val_negative_sampler")
    module = datamodule(compose, processor, overrides)
    loader = module.train_dataloader() if split == "train" else module.val_dataloader()
    return next(iter(loader)).rows[CHOSEN_NEGATIVE].tensors["pixel_values"]


def test_a_fixed_validation_sampler_gives_every_run_the_same_validation_corruption(compose, processor):
    """Runs that train with different corruptions are compared on the same corrupted validation images."""
    with_random = negative_pixels(compose, processor, "val", "random_image", "crop")
    with_blank = negative_pixels(compose, processor, "val", "blank", "crop")
    torch.testing.assert_close(with_random, with_blank)
    torch.testing.assert_close(with_random, negative_pixels(compose, processor, "val", "crop"))
    # training keeps each run's own corruption
    random_train = negative_pixels(compose, processor, "train", "random_image", "crop")
    blank_train = negative_pixels(compose, processor, "train", "blank", "crop")
    assert not torch.allclose(random_train, blank_train)


def test_without_a_validation_sampler_validation_uses_the_training_one(compose, processor):
    blank_val = negative_pixels(compose, processor, "val", "blank")
    assert torch.equal(blank_val, torch.zeros_like(blank_val))


def test_a_validation_sampler_alone_adds_the_negative_branch_to_validation_only(compose, processor):
    module = datamodule(compose, processor, ["loss=dpo", "negative_sampler@val_negative_sampler=crop"])
    assert module.collators["train"].branches == [CHOSEN, REJECTED]
    assert module.collators["val"].branches == [CHOSEN, REJECTED, CHOSEN_NEGATIVE]
    assert module.datasets["train"].sampler is None and module.datasets["val"].negatives == 1


def test_the_token_budget_reaches_every_batch_of_both_splits(compose, processor):
    module = datamodule(compose, processor, ["data.token_budget=4096"])
    assert next(iter(module.train_dataloader())).token_budget == 4096
    assert next(iter(module.val_dataloader())).token_budget == 4096
    assert next(iter(datamodule(compose, processor, []).train_dataloader())).token_budget is None
