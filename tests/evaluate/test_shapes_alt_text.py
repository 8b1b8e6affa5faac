"""benchmark=shapes_alt_text: the held-out alt-text records with their contexts, scored by the alt-text
scorer of benchmark=alt_text (MCM-DPO's get_score.py)."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf
from rouge import Rouge

from mmpo.benchmarks.alt_text import alt_text_metrics
from mmpo.benchmarks.shapes_alt_text import ShapesAltText
from mmpo.data import shapes

from ..conftest import CONF_DIR

WORLD = {"num_scenes": 40, "seed": 0, "image_size": 64}


def test_items_are_the_test_alt_text_records_with_their_context(shapes_dir):
    items = ShapesAltText(path=str(shapes_dir), world=WORLD).items()
    rows = [json.loads(line) for line in (shapes_dir / "alt_text_test.jsonl").read_text().splitlines()]
    assert [item.id for item in items] == [row["id"] for row in rows] and len(items) == 32
    train_images = {
        json.loads(line)["images"][0]
        for name in ("train", "sft", "alt_text_train", "alt_text_sft")
        for line in (shapes_dir / f"{name}.jsonl").read_text().splitlines()
    }
    for item, row in zip(items, rows, strict=True):
        assert item.prompt == f"{shapes.ALT_TEXT_PROMPT}\nContext:\n{row['context']}"
        assert item.meta["reference"] == row["chosen"]
        assert item.image == str(shapes_dir / row["images"][0])
        assert row["images"][0] not in train_images  # held-out scenes
    assert len(ShapesAltText(path=str(shapes_dir), world=WORLD, limit=3).items()) == 3


def test_scores_are_the_alt_text_scorers(shapes_dir):
    bench = ShapesAltText(path=str(shapes_dir), world=WORLD)
    items = bench.items()[:6]
    # half perfect, half the rejected alt-text (with MCM-DPO's "Assistant:" prefix, which the scorer drops)
    rows = {json.loads(line)["id"]: json.loads(line) for line in (shapes_dir / "alt_text_test.jsonl").open()}
    outputs = {
        item.id: item.meta["reference"] if i % 2 == 0 else "Assistant: " + rows[item.id]["rejected"]
        for i, item in enumerate(items)
    }
    metrics, records = bench.score(items, outputs)
    hypotheses = [outputs[item.id].removeprefix("Assistant: ") for item in items]
    expected, _ = alt_text_metrics(hypotheses, [item.meta["reference"] for item in items])
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value) or (math.isnan(value) and math.isnan(metrics[key])), key
    # ROUGE-L by hand from the package: 1 for a perfect output
    assert records[0]["rouge_l"] == pytest.approx(1.0)
    assert records[1]["rouge_l"] == pytest.approx(
        Rouge().get_scores(hypotheses[1], items[1].meta["reference"])[0]["rouge-l"]["f"]
    )
    assert records[1]["output"] == hypotheses[1]


def test_config_pins_the_official_decoding_and_the_test_split():
    cfg = OmegaConf.load(CONF_DIR / "benchmark" / "shapes_alt_text.yaml")
    assert cfg.split == "test" and cfg.generation.num_beams == 3 and cfg.generation.do_sample is False
    assert cfg._target_ == "mmpo.benchmarks.shapes_alt_text.ShapesAltText"
