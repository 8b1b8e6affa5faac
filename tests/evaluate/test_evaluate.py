"""evaluate.py end to end: a trained run's results file, determinism, fingerprints, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmpo.config import ConfigError
from mmpo.evaluate import run

from ..conftest import ROOT
from .helpers import shapes_overrides


def read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / "benchmarks" / f"{name}.json").read_text())


def test_evaluate_a_trained_run_writes_deterministic_results(trained_run, eval_compose, shapes_dir):
    both = [
        "benchmark=[shapes_pope,shapes_chair]",
        *shapes_overrides("shapes_pope", shapes_dir, 12),
        *shapes_overrides("shapes_chair", shapes_dir, 4),
    ]
    results = run(eval_compose([f"run={trained_run}", "batch_size=8", *both]))
    pope, chair = read(trained_run, "shapes_pope"), read(trained_run, "shapes_chair")
    assert pope["metrics"] == results["shapes_pope"] and 0.0 <= pope["metrics"]["avg/accuracy"] <= 1.0
    assert set(chair["metrics"]) >= {"CHAIRs", "CHAIRi", "recall"}
    assert pope["config"]["limit"] == 12 and pope["config"]["_target_"].endswith("ShapesPOPE")
    assert pope["decoding"] == {"max_new_tokens": 8, "num_beams": 1, "do_sample": False}
    assert pope["num_items"] == len(pope["records"]) == 12
    assert all({"id", "prompt", "output", "parsed", "label"} <= set(r) for r in pope["records"])
    fingerprint = pope["model"]["fingerprint"]
    assert pope["model"]["weights"] == "adapter" and fingerprint["source"] == "adapter"
    assert "adapter_model.safetensors" in fingerprint["files"] and fingerprint["base"]["name"] == "tiny_llava"

    # the adapter directory names the same run; one by one and merged give the very same outputs
    run(eval_compose([f"run={trained_run / 'adapter'}", "batch_size=1", "merge_adapter=true", *both]))
    again = read(trained_run, "shapes_pope")
    assert [r["output"] for r in again["records"]] == [r["output"] for r in pope["records"]]
    assert [r["output"] for r in read(trained_run, "shapes_chair")["records"]] == [
        r["output"] for r in chair["records"]
    ]
    assert again["model"]["fingerprint"]["id"] == fingerprint["id"] and again["model"]["merged"] is True

    # the untrained base is another model: other fingerprint, results in the eval output directory
    base = eval_compose(["run=null", *shapes_overrides("shapes_pope", shapes_dir, 12)])
    run(base)
    untrained = read(Path(base.paths.output_dir), "shapes_pope")
    assert (
        untrained["model"]["weights"] == "base"
        and untrained["model"]["fingerprint"]["id"] != fingerprint["id"]
    )
    assert (Path(base.paths.output_dir) / "config.yaml").is_file()


def test_full_weights_run_is_loaded_from_model_dir(compose, eval_compose, shapes_dir):
    from mmpo.train import run as train

    cfg = compose(["model.lora.enabled=false", "reference=copy", "trainer.max_steps=1", "callbacks=none"])
    train(cfg)
    out = Path(cfg.paths.output_dir)
    run(eval_compose([f"run={out}", *shapes_overrides("shapes_pope", shapes_dir, 6)]))
    result = read(out, "shapes_pope")
    assert (
        result["model"]["weights"] == "model"
        and "model.safetensors" in result["model"]["fingerprint"]["files"]
    )


def test_missing_run_and_missing_data_fail_before_loading_a_model(eval_compose, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        run(eval_compose([f"run={tmp_path / 'nowhere'}"]))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("model: {}\n")
    with pytest.raises(ConfigError, match="neither adapter/ nor model/"):
        run(eval_compose([f"run={tmp_path / 'unfinished'}"]))
    with pytest.raises(ConfigError) as error:
        run(eval_compose(["benchmark=pope", f"benchmarks.pope.path={tmp_path / 'pope'}"]))
    assert "coco_pope_random.json" in str(error.value) and "`benchmarks.pope.path`" in str(error.value)
    # every start-up problem at once: the run and the data
    with pytest.raises(ConfigError) as error:
        run(
            eval_compose(
                [f"run={tmp_path / 'nowhere'}", "benchmark=pope", f"benchmarks.pope.path={tmp_path}"]
            )
        )
    assert len(error.value.problems) == 2


def test_command_line_reports_errors_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"run={tmp_path / 'nowhere'}",
            f"hydra.run.dir={tmp_path / 'h'}",
            f"paths.data_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert (
        "mmpo: invalid configuration" in proc.stderr
        and "does not exist" in proc.stderr
        and "Traceback" not in proc.stderr
    )
