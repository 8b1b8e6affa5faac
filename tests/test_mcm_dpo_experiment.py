"""experiment=mcm_dpo_shapes end to end (shrunk), the alt-text recipe's configs, MCM-DPO's start-up checks."""

from __future__ import annotations

import csv
import json

import pytest

from mmpo.config import ConfigError
from mmpo.losses.mcm_dpo import COMPONENTS
from mmpo.train import check_run

from .conftest import train_cli

SHRUNK = [
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "model.init_from=null",  # a tiny random model: no cached SFT base is built
    "data.shapes.num_scenes=40",
    "data.limit_train=4",
    "data.limit_val=2",
    "data.batch_size=2",
    "trainer.max_steps=2",
]


BENCHMARK = [
    "benchmark=shapes_alt_text",
    "benchmarks.shapes_alt_text.world.num_scenes=40",
    "benchmarks.shapes_alt_text.limit=2",
    "benchmarks.shapes_alt_text.generation.max_new_tokens=8",
]


@pytest.mark.parametrize("scored", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_mcm_dpo_shapes_trains_and_logs_every_component(tmp_path, scored):
    run = tmp_path / "run"
    out = train_cli(
        "experiment=mcm_dpo_shapes",
        *SHRUNK,
        *(BENCHMARK if scored else ()),
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.data_dir={tmp_path / 'data'}",
        run_dir=run,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # full fine-tuning (vision tower included) against a frozen copy, 8 branches in 4 packed rows
    assert "run: engine shared_prefix (engine.mode=auto), reference copy" in out.stdout
    assert "(100.00%)" in out.stdout
    summary = (run / "summary.txt").read_text()
    assert "status=finished" in summary and "steps=2" in summary
    with open(run / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    for name in COMPONENTS:
        assert f"train/margins/{name}_epoch" in columns and f"val/margins/{name}" in columns, name
    assert {"train/loss/mcm_dpo_epoch", "val/rewards/accuracies", "val/accuracies/context"} <= columns
    assert (run / "model" / "config.json").is_file()  # full weights, not an adapter
    if scored:
        results = json.loads((run / "benchmarks" / "shapes_alt_text.json").read_text())
        assert {"bleu_4", "meteor", "rouge_l", "cider"} <= set(results["metrics"])


def test_the_alt_text_recipe_configs(compose):
    sft = compose(["experiment=sft_alt_text_shapes"])
    assert sft.model.init_from == "base:sft_shapes" and not sft.model.lora.enabled
    assert not sft.model.freeze.vision_tower and sft.data.train_file == "alt_text_sft.jsonl"
    mcm = compose(["experiment=mcm_dpo_shapes"])
    assert mcm.model.init_from == "base:sft_alt_text_shapes" and mcm.reference.strategy == "copy"
    assert not mcm.model.freeze.vision_tower and not mcm.model.lora.enabled
    assert mcm.negative_sampler.step == 700 and mcm.data.context_swap == "per_record"
    check_run(mcm)
    paper = compose(["experiment=mcm_dpo_llava16"], small=False)
    assert paper.optim.lr == 5e-7 and paper.trainer.max_epochs == 3 and paper.reference.strategy == "copy"
    assert paper.data.batch_size * paper.trainer.accumulate_grad_batches * 4 == 64  # on 4 GPUs
    assert paper.loss.components == 7 and paper.loss.aggregation == "single_sigmoid"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=mcm_dpo"], "loss=mcm_dpo needs 1 negative image(s) per record; negative_sampler allowed"),
        (
            ["loss=mcm_dpo", "negative_sampler=diffusion_700", "data.context_swap=per_step"],
            "data.context_swap='per_step'; allowed: ['per_epoch', 'per_record']",
        ),
        (["loss=mcm_dpo", "negative_sampler=diffusion_700", "loss.components=9"], "loss.components=9"),
    ],
)
def test_start_up_names_what_mcm_dpo_lacks(compose, overrides, message):
    with pytest.raises(ConfigError) as error:
        check_run(compose(overrides))
    assert message in str(error.value)
