"""The shapes world's alt-text task: contexts that add what the image does not show, alt-texts that use
them, rejected alt-texts of the three kinds, the SFT annotator's habit, and files of their own."""

from __future__ import annotations

import re

import pytest

from mmpo.data import shapes
from mmpo.data.records import read_records

SPLITS = ("train", "val", "test", "sft")


def records(world, name):
    return read_records(world / f"{name}.jsonl", require_rejected=False)


def test_alt_text_splits_show_the_scenes_of_their_counterparts(shapes_dir):
    for split in SPLITS:
        alt = {r.images[0] for r in records(shapes_dir, f"alt_text_{split}")}
        assert alt == {r.images[0] for r in records(shapes_dir, split)}, split
    # 40 scenes: 20 / 4 / 16 with two records each, and one per SFT scene
    counts = [len(records(shapes_dir, f"alt_text_{split}")) for split in SPLITS]
    assert counts == [2 * 20, 2 * 4, 2 * 16, 400]


def test_context_names_poster_and_subject_and_the_chosen_alt_text_uses_both(shapes_dir):
    for record in records(shapes_dir, "alt_text_train") + records(shapes_dir, "alt_text_test"):
        poster, subject = record.meta["poster"], record.meta["subject"]
        assert record.prompt == shapes.ALT_TEXT_PROMPT
        assert record.context == f"Posted by {poster}. The subject is the {subject}."
        cell = dict(zip(record.meta["objects"], record.meta["cells"], strict=True))[subject]
        article = "an" if subject[0] in "aeiou" else "a"
        assert record.chosen.startswith(f"{poster}'s photo of {article} {subject} at the {cell}")
        # every object of the scene is mentioned once, with its cell
        for name, where in zip(record.meta["objects"], record.meta["cells"], strict=True):
            assert record.chosen.count(f"{name} at the {where}") == 1


def test_rejected_alt_texts_ignore_the_context_hallucinate_or_name_another_poster(shapes_dir):
    captions = {r.images[0]: r.chosen for r in records(shapes_dir, "train") if r.meta["kind"] == "caption"}
    seen = set()
    for record in records(shapes_dir, "alt_text_train"):
        (rejected,) = record.rejected
        kind = record.meta["rejection"]
        seen.add(kind)
        if kind == "generic":  # the plain caption of the scene, as train.jsonl's caption records give it
            assert rejected == captions[record.images[0]]
        elif kind == "hallucinated":
            mentioned = {" ".join(m) for m in re.findall(r"(\w+) (circle|square|triangle)", rejected)}
            assert mentioned - set(record.meta["objects"])  # an object the image does not show
            assert rejected.startswith(f"{record.meta['poster']}'s photo of")
        else:
            other = rejected.split("'s photo of")[0]
            assert other in shapes.POSTERS and other != record.meta["poster"]
            assert rejected.removeprefix(other) == record.chosen.removeprefix(record.meta["poster"])
    assert seen == set(shapes.ALT_TEXT_REJECTIONS)


def test_the_sft_annotator_writes_the_plain_caption_at_its_rate(shapes_dir):
    sft = records(shapes_dir, "alt_text_sft")
    generic = [r for r in sft if r.meta["annotated"] == "generic"]
    for record in generic:
        assert record.chosen == shapes.describe(
            [
                shapes.ShapeObject(*n.split(" "), c)
                for n, c in zip(record.meta["objects"], record.meta["cells"], strict=True)
            ]
        )
    for record in sft:
        if record.meta["annotated"] == "alt_text":
            assert record.chosen.startswith(f"{record.meta['poster']}'s photo of")
    # 400 draws: the share is within 4 standard deviations (0.1) of the rate
    assert len(generic) / len(sft) == pytest.approx(shapes.ALT_TEXT_GENERIC_RATE, abs=0.1)


def test_the_alt_text_files_leave_every_other_file_as_it_was(tmp_path, monkeypatch):
    """The alt-text records draw from generators of their own: without them the other files are the same."""
    full = shapes.generate(tmp_path / "full", num_scenes=10, seed=2)
    monkeypatch.setattr(shapes, "alt_text_records", lambda *args: [])
    monkeypatch.setattr(shapes, "sft_alt_text_records", lambda *args: [])
    bare = shapes.generate(tmp_path / "bare", num_scenes=10, seed=2)
    for name in ("train", "val", "test", "sft", "scenes"):
        assert (full / f"{name}.jsonl").read_bytes() == (bare / f"{name}.jsonl").read_bytes(), name
    assert (bare / "alt_text_train.jsonl").read_text() == "" != (full / "alt_text_train.jsonl").read_text()
