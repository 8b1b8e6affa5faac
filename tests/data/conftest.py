"""Fixtures of the data tests: tiny processors of both families and data modules over a directory."""

from __future__ import annotations

import pytest

from mmpo.data.datamodule import PreferenceDataModule
from mmpo.losses import build_loss
from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl
from mmpo.modules.preference import plan

BUILDERS = {"llava": build_tiny_llava, "qwen2_vl": build_tiny_qwen2vl}


@pytest.fixture(scope="session")
def processors():
    return {name: build()[1] for name, build in BUILDERS.items()}


@pytest.fixture
def make(compose, processors):
    """``make(path, *overrides, family=...)``: the data module of ``data=files data.path=<path>`` as a run
    builds it (set up: records checked, data sets built), with the tiny processor of ``family``."""

    def _make(path, *overrides: str, family: str = "llava", setup: bool = True) -> PreferenceDataModule:
        cfg = compose(["data=files", f"data.path={path}", "data.limit_train=null", "data.limit_val=null",
                       *overrides])  # fmt: skip
        data = plan(cfg, build_loss(cfg.loss).requirements)
        module = PreferenceDataModule(
            cfg.data, processors[family], get_family(family), data.branches, data.samplers, cfg.seed
        )
        if setup:
            module.setup()
        return module

    return _make
