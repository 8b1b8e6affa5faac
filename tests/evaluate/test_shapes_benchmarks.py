"""Shapes benchmarks: exact ground truth from the scenes, POPE negatives by rule, metrics by hand."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from mmpo.benchmarks.shapes import ShapesCHAIR, ShapesPOPE, ShapesWorld, extract_mentions, negatives
from mmpo.data import shapes

WORLD = {"num_scenes": 40, "seed": 0, "image_size": 64}


def scene_objects(world_dir) -> dict[str, set[str]]:
    rows = [json.loads(line) for line in (world_dir / "scenes.jsonl").read_text().splitlines()]
    return {row["id"]: {f"{o['color']} {o['shape']}" for o in row["objects"]} for row in rows}


def test_chair_items_are_the_held_out_scenes_with_their_objects(shapes_dir):
    items = ShapesCHAIR(path=str(shapes_dir), world=WORLD).items()
    truth = scene_objects(shapes_dir)
    test_ids = [
        json.loads(line)["id"].removesuffix("-caption")
        for line in (shapes_dir / "test.jsonl").read_text().splitlines()
        if "-caption" in line
    ]
    assert [item.id for item in items] == test_ids and len(items) == 16  # 40% of 40 scenes
    train_images = {
        json.loads(line)["images"][0]
        for split in ("train", "sft")
        for line in (shapes_dir / f"{split}.jsonl").read_text().splitlines()
    }
    for item in items:
        assert set(item.meta["objects"]) == truth[item.id]
        assert item.image == str(shapes_dir / "images" / f"{item.id}.png")
        assert f"images/{item.id}.png" not in train_images
        assert item.prompt.startswith("Describe the image.\nContext:\n")
    bare = ShapesCHAIR(path=str(shapes_dir), world=WORLD, context_template=None).items()
    assert {item.prompt for item in bare} == {"Describe the image."}


def test_pope_items_ask_every_present_object_and_as_many_absent_ones(shapes_dir):
    bench = ShapesPOPE(path=str(shapes_dir), world=WORLD, prompt_suffix=" Answer yes or no.")
    items = bench.items()
    truth = scene_objects(shapes_dir)
    for split in ("random", "popular", "adversarial"):
        rows = [item for item in items if item.meta["split"] == split]
        for scene, present in ((s, truth[s]) for s in {item.meta["scene"] for item in rows}):
            asked = [item for item in rows if item.meta["scene"] == scene]
            yes = {item.meta["object"] for item in asked if item.meta["label"] == "yes"}
            no = {item.meta["object"] for item in asked if item.meta["label"] == "no"}
            assert yes == present and len(no) == len(present) and not no & present
    first = items[0]
    article = "an" if first.meta["object"].startswith("orange") else "a"
    assert first.prompt == f"Is there {article} {first.meta['object']} in the image? Answer yes or no."
    # items go scene by scene, so a limit of one scene's questions holds every split
    per_scene = sum(item.meta["scene"] == first.meta["scene"] for item in items)
    limited = ShapesPOPE(path=str(shapes_dir), world=WORLD, limit=per_scene).items()
    assert {item.meta["split"] for item in limited} == {"random", "popular", "adversarial"}


def test_negatives_follow_the_split_rules():
    present = {"red circle", "blue square"}
    frequency = Counter({"green triangle": 9, "yellow circle": 7, "red circle": 50, "purple square": 3})
    cooccurrence = Counter(
        {
            ("purple square", "red circle"): 5,
            ("red triangle", "blue square"): 2,
            ("green triangle", "red circle"): 40,
        }
    )
    popular = negatives("popular", present, 2, frequency, cooccurrence, random.Random(0))
    assert popular == ["green triangle", "yellow circle"]  # most frequent absent ones; red circle is present
    adversarial = negatives("adversarial", present, 2, frequency, cooccurrence, random.Random(0))
    # green triangle co-occurs most but shares neither colour nor shape with a present object
    assert adversarial == ["purple square", "red triangle"]
    drawn = negatives("random", present, 2, frequency, cooccurrence, random.Random(3))
    assert drawn == negatives("random", present, 2, frequency, cooccurrence, random.Random(3))
    assert len(set(drawn)) == 2 and not set(drawn) & present and set(drawn) <= set(shapes.all_object_names())


def test_extract_mentions_is_exact_over_the_closed_vocabulary():
    found = extract_mentions("Two Red circles, a blue square and a blue square; a pink circle, a redcircle.")
    assert [(m.word, m.category) for m in found] == [
        ("red circles", "red circle"),
        ("blue square", "blue square"),
        ("blue square", "blue square"),
    ]


def test_chair_metrics_on_hand_written_captions(shapes_dir):
    bench = ShapesCHAIR(path=str(shapes_dir), world=WORLD)
    items = bench.items()[:2]
    a, b = (sorted(item.meta["objects"]) for item in items)
    wrong = next(name for name in shapes.all_object_names() if name not in a)
    outputs = {
        items[0].id: f"A {a[0]} and a {wrong} and another {wrong}.",  # 3 mentions, 2 hallucinated
        items[1].id: "Nothing I can name.",  # no mention
    }
    metrics, records = bench.score(items, outputs)
    # CHAIRi = 2/3; CHAIRs = 1/2; CHAIRs_refine = 1/1; recall = 1 / (|a| + |b|)
    assert metrics["CHAIRi"] == pytest.approx(2 / 3)
    assert metrics["CHAIRs"] == pytest.approx(1 / 2)
    assert metrics["CHAIRs_refine"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(1 / (len(a) + len(b)))
    assert records[0]["hallucinated"] == [[wrong, wrong], [wrong, wrong]]
    assert records[1]["output"] == "Nothing I can name."


def test_pope_metrics_on_hand_written_answers(shapes_dir):
    bench = ShapesPOPE(path=str(shapes_dir), world=WORLD, splits=["random", "adversarial"])
    items = bench.items()
    # answer yes to everything in random (recall 1, precision = share of yes labels), the truth in adversarial
    outputs = {
        item.id: "Yes." if item.meta["split"] == "random" or item.meta["label"] == "yes" else "No."
        for item in items
    }
    metrics, _ = bench.score(items, outputs)
    assert metrics["random/accuracy"] == pytest.approx(0.5)  # as many yes as no labels
    assert metrics["random/recall"] == 1.0 and metrics["random/yes_ratio"] == 1.0
    assert metrics["adversarial/accuracy"] == 1.0 and metrics["adversarial/f1"] == 1.0
    assert metrics["avg/accuracy"] == pytest.approx(0.75)


def test_world_is_generated_when_absent_and_never_overwritten(tmp_path):
    target = tmp_path / "world"
    ShapesWorld(target, num_scenes=20).ensure()
    assert json.loads((target / "manifest.json").read_text())["num_scenes"] == 20
    with pytest.raises(ValueError, match="num_scenes"):
        ShapesWorld(target, num_scenes=30).ensure()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "train.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="not empty"):
        ShapesWorld(foreign).ensure()
    with pytest.raises(ValueError, match="path"):
        ShapesPOPE(path=None)
