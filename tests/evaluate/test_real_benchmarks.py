"""Every public benchmark runs through evaluate.py on tiny fixture data with a tiny random model.

The outputs are gibberish; what is checked is that items are read, generated for (with images, and
without for HallusionBench's text-only question), scored and written with the benchmark's metrics,
the SHA-256 of the files read and the judge, and that each gets its HTML page and contact sheet.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from mmpo.evaluate import run

from ..benchmarks.chat_stub import stub_server
from ..benchmarks.fixtures import (
    files_opened,
    write_alt_text,
    write_amber,
    write_hallusionbench,
    write_mmhal,
    write_mmvp,
    write_object_halbench,
    write_pope,
)

Fixture = tuple[Path, list[str]]  # (benchmark.path, extra overrides)


def pope(root: Path, judge_url: str) -> Fixture:
    splits = {"random": [(1, "dog", "yes"), (2, "cat", "no")], "adversarial": [(3, "cup", "yes")]}
    return write_pope(root, splits), ["benchmarks.pope.splits=[random,adversarial]"]


def object_halbench(root: Path, judge_url: str) -> Fixture:
    rows = [(1, "Describe the image.", True), (2, "Describe the image.", False)]
    return write_object_halbench(
        root, rows, {1: (["dog"], ["A dog on grass."]), 2: (["cat"], ["A cat."])}
    ), []


def amber(root: Path, judge_url: str) -> Fixture:
    annotations = [{"id": 1, "type": "generative", "truth": ["dog"], "hallu": ["cat"]}]
    return write_amber(root, annotations, {"dog": [], "cat": []}, []), []


def mmhal(root: Path, judge_url: str) -> Fixture:
    record = {
        "question_type": "attribute",
        "question_topic": "animal",
        "image_id": "a",
        "image_src": "https://example.invalid/1_a_o.jpg",
        "image_content": ["Dog"],
        "question": "What colour is the dog?",
        "gt_answer": "Brown.",
        "model_answer": "",
    }
    return write_mmhal(root, [record]), [f"benchmarks.mmhal.judge.base_url={judge_url}"]


def hallusionbench(root: Path, judge_url: str) -> Fixture:
    """One question with a figure and one text-only question (visual_input 0, no file)."""
    records = [
        {
            "category": "VD",
            "subcategory": "chart",
            "visual_input": visual_input,
            "set_id": "0",
            "figure_id": figure,
            "question_id": figure,
            "question": "Is the bar red?",
            "gt_answer_details": "",
            "gt_answer": "1",
            "filename": filename,
        }
        for visual_input, figure, filename in (
            ("1", "0", "./hallusion_bench/VD/chart/0_0.png"),
            ("0", "1", None),
        )
    ]
    return write_hallusionbench(root, records), []


def mmvp(root: Path, judge_url: str) -> Fixture:
    options = "(a) left (b) right"
    return write_mmvp(root, [("Which way?", options, "(a)"), ("Which way now?", options, "(b)")]), []


def alt_text(root: Path, judge_url: str) -> Fixture:
    return write_alt_text(root / "twitter", "twitter", [(7, "a red circle"), (9, "a dog")]), []


# benchmark -> (its fixture, a metric it must report)
CASES: dict[str, tuple[Callable[[Path, str], Fixture], str]] = {
    "pope": (pope, "avg/accuracy"),
    "object_halbench": (object_halbench, "CHAIRi"),
    "amber": (amber, "CHAIR"),
    "mmhal": (mmhal, "score"),
    "hallusionbench": (hallusionbench, "aAcc"),
    "mmvp": (mmvp, "pair_accuracy"),
    "alt_text": (alt_text, "rouge_l"),
}


# benchmark -> the question / annotation files it reads, relative to its data root
DATA_FILES: dict[str, set[str]] = {
    "pope": {"coco_pope_random.json", "coco_pope_adversarial.json"},
    "object_halbench": {
        "obj_halbench_300_with_image.jsonl",
        "annotations/instances_val2014.json",
        "annotations/captions_val2014.json",
    },
    "amber": {
        "data/query/query_generative.json",
        "data/annotations.json",
        "data/relation.json",
        "data/safe_words.txt",
    },
    "mmhal": {"response_template.json"},
    "hallusionbench": {"HallusionBench.json"},
    "mmvp": {"Questions.csv"},
    "alt_text": {"twitter_test.json"},
}
JUDGE_MODEL = "stub-judge-2024-06-01"


@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_runs_end_to_end_through_evaluate(name, eval_compose, tmp_path):
    write, metric = CASES[name]
    with stub_server([(200, "Rating: 4")], model=JUDGE_MODEL) as judge:  # MMHal's; the others never call it
        root, extra = write(tmp_path / "data", judge.base_url)
        key = f"benchmarks.{name}"
        cfg = eval_compose(
            [
                f"benchmark={name}",
                f"{key}.path={root}",
                f"{key}.generation.max_new_tokens=4",
                "batch_size=2",
                *extra,
            ]
        )
        with files_opened(root) as opened:
            results = run(cfg)
    assert opened == DATA_FILES[name]  # the files read are exactly those hashed below
    out = Path(cfg.paths.output_dir) / "benchmarks"
    document = json.loads((out / f"{name}.json").read_text())
    assert metric in document["metrics"] and document["metrics"] == results[name]
    assert all(math.isfinite(value) for value in document["metrics"].values())
    assert document["num_items"] == len(document["records"]) >= 1
    assert document["decoding"]["max_new_tokens"] == 4
    assert all(isinstance(record["output"], str) for record in document["records"])

    assert document["data"]["root"] == str(root)
    assert document["data"]["files"] == {
        file: hashlib.sha256((root / file).read_bytes()).hexdigest() for file in DATA_FILES[name]
    }
    if name == "mmhal":
        assert document["judge"]["backend"] == "openai" and document["judge"]["served_model"] == JUDGE_MODEL
    else:
        assert document["judge"] is None
    # every record names its image, which the report embeds (no image for the text-only question)
    images = [record["image"] for record in document["records"]]
    assert all(image is None or Path(image).is_file() for image in images) and any(images)
    page = (out / f"{name}.html").read_text()
    assert page.count("<figure") == len(document["records"]) and 'src="http' not in page
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
