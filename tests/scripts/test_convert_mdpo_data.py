"""The mDPO data converter: the question leaves the template; records read back with the user reader."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from mmpo.data.records import read_records

from ..conftest import ROOT

spec = importlib.util.spec_from_file_location("convert", ROOT / "scripts" / "convert_mdpo_data.py")
convert = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convert)

SYSTEM = "A chat between a curious user and an artificial intelligence assistant. "


def test_question_is_taken_out_of_the_template():
    prompt = SYSTEM + "USER: <image>\nWhat is on the table? ASSISTANT:"
    assert convert.question_of(prompt) == "What is on the table?"
    assert convert.question_of("Plain question?") == "Plain question?"


def test_converted_records_read_back(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"")
    rows = [
        {
            "img_path": "a.jpg",
            "prompt": SYSTEM + f"USER: <image>\nQ{i}? ASSISTANT:",
            "chosen": "yes ",
            "rejected": "no",
        }
        for i in range(5)
    ]
    (tmp_path / "in.json").write_text(json.dumps(rows))
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "convert_mdpo_data.py"),
            str(tmp_path / "in.json"),
            "--image-root",
            str(tmp_path / "img"),
            "--out",
            str(tmp_path / "out"),
            "--val-size",
            "2",
        ],
        check=True,
        capture_output=True,
    )
    train = read_records(tmp_path / "out" / "train.jsonl")
    val = read_records(tmp_path / "out" / "val.jsonl")
    assert len(train) == 3 and len(val) == 2
    assert {r.prompt for r in train + val} == {f"Q{i}?" for i in range(5)}
    assert all(r.chosen == "yes" for r in train)
