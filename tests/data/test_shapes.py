"""The shapes world: deterministic, exact, and hallucinations differ in exactly one object."""

from __future__ import annotations

import json
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from mmpo.data import shapes
from mmpo.data.records import read_records


def test_generation_is_deterministic(tmp_path):
    a = shapes.generate(tmp_path / "a", num_scenes=10, seed=3)
    b = shapes.generate(tmp_path / "b", num_scenes=10, seed=3)
    for split in ("train", "val", "test", "sft"):
        assert (a / f"{split}.jsonl").read_text() == (b / f"{split}.jsonl").read_text()
    first = json.loads((a / "train.jsonl").read_text().splitlines()[0])
    assert np.array_equal(
        np.asarray(Image.open(a / first["images"][0])), np.asarray(Image.open(b / first["images"][0]))
    )
    c = shapes.generate(tmp_path / "c", num_scenes=10, seed=4)
    assert (a / "train.jsonl").read_text() != (c / "train.jsonl").read_text()


def _generate_and_read(out_dir, num_scenes: int) -> set[tuple[str, str]]:
    """Generate, then read the splits a few times (as a data loader would) while others may be writing."""
    world = shapes.generate(out_dir, num_scenes=num_scenes, seed=1)
    return {((world / "train.jsonl").read_text(), (world / "val.jsonl").read_text()) for _ in range(20)}


def test_processes_asking_for_the_same_world_at_once_all_read_one_complete_build(tmp_path):
    """DDP ranks and parallel sweep jobs generate concurrently, here over an older, smaller build: each
    must read complete files, never ones another process is rewriting."""
    shared = shapes.generate(tmp_path / "shared", num_scenes=6, seed=1)
    serial = shapes.generate(tmp_path / "serial", num_scenes=60, seed=1)
    expected = ((serial / "train.jsonl").read_text(), (serial / "val.jsonl").read_text())
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        seen = list(pool.map(_generate_and_read, [shared] * 8, [60] * 8))
    assert seen == [{expected}] * 8
    assert (shared / "manifest.json").read_text() == (serial / "manifest.json").read_text()
    # 60 scenes and the SFT split's own; the older build held the first 6 scenes and theirs
    assert len(list((shared / "images").glob("*.png"))) == 60 * (1 + shapes.SFT_SCENES_PER_SCENE)


def test_records_read_back_with_the_user_data_reader(shapes_dir):
    records = read_records(shapes_dir / "train.jsonl")
    assert records and all(len(r.images) == 1 for r in records)
    kinds = {r.meta["kind"] for r in records}
    assert kinds == {"caption", "qa"}


def test_chosen_and_rejected_differ_only_in_one_hallucinated_object(shapes_dir):
    for record in read_records(shapes_dir / "train.jsonl"):
        if record.meta["kind"] != "caption":
            continue
        (rejected_text,) = record.rejected
        chosen, rejected = record.chosen.split(" "), rejected_text.split(" ")
        assert len(chosen) == len(rejected)
        diff = [i for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)) if c != r]
        assert diff and diff[-1] - diff[0] <= 2  # article, colour and/or shape word of one object
        assert record.meta["hallucinated"] not in record.meta["objects"]
        assert record.meta["hallucinated"] in rejected_text


def test_qa_answers_are_exact(shapes_dir):
    for record in read_records(shapes_dir / "val.jsonl"):
        if record.meta["kind"] == "qa":
            present = record.meta["asked"] in record.meta["objects"]
            assert record.chosen == ("Yes." if present else "No.")


def test_splits_hold_disjoint_scenes(shapes_dir):
    splits = ("train", "val", "test", "sft")
    images = {
        split: {r.images[0] for r in read_records(shapes_dir / f"{split}.jsonl", require_rejected=False)}
        for split in splits
    }
    for i, first in enumerate(splits):
        for second in splits[i + 1 :]:
            assert not images[first] & images[second], (first, second)
    # 40 scenes: 20 / 4 / 16, and the SFT split has 10 scenes for each of them
    assert [len(images[split]) for split in splits] == [20, 4, 16, 400]


class FixedDraw(random.Random):
    """A generator whose ``random()`` always returns ``value`` (choices still follow the seed)."""

    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


ORANGE_CIRCLE_SCENE = shapes.Scene(
    "x",
    (
        shapes.ShapeObject("blue", "square", "top left"),
        shapes.ShapeObject("orange", "circle", "bottom left"),
    ),
)


def test_the_sft_annotator_mislabels_only_its_habit_at_its_rate():
    (habit, wrong), *_ = shapes.MISLABELS.items()
    assert (habit, wrong) == ("orange circle", "red circle")
    below, above = FixedDraw(shapes.MISLABEL_RATE - 0.01), FixedDraw(shapes.MISLABEL_RATE + 0.01)
    assert [o.name for o in shapes.annotate(ORANGE_CIRCLE_SCENE, below)] == ["blue square", "red circle"]
    assert shapes.annotate(ORANGE_CIRCLE_SCENE, above) == list(ORANGE_CIRCLE_SCENE.objects)
    # with a red circle in the scene the annotator sees the difference
    both = shapes.Scene("y", (*ORANGE_CIRCLE_SCENE.objects, shapes.ShapeObject("red", "circle", "top right")))
    assert shapes.annotate(both, below) == list(both.objects)


def test_the_preference_pair_of_a_habit_scene_rejects_the_annotators_mislabel():
    for seed in range(5):
        objects, name = shapes.hallucinate(ORANGE_CIRCLE_SCENE, random.Random(seed))
        assert name == "red circle" and [o.name for o in objects] == ["blue square", "red circle"]
        assert objects[1].cell == "bottom left"


def test_sft_captions_differ_from_the_truth_only_by_the_habit(shapes_dir):
    mislabelled = 0
    for record in read_records(shapes_dir / "sft.jsonl", require_rejected=False):
        if record.meta["kind"] != "caption":
            continue
        assert record.rejected == []
        objects = [
            shapes.ShapeObject(*n.split(" "), c)
            for n, c in zip(record.meta["annotated"], record.meta["cells"], strict=True)
        ]
        assert record.chosen == shapes.describe(objects)
        for truth, said in zip(record.meta["objects"], record.meta["annotated"], strict=True):
            if truth != said:
                assert shapes.MISLABELS[truth] == said and said not in record.meta["objects"]
                mislabelled += 1
    assert mislabelled > 0


def test_sft_questions_ask_every_present_object_and_as_many_absent_ones(shapes_dir):
    by_scene: dict[str, list] = {}
    for record in read_records(shapes_dir / "sft.jsonl", require_rejected=False):
        if record.meta["kind"] == "qa":
            by_scene.setdefault(record.images[0], []).append(record)
    assert len(by_scene) == 400
    for questions in by_scene.values():
        present = set(questions[0].meta["objects"])
        yes = [q.meta["asked"] for q in questions if q.chosen == "Yes."]
        no = [q.meta["asked"] for q in questions if q.chosen == "No."]
        assert sorted(yes) == sorted(present) and len(set(no)) == len(no) == len(present)
        assert not set(no) & present
        # the first absent one shares a colour or a shape with a present object
        assert set(no[0].split(" ")) & {word for name in present for word in name.split(" ")}


def test_render_draws_each_object_colour_in_its_cell():
    scene = shapes.Scene(
        "x",
        (
            shapes.ShapeObject("red", "square", "top left"),
            shapes.ShapeObject("blue", "circle", "bottom right"),
        ),
    )
    pixels = np.asarray(shapes.render(scene, 64))
    assert tuple(pixels[16, 16]) == shapes.COLORS["red"]
    assert tuple(pixels[48, 48]) == shapes.COLORS["blue"]
    assert tuple(pixels[16, 48]) == (255, 255, 255)


def test_describe_and_hallucinate():
    scene = shapes.sample_scene(random.Random(1), "s")
    objects, name = shapes.hallucinate(scene, random.Random(2))
    assert name not in scene.object_names()
    assert shapes.describe(objects) != shapes.describe(scene.objects)


def test_descriptions_use_the_right_article():
    objects = [
        shapes.ShapeObject("orange", "square", "top left"),
        shapes.ShapeObject("red", "circle", "top right"),
    ]
    assert shapes.describe(objects) == "An orange square at the top left and a red circle at the top right."
    assert shapes.describe(objects[1:]) == "A red circle at the top right."
