"""Fixtures for the evaluation tests: the composed eval config and a briefly trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import CONF_DIR


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every evaluation test on one torch thread (``single_thread``, tests/conftest.py)."""


@pytest.fixture(scope="session")
def eval_data_dir(tmp_path_factory) -> Path:
    """The data directory of the eval configs: the default benchmarks' shapes world is generated there
    once per session, never in the checkout."""
    return tmp_path_factory.mktemp("eval_data")


@pytest.fixture
def eval_compose(tmp_path, eval_data_dir):
    """``eval_compose(overrides)`` -> the real eval config (``python evaluate.py ...``), output in tmp."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import mmpo.config  # noqa: F401  (registers the structured configs)

    def _compose(overrides: list[str] = ()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose("eval", overrides=["progress=false", *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
            cfg.paths.output_dir = str(tmp_path / "eval")
            cfg.paths.data_dir = str(eval_data_dir)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def trained_run(compose) -> Path:
    """A LoRA run of the default config after two optimizer steps (a lr that moves the adapter)."""
    from mmpo.train import run

    cfg = compose(["trainer.max_steps=2", "optim.lr=5e-2", "callbacks=none"])
    run(cfg)
    return Path(cfg.paths.output_dir)
