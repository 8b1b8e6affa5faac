"""Shared fixtures: composed configs of the real config tree, shrunk for tests, and shapes data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def train_cli(*args: str, run_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python train.py <args> hydra.run.dir=<run_dir>`` in the checkout, as a user types it; output captured.
    Without a ``model=`` or ``experiment=`` argument it runs the random tiny LLaVA (``model=tiny_llava``),
    which needs no SFT base built first."""
    if not any(a.startswith(("model=", "experiment=", "--")) for a in args):
        args = ("model=tiny_llava", *args)
    return subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def single_thread():
    """One intra-op torch thread for the test: tiny models gain nothing from more, and on a busy machine
    OpenMP threads fighting over two cores turn millisecond matmuls into seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A small shapes world shared by the tests of a session (generated, never downloaded)."""
    from mmpo.data import shapes

    return shapes.generate(tmp_path_factory.mktemp("shapes"), num_scenes=40, seed=0)


@pytest.fixture
def compose(tmp_path, shapes_dir):
    """``compose(overrides)`` -> the real train config, small and pointed at tmp dirs, like `python train.py`."""
    from omegaconf import open_dict

    from mmpo.config import compose_job

    def _compose(overrides: list[str] = (), small: bool = True, quiet: bool = True):
        """``small`` shrinks the data and the run; ``quiet`` logs to CSV only, without progress output."""
        base = []
        if quiet:
            base += [
                "logger=csv",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
            ]
        if small:
            base += [
                "data.limit_train=4",
                "data.limit_val=4",
                "data.batch_size=2",
                "trainer.max_epochs=1",
                "data.shapes.num_scenes=40",
                "trainer.log_every_n_steps=1",
            ]
        if not any(o.startswith("model=") or o.startswith("experiment=") for o in overrides):
            base.append("model=tiny_llava")  # the random tiny model: no SFT base to build first
        cfg = compose_job([*base, *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.data_dir = str(shapes_dir.parent)
            if cfg.data.source == "shapes":
                cfg.data.path = str(shapes_dir)
        return cfg

    yield _compose
