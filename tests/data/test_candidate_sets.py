"""The embedding run's data: caption records joined with their candidate rows, padded and masked, the
shapes world's candidate files built (and rebuilt when stale), and the start-up checks of other data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmpo.data import shapes
from mmpo.data.candidate_sets import CandidateDataModule, candidate_problems
from mmpo.data.records import RecordError
from mmpo.data.shapes_variants import variants


def data_cfg(world: Path, **overrides):
    cfg = {
        "source": "shapes",
        "path": str(world),
        "train_file": "train.jsonl",
        "val_file": "val.jsonl",
        "batch_size": 3,
        "shuffle": False,
        "num_workers": 0,
        "on_error": "raise",
        "limit_train": None,
        "limit_val": None,
        "shapes": {"num_scenes": 40, "seed": 0, "image_size": 64},
    }
    return OmegaConf.create({**cfg, **overrides})


def candidates_cfg(k: int = 3, **paths):
    return OmegaConf.create({"train": None, "val": None, "k": k, "seed": 0, **paths})


@pytest.fixture
def world(tmp_path, shapes_dir) -> Path:
    """A private copy of the session's shapes world (the candidate files are written into it)."""
    return Path(shutil.copytree(shapes_dir, tmp_path / "shapes"))


def ready(world: Path, k: int = 3, **data) -> CandidateDataModule:
    datamodule = CandidateDataModule(data_cfg(world, **data), candidates_cfg(k))
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def rows(world: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (world / f"candidates_{split}.jsonl").read_text().splitlines()]


def scenes(world: Path) -> dict[str, shapes.Scene]:
    out = {}
    for line in (world / "scenes.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["id"]] = shapes.Scene(row["id"], tuple(shapes.ShapeObject(**o) for o in row["objects"]))
    return out


def test_shapes_anchors_are_the_caption_records_with_one_attribute_variants(world):
    datamodule = ready(world)
    captions = [
        json.loads(line) for line in (world / "train.jsonl").read_text().splitlines() if "-caption" in line
    ]
    anchors = datamodule.datasets["train"]
    assert [a.id for a in anchors] == [r["id"] for r in captions]
    assert datamodule.without_candidates == {"train": 20, "val": 4}  # the yes/no records
    by_id = scenes(world)
    for anchor, record in zip(anchors, captions, strict=True):
        assert anchor.text == record["chosen"] and anchor.image == str(
            (world / record["images"][0]).resolve()
        )
        scene = by_id[Path(anchor.image).stem]
        described = {
            shapes.describe(v.objects) for a in ("color", "shape", "position") for v in variants(scene, a)
        }
        assert len(anchor.text_candidates) == 3 and set(anchor.text_candidates) <= described
        assert all(Path(p).is_file() for p in anchor.image_candidates)


def test_a_batch_pads_and_masks_rows_with_fewer_candidates(world):
    ready(world)  # builds the files
    train = rows(world, "train")
    train[1]["image_candidates"], train[1]["text_candidates"] = train[1]["image_candidates"][:1], []
    (world / "candidates_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    datamodule = CandidateDataModule(data_cfg(world), candidates_cfg())
    datamodule.setup()  # no prepare_data: the edited file stays
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.ids == [r["id"] for r in train[:3]]
    assert batch.mask(batch.candidate_images).tolist() == [[True] * 4, [True, True, False, False], [True] * 4]
    assert batch.mask(batch.candidate_texts)[1].tolist() == [True, False, False, False]
    assert len(batch.candidate_images[0]) == 3 and batch.candidate_image_keys[1] == [
        str((world / train[1]["image_candidates"][0]).resolve())
    ]


def test_the_shapes_files_are_rebuilt_for_another_k_and_kept_otherwise(world):
    ready(world, k=2)
    assert {len(r["image_candidates"]) for r in rows(world, "val")} == {2}
    stamp = (world / "candidates_val.jsonl").stat().st_mtime_ns
    ready(world, k=2)
    assert (world / "candidates_val.jsonl").stat().st_mtime_ns == stamp
    ready(world, k=4)
    assert {len(r["image_candidates"]) for r in rows(world, "val")} == {4}


def test_a_candidate_row_of_another_record_names_its_line_or_is_skipped(world):
    ready(world)
    val = rows(world, "val")
    val[2]["text"] = "A purple square at the top left."
    (world / "candidates_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))
    with pytest.raises(
        RecordError, match=r"candidates_val.jsonl:3: candidate row .* was built from other records"
    ):
        CandidateDataModule(data_cfg(world), candidates_cfg()).setup()
    skipping = CandidateDataModule(data_cfg(world, on_error="skip"), candidates_cfg())
    skipping.setup()
    assert len(skipping.datasets["val"]) == len(val) - 1 and len(skipping.report.skipped) == 1
    report = skipping.write_report(world)
    assert report["without_candidates"]["val"] == 4 + 1


def test_files_data_needs_its_candidate_files_at_start_up(tmp_path):
    data = data_cfg(tmp_path, source="files")
    problems = candidate_problems(data, candidates_cfg(k=0, val=str(tmp_path / "mine.jsonl")))
    assert problems[0] == "module.candidates.k=0: give a positive number of candidates per anchor"
    assert problems[1].startswith(
        f"module.candidates.train: '{tmp_path / 'candidates_train.jsonl'}' does not exist"
    )
    assert f"build_candidates.py data --records {tmp_path / 'train.jsonl'} --kind caption" in problems[1]
    assert problems[2].startswith(f"module.candidates.val: '{tmp_path / 'mine.jsonl'}' does not exist")
    assert len(problems) == 3
    assert candidate_problems(data_cfg(tmp_path), candidates_cfg()) == []  # shapes builds its own


def test_the_training_order_is_the_seeded_epoch_order_and_resumes_mid_epoch(world):
    """The anchors' order of an epoch is EpochSampler's permutation for (seed, epoch), not torch's global
    generator; resume_at(e, b) starts epoch e at its (b+1)-th batch, then epochs run whole again."""
    from mmpo.data.sampling import EpochSampler

    ready(world)  # builds the files
    datamodule = CandidateDataModule(data_cfg(world, shuffle=True), candidates_cfg(), seed=5)
    datamodule.setup()
    anchors = [a.id for a in datamodule.datasets["train"]]
    expected = [anchors[i] for i in EpochSampler(len(anchors), True, 5).order(1)]
    assert expected != anchors  # a shuffle
    datamodule.resume_at(1, 2)
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(1)
    assert [i for batch in loader for i in batch.ids] == expected[2 * 3 :]
    assert [i for batch in loader for i in batch.ids] == expected  # the next pass of epoch 1: whole
    val = [i for batch in datamodule.val_dataloader() for i in batch.ids]
    assert val == [a.id for a in datamodule.datasets["val"]]  # validation: in record order, not resumed
