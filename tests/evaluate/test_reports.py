"""evaluate.py writes a page and a contact sheet beside each result; compare_runs.py sets two runs side by side."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmpo.config import ConfigError
from mmpo.evaluate import run
from mmpo.reports.contact_sheet import CELL_HEIGHT, CELL_WIDTH, HEADER

from ..conftest import ROOT
from .helpers import shapes_overrides


def test_evaluation_writes_reports_and_provenance_and_compare_runs_reads_them(
    trained_run, eval_compose, shapes_dir, tmp_path, capsys
):
    overrides = [*shapes_overrides("shapes_pope", shapes_dir, 12), "report.items=5", "report.seed=1"]
    run(eval_compose([f"run={trained_run}", *overrides]))
    out = trained_run / "benchmarks"
    document = json.loads((out / "shapes_pope.json").read_text())
    assert (
        document["data"]["files"]["test.jsonl"]
        == hashlib.sha256((shapes_dir / "test.jsonl").read_bytes()).hexdigest()
    )
    assert document["judge"] is None
    assert all(Path(record["image"]).is_file() for record in document["records"])
    page = (out / "shapes_pope.html").read_text()
    assert page.count("<figure") == 5 and "5 of 12 items (seed 1)" in page
    assert Image.open(out / "shapes_pope.png").size == (5 * CELL_WIDTH, HEADER + CELL_HEIGHT)

    base = eval_compose(["run=null", *overrides, "benchmarks.shapes_pope.generation.max_new_tokens=4"])
    run(base)
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    compare_runs = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compare_runs
    spec.loader.exec_module(compare_runs)
    (comparison,) = compare_runs.main(
        [base.paths.output_dir, str(trained_run), "--out", str(tmp_path / "c.html")]
    )
    assert len(comparison.pairs) == 12 and not comparison.only_first and not comparison.only_second
    assert comparison.problems == ["decoding.max_new_tokens: 4 vs 8"]  # same items, other decoding
    assert "Not comparable: decoding.max_new_tokens: 4 vs 8" in (tmp_path / "c.html").read_text()
    assert "12 common items" in capsys.readouterr().out


@pytest.mark.parametrize("items", [0, -3, "many"])
def test_a_bad_report_size_fails_at_start_up(eval_compose, items):
    with pytest.raises(ConfigError, match=r"report.items=.*positive number"):
        run(eval_compose([f"report.items={items}"]))
