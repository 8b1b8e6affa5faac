"""Bad input as a user meets it: ``python train.py data=files data.path=<dir>`` (shrunk) stops before
training with one ``mmpo:`` line naming file, line, record id and field (exit 2, no traceback), or with
``data.on_error=skip`` trains on the rest, logs the counts and lists every skipped record."""

from __future__ import annotations

import json

from ..conftest import train_cli
from .bad_inputs import CASES, GOOD_TRAIN, GOOD_VAL, write_all

SMALL = [
    "data=files",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_steps=2",
    "data.batch_size=2",
]


def run(tmp_path, data_dir, *args):
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    return train_cli(*SMALL, f"data.path={data_dir}", *paths, *args, run_dir=tmp_path / "run")


def test_a_zero_byte_image_in_val_stops_the_run_before_training_with_its_place(tmp_path):
    case = next(c for c in CASES if c.name == "zero_byte_image_in_val")
    file = case.write(tmp_path / "data_in")
    out = run(tmp_path, tmp_path / "data_in")
    assert out.returncode == 2, out.stderr[-3000:]
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("mmpo:")]
    assert line.startswith(f"mmpo: {file}:{GOOD_VAL + 1} (record id 'bad'): field 'images[0]' (")
    assert "empty.png) is empty (0 bytes)" in line and "data.on_error=skip" in line
    assert "Traceback" not in out.stderr and not (tmp_path / "run" / "metrics.csv").exists()


def test_skip_trains_on_the_good_records_and_reports_every_bad_one(tmp_path):
    expected = write_all(tmp_path / "data_in")
    out = run(tmp_path, tmp_path / "data_in", "data.on_error=skip")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    counts = {reason: len(ids) for reason, ids in expected.items()}
    assert f"{sum(counts.values())} records skipped" in out.stdout
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["skipped"]["by_reason"] == counts
    found: dict[str, list] = {}
    for entry in report["skipped"]["records"]:
        found.setdefault(entry["reason"], []).append(entry["id"])
        assert entry["location"] and entry["message"].startswith(entry["location"])
    assert found == expected
    assert report["splits"]["train"]["kept"] == GOOD_TRAIN and report["splits"]["val"]["kept"] == GOOD_VAL
    assert "steps=2" in (tmp_path / "run" / "summary.txt").read_text()
