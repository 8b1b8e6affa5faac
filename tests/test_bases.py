"""Cached base runs: keyed by code and recipe, built once, reused."""

from __future__ import annotations

import subprocess

import pytest

from mmpo import bases

TINY_SFT = [
    "trainer.max_steps=2",
    "data.limit_train=4",
    "data.limit_val=2",
    "data.batch_size=2",
    "data.shapes.num_scenes=40",
    "logger=csv",
    "trainer.enable_progress_bar=false",
]


def test_a_base_is_built_once_and_reused(tmp_path, monkeypatch):
    overrides = [*TINY_SFT, f"paths.data_dir={tmp_path / 'data'}"]
    first = bases.ensure_base("sft_shapes", tmp_path / "bases", overrides)
    assert (first / "summary.txt").is_file() and (first / "model" / "config.json").is_file()
    assert not list((tmp_path / "bases").glob("*.building"))

    def no_build(*args, **kwargs):
        raise AssertionError("the cached base was built again")

    monkeypatch.setattr(subprocess, "run", no_build)
    assert bases.ensure_base("sft_shapes", tmp_path / "bases", overrides) == first
    # where the world lives does not change the weights, so it does not change the key
    moved = [*TINY_SFT, f"paths.data_dir={tmp_path / 'elsewhere'}"]
    assert bases.base_dir_of("sft_shapes", moved, tmp_path / "bases") == first
    # the recipe does
    assert bases.base_dir_of("sft_shapes", [*overrides, "optim.lr=0.5"], tmp_path / "bases") != first


def test_the_key_changes_with_the_code(tmp_path, monkeypatch):
    before = bases.base_dir_of("sft_shapes", TINY_SFT, tmp_path)
    monkeypatch.setattr(bases, "code_digest", lambda: "another version of the code")
    assert bases.base_dir_of("sft_shapes", TINY_SFT, tmp_path) != before


def test_a_failed_build_leaves_no_base_and_says_how_to_rerun(tmp_path):
    with pytest.raises(bases.BaseBuildError, match="experiment=sft_shapes"):
        bases.ensure_base("sft_shapes", tmp_path, ["optim.scheduler=nonsense", "logger=csv"])
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.endswith(".building")]


def test_init_from_base_names_an_experiment_that_exists(compose):
    from mmpo.models.loading import model_problems

    assert model_problems(compose(["model.init_from=base:sft_shapes"]).model) == []
    (problem,) = model_problems(compose(["model.init_from=base:nope"]).model)
    assert "no conf/experiment/nope.yaml" in problem
