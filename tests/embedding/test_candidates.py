"""Candidate sets: near-duplicate removal and kNN by hand, a tiny random DINOv2 from a local directory,
and the build script in both modes."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmpo.data import shapes
from mmpo.data.shapes_variants import ATTRIBUTES
from mmpo.embedding import candidates
from tests.conftest import ROOT


def unit(rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_near_duplicates_keep_the_first_of_each_group():
    # 0 and 2 are near-duplicates (cos 0.9988), 1 stands alone, 3 duplicates 1 exactly
    embeddings = unit([[1, 0], [0, 1], [1, 0.05], [0, 1]])
    assert candidates.near_duplicate_keep(embeddings, 0.99).tolist() == [True, True, False, False]
    assert candidates.near_duplicate_keep(embeddings, None).all()


def test_nearest_neighbours_by_hand():
    angles = np.radians([0, 10, 30, 90])
    embeddings = unit(np.stack([np.cos(angles), np.sin(angles)], 1))
    indices, sims = candidates.nearest_neighbours(embeddings, 2)
    assert indices.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert sims[0] == pytest.approx(np.cos(np.radians([10, 30])), abs=1e-6)
    with pytest.raises(ValueError, match="more than 4"):
        candidates.nearest_neighbours(embeddings, 4)


def test_build_from_pairs_drops_duplicates_and_takes_neighbour_captions():
    pairs = [candidates.Pair(f"r{i}", f"img{i}.png", f"caption {i}") for i in range(4)]
    pairs.append(candidates.Pair("r0b", "img0.png", "another caption of 0"))
    embeddings = unit([[1, 0], [0, 1], [1, 0.01], [0.7, 0.7]])  # img2 near-duplicates img0
    rows = candidates.build_from_pairs(pairs, embeddings, k=1, dedup_threshold=0.99)
    assert [r["id"] for r in rows] == ["r0", "r1", "r3", "r0b"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["r0"]["image_candidates"] == ["img3.png"] and by_id["r0"]["text_candidates"] == ["caption 3"]
    assert by_id["r0b"]["image_candidates"] == ["img3.png"]


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    directory = tmp_path_factory.mktemp("dinov2")
    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    Dinov2Model(config).save_pretrained(directory)
    BitImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        directory
    )
    return directory


def test_image_embeddings_are_the_models_normalised_cls(tiny_dinov2, tmp_path):
    model, processor = candidates.load_vision_model(tiny_dinov2)
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200), (30, 200, 30)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (40, 40), colour).save(paths[-1])
    embeddings = candidates.image_embeddings(model, processor, paths, batch_size=2)
    with torch.no_grad():
        cls = model(
            **processor(images=[Image.open(paths[2]).convert("RGB")], return_tensors="pt")
        ).pooler_output
    assert embeddings.shape == (3, 32)
    assert np.allclose(embeddings[2], torch.nn.functional.normalize(cls, dim=-1)[0].numpy(), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="--vision-model"):
        candidates.load_vision_model(tmp_path)


spec = importlib.util.spec_from_file_location("build_candidates", ROOT / "scripts" / "build_candidates.py")
build_candidates = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_candidates)


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_script_data_mode(tiny_dinov2, shapes_dir, tmp_path):
    out = tmp_path / "out" / "candidates.jsonl"
    # random weights embed every image alike: near-duplicate removal would keep one, so it is off here
    build_candidates.main(["data", "--records", str(shapes_dir / "val.jsonl"), "--kind", "caption", "--no-dedup",
                           "--vision-model", str(tiny_dinov2), "--k", "2", "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    captions = {
        r["id"]: r["chosen"] for r in map(json.loads, (shapes_dir / "val.jsonl").read_text().splitlines())
    }
    assert rows and all(r["id"].endswith("-caption") for r in rows)
    for row in rows:
        assert row["text"] == captions[row["id"]] and len(row["image_candidates"]) == 2
        assert all((out.parent / p).is_file() for p in [row["image"], *row["image_candidates"]])
        assert row["image"] not in row["image_candidates"]
    with pytest.raises(SystemExit, match="build_candidates: data file .*none.jsonl"):
        build_candidates.main(["data", "--records", str(tmp_path / "none.jsonl"), "--vision-model",
                               str(tiny_dinov2), "--out", str(out)])  # fmt: skip


def test_script_shapes_mode_gives_one_attribute_variants(tmp_path):
    out = tmp_path / "cand" / "train.jsonl"
    world = tmp_path / "world"
    build_candidates.main(["shapes", "--world", str(world), "--num-scenes", "20", "--image-size", "32", "--k", "4",
                           "--out", str(out)])  # fmt: skip
    rows = read_rows(out)
    assert len(rows) == round(shapes.SPLITS["train"] * 20)  # one row per scene of the train split
    for row in rows:
        assert row["attributes"][:3] == list(ATTRIBUTES)  # round-robin
        assert len(set(row["text_candidates"])) == 4 and row["text"] not in row["text_candidates"]
        first = Image.open(out.parent / row["image_candidates"][0])
        assert first.size == (32, 32)
    scene = shapes.Scene("x", (shapes.ShapeObject("red", "circle", "top left"),))
    assert len(candidates.round_robin_variants(scene, 100, seed=0)) == 5 + 2 + 3
