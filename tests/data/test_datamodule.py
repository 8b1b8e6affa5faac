"""The data module: per-split samplers (a fixed validation corruption) and the validation branches."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mmpo.branches import CHOSEN, CHOSEN_CORRUPTED, REJECTED
from mmpo.config import DataSchema
from mmpo.data.datamodule import PreferenceDataModule
from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava
from mmpo.negatives import BlankSampler, CropSampler, RandomImageSampler


@pytest.fixture(scope="module")
def processor():
    return build_tiny_llava(0)[1]


def corrupted_pixels(shapes_dir, processor, split: str, sampler, val_sampler=None) -> torch.Tensor:
    cfg = OmegaConf.structured(DataSchema(path=str(shapes_dir), limit_train=4, limit_val=4, batch_size=4))
    cfg.shapes.num_scenes = 40
    module = PreferenceDataModule(
        cfg, processor, get_family("llava"), [CHOSEN, REJECTED, CHOSEN_CORRUPTED], sampler, 0, val_sampler
    )
    module.setup()
    loader = module.train_dataloader() if split == "train" else module.val_dataloader()
    return next(iter(loader)).rows[CHOSEN_CORRUPTED].tensors["pixel_values"]


def test_a_fixed_validation_sampler_gives_every_run_the_same_validation_corruption(shapes_dir, processor):
    """Runs that train with different corruptions are compared on the same corrupted validation images."""
    crop = CropSampler()
    with_random = corrupted_pixels(shapes_dir, processor, "val", RandomImageSampler(), crop)
    with_blank = corrupted_pixels(shapes_dir, processor, "val", BlankSampler(), crop)
    torch.testing.assert_close(with_random, with_blank)
    torch.testing.assert_close(with_random, corrupted_pixels(shapes_dir, processor, "val", crop))
    # training keeps each run's own corruption
    random_train = corrupted_pixels(shapes_dir, processor, "train", RandomImageSampler(), crop)
    blank_train = corrupted_pixels(shapes_dir, processor, "train", BlankSampler(), crop)
    assert not torch.allclose(random_train, blank_train)


def test_without_a_validation_sampler_validation_uses_the_training_one(shapes_dir, processor):
    blank_val = corrupted_pixels(shapes_dir, processor, "val", BlankSampler())
    torch.testing.assert_close(
        blank_val, BlankSampler().corrupt_pixels(blank_val[0], None).expand_as(blank_val)
    )


def test_a_validation_sampler_alone_adds_the_corrupted_branch_to_validation_only(shapes_dir, processor):
    cfg = OmegaConf.structured(DataSchema(path=str(shapes_dir)))
    cfg.shapes.num_scenes = 40
    module = PreferenceDataModule(
        cfg, processor, get_family("llava"), [CHOSEN, REJECTED], None, 0, CropSampler()
    )
    module.setup()
    assert module.collators["train"].branches == [CHOSEN, REJECTED]
    assert module.collators["val"].branches == [CHOSEN, REJECTED, CHOSEN_CORRUPTED]
