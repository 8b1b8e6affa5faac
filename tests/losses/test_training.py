"""Every loss option (each ``conf/loss/<name>.yaml``) composes and trains one step through ``train.py`` on the
tiny LLaVA, and starts where its formula says: at step 0 the fresh LoRA (B = 0) makes the policy the
reference (``reference=adapter_off``), so c = r = h = 0 in every log-ratio."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mmpo.train import run

from ..conftest import CONF_DIR

LOG2 = math.log(2)
LOSSES = sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml"))
# what a loss needs besides loss=<name>: its negative image, or (mix) members
NEEDS = {
    "mdpo": ["negative_sampler=crop"],
    "mdpo_sft": ["negative_sampler=crop"],
    "chip": ["negative_sampler=diffusion"],
    "kto": ["negative_sampler=random_image"],
    "misp_dpo": ["negative_sampler=random_image"],  # K = 3 other images (MISP-DPO's random multi-negative)
    "mcm_dpo": [  # the noised image and the alt-text records, whose contexts the swapped branches exchange
        "negative_sampler=diffusion_700",
        "data.train_file=alt_text_train.jsonl",
        "data.val_file=alt_text_val.jsonl",
    ],
    "mix": ["+loss@loss.members.dpo=dpo", "+loss@loss.members.ipo=ipo", "+loss.weights={ipo: 0.5}"],
}
EXO_EPS = 1e-3
# the loss at c = r = 0, from each formula (beta from its YAML); None where it holds a policy NLL or
# (CHiP with the code's scaled noisy reference) does not vanish with policy == reference
STEP0 = {
    "dpo": LOG2,
    "ipo": (1 / (2 * 0.1)) ** 2,
    "hinge": 1.0,
    "robust": LOG2,  # ((1 - eps) log 2 - eps log 2) / (1 - 2 eps)
    "bco_pair": 2 * LOG2,
    "sppo_hard": 2 * (0.5 / 0.001) ** 2,
    "nca_pair": 2 * LOG2,
    "aot": LOG2,
    "aot_unpaired": LOG2,
    "apo_zero": 1.0,
    "apo_down": 1.0,
    "exo_pair": -LOG2 - 0.5 * math.log1p(-EXO_EPS) - 0.5 * math.log(EXO_EPS),
    "discopop": 0.5 * LOG2 + 0.5,
    "sigmoid_norm": LOG2,
    "kto": 0.5,
    "mdpo": 3 * LOG2,
    "misp_dpo": math.log(3 + 1) + LOG2,  # softplus(logsumexp of K = 3 zeros) + DPO
    "mcm_dpo": LOG2,  # one sigmoid over the weighted sum of seven zero margins
    "mix": LOG2 + 0.5 * (1 / (2 * 0.1)) ** 2,
}


def test_every_loss_option_is_listed_here():
    assert set(NEEDS) | set(STEP0) <= set(LOSSES)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_trains_one_step_from_its_known_value(compose, name):
    cfg = compose([f"loss={name}", *NEEDS.get(name, []), "trainer.max_steps=1"])
    assert cfg.choices.loss == name
    run(cfg)
    with open(Path(cfg.paths.output_dir) / "metrics.csv") as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert len(losses) == 1 and math.isfinite(losses[0])
    if name in STEP0:
        assert losses[0] == pytest.approx(STEP0[name], rel=1e-5, abs=1e-5)
