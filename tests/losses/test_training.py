"""The new losses train through ``train.py`` on the tiny LLaVA and start where their formula says: at step 0
the fresh LoRA (B = 0) makes the policy the reference."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mmpo.train import run

LOG2 = math.log(2)


@pytest.mark.parametrize(
    ("overrides", "step0"),
    [
        (["loss=hinge"], 1.0),
        (["loss=bco_pair"], 2 * LOG2),
        (["loss=sigmoid_norm"], LOG2),
        (["loss=kto", "negative_sampler=random_image"], 0.5),
        (["loss=simpo"], None),
        (["loss=orpo"], None),
    ],
)
def test_loss_trains_and_starts_at_its_known_value(compose, overrides, step0):
    cfg = compose([*overrides, "trainer.max_steps=2"])
    run(cfg)
    with open(Path(cfg.paths.output_dir) / "metrics.csv") as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    if step0 is not None:
        assert losses[0] == pytest.approx(step0, abs=1e-5)
