"""Bad input as a user meets it: ``python train.py data=files data.path=<dir>`` (shrunk) stops before
training with one ``mmpo:`` line naming file, line, record id and field (exit 2, no traceback), or with
``data.on_error=skip`` trains on the rest, logs the counts and lists every skipped record.

Every kind of bad input goes through the real command once (``@pytest.mark.slow``: a run starts in about
20 s); the default suite runs one of them, the skip run over all of them, and the in-process checks of every
kind (tests/data/test_validation.py)."""

from __future__ import annotations

import json

import pytest

from ..conftest import train_cli
from .bad_inputs import CASES, GOOD_TRAIN, GOOD_VAL, Case, good, record, write_all, write_images, write_lines

SMALL = [
    "data=files",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_steps=2",
    "data.batch_size=2",
]
CLI_ONLY = [
    Case("over_long_under_truncation_raise",
         lambda d: record("bad", chosen="It is red. " * 40, rejected="It is blue. " * 40), "too_long", "chosen",
         message="exceed data.max_length=60", overrides=("data.max_length=60", "data.truncation=raise")),
    Case("qwen2vl_vision_token_in_chosen", lambda d: record("bad", chosen="It is <|image_pad|> red."),
         "image_placeholder", "chosen", message="'<|image_pad|>'", overrides=("model=tiny_qwen2vl",)),
]  # fmt: skip
"""Kinds that need settings of their own (the in-process tests check them with their own fixtures)."""


def run(tmp_path, data_dir, *args):
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    return train_cli(*SMALL, f"data.path={data_dir}", *paths, *args, run_dir=tmp_path / "run")


def the_error_line(out, tmp_path) -> str:
    """The one ``mmpo:`` line of a run stopped for bad input before training (exit 2, no traceback)."""
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("mmpo:")]
    assert not (tmp_path / "run" / "metrics.csv").exists()
    return line


def check_cli_case(tmp_path, case: Case) -> str:
    file = case.write(tmp_path / "data_in")
    line = the_error_line(run(tmp_path, tmp_path / "data_in", *case.overrides), tmp_path)
    who = f" (record id {case.record_id!r})" if case.record_id else ""
    assert line.startswith(f"mmpo: {file}:{case.line}{who}: "), line
    if case.field is not None:
        assert f"field {case.field!r}" in line, line
    assert case.message in line, line
    return line


def test_a_zero_byte_image_in_val_stops_the_run_before_training_with_its_place(tmp_path):
    case = next(c for c in CASES if c.name == "zero_byte_image_in_val")
    line = check_cli_case(tmp_path, case)
    assert "empty.png) is empty (0 bytes)" in line and "data.on_error=skip" in line


@pytest.mark.slow
@pytest.mark.parametrize("case", [*CASES, *CLI_ONLY], ids=lambda c: c.name)
def test_every_bad_input_stops_the_command_with_one_line_naming_its_place(tmp_path, case: Case):
    check_cli_case(tmp_path, case)


@pytest.mark.slow
def test_an_empty_train_split_and_a_missing_val_file_stop_the_command_with_one_line(tmp_path):
    data_in = tmp_path / "data_in"
    data_in.mkdir()
    write_images(data_in)
    write_lines(data_in / "train.jsonl", [])
    write_lines(data_in / "val.jsonl", good("val"))
    line = the_error_line(run(tmp_path, data_in), tmp_path)
    assert (
        line
        == f"mmpo: data: the train split {data_in / 'train.jsonl'} holds no usable record (0 read, 0 refused: none)"
    )
    write_lines(data_in / "train.jsonl", good("train"))
    (data_in / "val.jsonl").unlink()
    out = run(tmp_path, data_in)
    assert the_error_line(out, tmp_path) == "mmpo: invalid configuration:"  # main's list of start-up problems
    assert f"  - data.path='{data_in}' has no val.jsonl (val split)" in out.stderr, out.stderr[-3000:]


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
