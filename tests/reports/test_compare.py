"""Two runs side by side: pairing by id, differences first, metrics, comparability; compare_runs.py."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from mmpo.reports.compare import compare

from ..conftest import ROOT
from .helpers import RED, chair_record, document, solid_image


@pytest.fixture(scope="module")
def compare_runs():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pope_record(item_id: str, output: str, parsed: str, label: str) -> dict:
    return {"id": item_id, "split": "random", "prompt": "Is there a cat?", "output": output, "parsed": parsed,
            "label": label, "correct": parsed == label, "image": None}  # fmt: skip


def pope_pair() -> tuple[dict, dict]:
    """A and B on the same POPE items: one fixed, one broken, one reworded, one the same; one each alone."""
    a = [
        pope_record("same", "Yes", "yes", "yes"),
        pope_record("fixed", "Yes", "yes", "no"),
        pope_record("reworded", "Yes.", "yes", "yes"),
        pope_record("broken", "No", "no", "no"),
        pope_record("only-a", "No", "no", "no"),
    ]
    b = [
        pope_record("only-b", "No", "no", "no"),
        pope_record("broken", "Yes", "yes", "no"),
        pope_record("reworded", "Yes, it is.", "yes", "yes"),
        pope_record("fixed", "No", "no", "no"),
        pope_record("same", "Yes", "yes", "yes"),
    ]
    return (
        document(a, benchmark="pope", metrics={"avg/accuracy": 0.6, "avg/f1": 0.5}),
        document(b, benchmark="pope", metrics={"avg/accuracy": 0.8, "avg/f1": 0.5, "avg/yes_ratio": 0.4}),
    )


def test_pairs_are_ordered_fixed_broken_changed_same():
    first, second = pope_pair()
    comparison = compare(first, second)
    assert [(pair.first.id, pair.change) for pair in comparison.pairs] == [
        ("fixed", "fixed"),
        ("broken", "broken"),
        ("reworded", "changed"),
        ("same", "same"),
    ]
    assert comparison.counts == {"fixed": 1, "broken": 1, "changed": 1, "same": 1}
    assert comparison.only_first == ["only-a"] and comparison.only_second == ["only-b"]
    assert comparison.metric_rows == [
        ("avg/accuracy", 0.6, 0.8),
        ("avg/f1", 0.5, 0.5),
        ("avg/yes_ratio", None, 0.4),
    ]
    assert comparison.problems == []  # same data, decoding, judge and config
    with pytest.raises(ValueError, match="cannot compare"):
        compare(first, {**second, "benchmark": "shapes_pope"})


def test_compare_runs_writes_one_page_and_warns_about_incomparable_numbers(compare_runs, tmp_path, capsys):
    first, second = pope_pair()
    second["decoding"] = {**second["decoding"], "max_new_tokens": 4}
    image = solid_image(tmp_path / "red.png", RED)
    chair_a = document([chair_record("s1", image, "A red cube.", [], ["red cube"])])
    chair_b = document(
        [chair_record("s1", image, "A red cube and a blue ball.", ["blue ball"], ["red cube"])]
    )
    for run, docs in (("a", (first, chair_a)), ("b", (second, chair_b))):
        (tmp_path / run / "benchmarks").mkdir(parents=True)
        for doc in docs:
            (tmp_path / run / "benchmarks" / f"{doc['benchmark']}.json").write_text(json.dumps(doc))
    out = tmp_path / "page.html"
    comparisons = compare_runs.main(
        [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--items", "3"]
    )
    assert [c.name for c in comparisons] == ["pope", "shapes_chair"]
    printed = capsys.readouterr().out
    assert (
        "pope: 4 common items (1 fixed, 1 broken, 1 changed, 1 same); NOT COMPARABLE: decoding.max_new_tokens: 8 vs 4"
        in printed
    )
    page = out.read_text()
    assert page.count('<tr class="') == 3 + 1  # --items 3 pope pairs, 1 shapes_chair pair
    assert "Not comparable: decoding.max_new_tokens: 8 vs 4" in page
    assert "A red cube and a <mark>blue ball</mark>." in page and page.count("data:image/png;base64,") == 1

    only = compare_runs.main(
        [str(tmp_path / "a"), str(tmp_path / "b"), "--benchmark", "shapes_chair", "--out", str(out)]
    )
    assert [c.name for c in only] == ["shapes_chair"] and "broken" in out.read_text()
    with pytest.raises(SystemExit):
        compare_runs.main(
            [str(tmp_path / "a"), str(tmp_path / "b"), "--benchmark", "mmvp", "--out", str(out)]
        )
    assert "--benchmark ['mmvp']: not evaluated in both runs" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        compare_runs.main([str(tmp_path / "a"), str(tmp_path / "empty"), "--out", str(out)])
    assert "evaluate it first" in capsys.readouterr().err
