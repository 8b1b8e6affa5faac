"""The record reader: schema checks with errors that name file, line, record and field; skip mode."""

from __future__ import annotations

import json

import pytest

from mmpo.data.records import ReadReport, RecordError, read_records


def write(tmp_path, rows):
    (tmp_path / "img.png").write_bytes(b"")  # existence is all the reader checks
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"id": "a", "images": ["img.png"], "prompt": "p", "chosen": "c", "rejected": "r"}


def test_reads_relative_image_paths_and_optional_fields(tmp_path):
    path = write(tmp_path, [GOOD, {**GOOD, "id": "b", "context": "ctx", "meta": {"k": 1}}])
    records = read_records(path)
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].images == [str(tmp_path / "img.png")]
    assert records[1].context == "ctx" and records[1].meta == {"k": 1}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**GOOD, "chosen": ""}, "field 'chosen' must be a non-empty string"),
        ({**GOOD, "rejected": None}, "field 'rejected'"),
        ({**GOOD, "images": ["missing.png"]}, "field 'images' names files that do not exist"),
        ({**GOOD, "images": "img.png"}, "field 'images' must be a list"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_record_error_names_file_line_record_and_field(tmp_path, row, message):
    path = write(tmp_path, [GOOD, row])
    with pytest.raises(RecordError, match=message) as error:
        read_records(path)
    assert f"{path}:2" in str(error.value)
    if isinstance(row, dict):
        assert "record id 'a'" in str(error.value)


def test_duplicate_ids_are_an_error(tmp_path):
    with pytest.raises(RecordError, match="duplicate record id 'a'"):
        read_records(write(tmp_path, [GOOD, GOOD]))


def test_skip_mode_counts_every_skipped_record(tmp_path):
    report = ReadReport()
    path = write(tmp_path, [GOOD, {**GOOD, "id": "b", "prompt": ""}, "garbage", {**GOOD, "id": "c"}])
    records = read_records(path, on_error="skip", report=report)
    assert [r.id for r in records] == ["a", "c"]
    assert report.read == 2
    assert len(report.skipped) == 2
    assert f"{path}:2" in report.skipped[0] and f"{path}:3" in report.skipped[1]


def test_rejected_is_optional_for_sft_data(tmp_path):
    row = {k: v for k, v in GOOD.items() if k != "rejected"}
    assert read_records(write(tmp_path, [row]), require_rejected=0)[0].rejected == []
