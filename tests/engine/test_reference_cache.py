"""reference=precomputed: the cached log-probs equal the live reference (per split and epoch), a changed
seed or changed weights names the difference in a clear error, and the configuration refuses what no
cache can hold."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, Branch
from mmpo.config import ConfigError, DataSchema
from mmpo.data import shapes
from mmpo.data.datamodule import PreferenceDataModule
from mmpo.data.examples import draws_per_epoch
from mmpo.engine.cache import ReferenceCacheError
from mmpo.models.families import base_model
from mmpo.negatives import CropSampler
from mmpo.train import check_run, run

from .conftest import BRANCH_SETS, Reference, collate, make_policy, mixed_records

LOGP_TOL = {"atol": 1e-5, "rtol": 1.3e-6}


def datamodule(path: Path, processor, family, branches, seed: int = 0) -> PreferenceDataModule:
    shapes.generate(path, num_scenes=10, seed=0)
    cfg = OmegaConf.structured(
        DataSchema(path=str(path), limit_train=4, limit_val=2, batch_size=3, max_length=512)
    )
    cfg.shapes.num_scenes = 10
    sampler = CropSampler()
    splits = {"train": branches, "val": branches}
    module = PreferenceDataModule(cfg, processor, family, splits, {"train": sampler, "val": sampler}, seed)
    module.setup()
    return module


def batch_of(module: PreferenceDataModule, split: str, epoch: int):
    module.set_epoch(epoch)
    dataset = module.datasets[split]
    return module.collators[split]([dataset[i] for i in range(len(dataset))])


def test_precomputed_equals_live_reference_per_split_and_epoch(tmp_path):
    policy, processor, family = make_policy("llava")
    module = datamodule(tmp_path / "shapes", processor, family, BRANCH_SETS["mdpo"])
    cached = Reference("precomputed", policy, "shared_prefix")
    live = Reference("adapter_off", policy, "naive")
    seen = {}
    for epoch in (0, 1):
        cached.prepare(policy, module, epoch)
        for split in ("train", "val"):
            batch = batch_of(module, split, epoch)
            got = cached.logps(policy, batch, split=split)
            want = live.logps(policy, batch)
            for branch in want:
                torch.testing.assert_close(got[branch], want[branch], **LOGP_TOL)
            seen[split, epoch] = got
    # the corrupted image is re-drawn each epoch, the original is not
    assert torch.equal(seen["train", 0][CHOSEN], seen["train", 1][CHOSEN])
    assert not torch.equal(seen["train", 0][CHOSEN_NEGATIVE], seen["train", 1][CHOSEN_NEGATIVE])
    assert cached.cache.path.parent == tmp_path / "shapes" / "reference_cache" and cached.cache.path.is_file()


def test_changed_seed_or_weights_invalidate_the_cache(tmp_path):
    policy, processor, family = make_policy("llava", gradient_checkpointing=False)
    path = tmp_path / "shapes"
    Reference("precomputed", policy, "batched").prepare(
        policy, datamodule(path, processor, family, BRANCH_SETS["mdpo"]), 0
    )

    same = Reference("precomputed", policy, "batched", on_missing="fail")
    same.prepare(policy, datamodule(path, processor, family, BRANCH_SETS["mdpo"]), 0)  # reads the cache

    with pytest.raises(
        ReferenceCacheError,
        match=r"stale for this run; it differs in: inputs.train.seed: 0 -> 1; inputs.val.seed: 0 -> 1\n",
    ):
        Reference("precomputed", policy, "batched", on_missing="fail").prepare(
            policy, datamodule(path, processor, family, BRANCH_SETS["mdpo"], seed=1), 0
        )

    with torch.no_grad():
        base_model(policy).lm_head.weight.add_(0.01)
    with pytest.raises(
        ReferenceCacheError, match=r"differs in: model.weights: \"[0-9a-f]{32}\" -> \"[0-9a-f]{32}\""
    ):
        Reference("precomputed", policy, "batched", on_missing="fail").prepare(
            policy, datamodule(path, processor, family, BRANCH_SETS["mdpo"]), 0
        )


def test_missing_entry_or_unprepared_cache_is_a_clear_error(tmp_path):
    policy, processor, family = make_policy("llava", gradient_checkpointing=False)
    module = datamodule(tmp_path / "shapes", processor, family, BRANCH_SETS["dpo"])
    reference = Reference("precomputed", policy, "batched")
    batch = batch_of(module, "train", 0)
    with pytest.raises(ReferenceCacheError, match="call prepare"):
        reference.logps(policy, batch)
    reference.prepare(policy, module, 0)
    with pytest.raises(
        ReferenceCacheError, match=r"no entry for record '.*' \(val\), branch chosen@original"
    ):
        reference.logps(policy, batch, split="val")  # train records looked up as val


def test_epoch_dependent_branches_are_exactly_the_epoch_seeded_ones(records):
    """The cache keys only epoch-seeded branches by epoch; check that claim against the collator."""
    _, processor, family = make_policy("llava", gradient_checkpointing=False)
    branches = (CHOSEN, REJECTED, CHOSEN_NEGATIVE, Branch("chosen", context="swapped"))
    sample = mixed_records(records, 3)
    first, second = (collate(processor, family, sample, branches, epoch=e) for e in (0, 1))
    for branch in branches:
        same = all(
            torch.equal(first.rows[branch].tensors[k], second.rows[branch].tensors[k])
            for k in first.rows[branch].tensors
        )
        assert same != draws_per_epoch(branch, CropSampler()), branch


def test_config_refuses_what_no_cache_or_layout_can_hold(compose):
    with pytest.raises(
        ConfigError, match="reference=precomputed cannot hold negative_sampler.resample_per_forward"
    ):
        check_run(
            compose(
                [
                    "reference=precomputed",
                    "loss=mdpo",
                    "negative_sampler=crop",
                    "negative_sampler.resample_per_forward=true",
                ]
            )
        )
    with pytest.raises(
        ConfigError, match=r"full fine-tuning and the epoch-seeded branches \['chosen@negative\[0\]'\]"
    ):
        check_run(
            compose(
                [
                    "reference=precomputed",
                    "loss=mdpo",
                    "negative_sampler=crop",
                    "model.lora.enabled=false",
                    "trainer.max_epochs=2",
                ]
            )
        )
    with pytest.raises(
        ConfigError, match=r"engine.mode=shared_prefix does not support model.family='llava_next'"
    ):
        check_run(compose(["engine.mode=shared_prefix", "model.family=llava_next"]))
    with pytest.raises(ConfigError, match=r"reference.on_missing='later'; allowed: \['fill', 'fail'\]"):
        check_run(compose(["reference=precomputed", "reference.on_missing=later"]))


def test_training_with_a_precomputed_reference_starts_at_log_2(compose, tmp_path):
    """End to end: shared_prefix policy + precomputed reference; at step 0 policy == reference, so the
    DPO loss is log 2. The cache goes under the run's own data directory."""
    cfg = compose(["engine.mode=shared_prefix", "reference=precomputed", "trainer.max_steps=1"])
    cfg.data.path = str(tmp_path / "shapes")  # generated there, so the session's shared data stays untouched
    run(cfg)
    with open(Path(cfg.paths.output_dir) / "metrics.csv") as f:
        losses = [float(row["train/loss_step"]) for row in csv.DictReader(f) if row.get("train/loss_step")]
    assert math.isclose(losses[0], math.log(2), abs_tol=1e-5)
    assert len(list((tmp_path / "shapes" / "reference_cache").glob("*.pt"))) == 1
