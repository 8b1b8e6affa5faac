"""The seams a new method goes through, used from outside ``src/``: a loss (a Python file + a YAML on
``hydra.searchpath``) with an unusual branch set, and a module kind of its own (the seam MAPLE uses)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

STUBS = ROOT / "tests" / "stubs"
SMALL = [
    "model=tiny_llava",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.limit_train=4",
    "data.limit_val=2",
    "data.batch_size=2",
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
]


def user_train(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """``python train.py`` with the stubs' config dir on the search path and their modules importable."""
    env = {**os.environ, "PYTHONPATH": str(STUBS)}
    command = [
        sys.executable,
        "train.py",
        f"hydra.searchpath=[file://{STUBS / 'conf'}]",
        *SMALL,
        *args,
        f"paths.log_dir={tmp / 'outputs'}",
        f"paths.data_dir={tmp / 'data'}",
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def ranked_records(tmp_path_factory, shapes_dir) -> Path:
    """The shapes records with a second rejected response each (absolute image paths)."""
    out = tmp_path_factory.mktemp("ranked")
    for name in ("train.jsonl", "val.jsonl"):
        rows = []
        for line in (shapes_dir / name).read_text().splitlines():
            row = json.loads(line)
            row["images"] = [str(shapes_dir / p) for p in row["images"]]
            row["rejected"] = [row["rejected"], "I cannot tell what is in it."]
            rows.append(json.dumps(row))
        (out / name).write_text("\n".join(rows) + "\n")
    return out


def run_dir(tmp: Path) -> Path:
    (summary,) = (tmp / "outputs").rglob("summary.txt")
    return summary.parent


def column(run: Path, key: str) -> list[float]:
    with open(run / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def test_a_loss_from_outside_src_trains_through_train_py(tmp_path, ranked_records):
    out = user_train(
        "loss=triple_negative",
        "negative_sampler=crop",
        "data=files",
        f"data.path={ranked_records}",
        tmp=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = run_dir(tmp_path)
    assert "loss=triple_negative" in (run / "summary.txt").read_text()
    # step 0, policy == reference: every a_ik = 0 and h = 0, so L = softplus(log 3) + log 2 = log 4 + log 2
    assert column(run, "train/loss_step")[0] == pytest.approx(math.log(4) + math.log(2), abs=1e-5)
    assert column(run, "train/loss/image_step")[0] == pytest.approx(math.log(4), abs=1e-5)
    for branch in ("chosen@negative[0]", "chosen@negative[2]", "rejected[1]@original"):
        logps = column(run, f"train/logps/{branch}_step")
        assert logps and all(math.isfinite(v) for v in logps), branch
    # three independent crops: the negatives' log-probs differ
    assert column(run, "train/logps/chosen@negative[0]_step") != column(
        run, "train/logps/chosen@negative[2]_step"
    )


def test_its_requirements_fail_cleanly_at_start_up_or_name_the_record(tmp_path, ranked_records, shapes_dir):
    no_sampler = user_train(
        "loss=triple_negative", "data=files", f"data.path={ranked_records}", tmp=tmp_path / "a"
    )
    assert no_sampler.returncode == 2 and "Traceback" not in no_sampler.stderr
    assert (
        "loss=triple_negative needs 3 negative image(s) per record; negative_sampler allowed:"
        in no_sampler.stderr
    )
    one_rejected = user_train("loss=triple_negative", "negative_sampler=crop", tmp=tmp_path / "b")
    assert one_rejected.returncode == 2 and "Traceback" not in one_rejected.stderr
    assert "field 'rejected' holds 1, but the loss needs 2 rejected response(s)" in one_rejected.stderr


def test_a_module_kind_from_outside_src_trains_through_train_py(tmp_path):
    out = user_train("loss=stub_contrastive", tmp=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = run_dir(tmp_path)
    assert "loss=stub_contrastive" in (run / "summary.txt").read_text()
    assert (run / "adapter" / "adapter_config.json").is_file() and (
        run / "checkpoints" / "last.ckpt"
    ).is_file()
    assert column(run, "train/loss_step") and column(run, "val/retrieval/accuracy")
    assert "trainable params" in out.stdout  # the generic run logs the module's description


def test_a_loss_and_a_module_kind_that_do_not_match_fail_at_start_up(tmp_path):
    out = user_train("loss=stub_contrastive", "module=preference", tmp=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "loss=stub_contrastive trains a 'stub_embedding' module; module=preference cannot" in out.stderr
