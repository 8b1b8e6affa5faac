"""experiment=misp_dpo_shapes end to end: the shapes pool (gallery, tiny CLIP, SAE) built offline, then
``python train.py experiment=misp_dpo_shapes`` shrunk, as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmpo.data import shapes
from mmpo.negatives import SaeSampler
from mmpo.retrieval.sae import SparseAutoencoder
from mmpo.retrieval.shapes_pool import build_shapes_pool, gallery_scenes

from ..conftest import train_cli


@pytest.fixture(scope="module")
def shapes_pool(shapes_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pools" / "shapes"
    build_shapes_pool(shapes_dir, out, top_m=8, clip_epochs=2, sae_epochs=1, latent_dim=8, progress=False)
    return out


def test_the_gallery_repeats_no_preference_scene_and_no_scene_twice(shapes_dir, shapes_pool):
    scenes = [json.loads(line) for line in (shapes_dir / "scenes.jsonl").read_text().splitlines()]
    content = {row["id"]: tuple(tuple(o.values()) for o in row["objects"]) for row in scenes}
    preference = {content[i] for i in content if "-sft-" not in i}
    gallery = [scene_id for scene_id, _ in gallery_scenes(shapes_dir)]
    assert gallery and all("-sft-" in i for i in gallery)
    assert len({content[i] for i in gallery}) == len(gallery) and not {content[i] for i in gallery} & preference
    sft = [i for i in content if "-sft-" in i]
    assert len(gallery) < len(sft)  # small worlds repeat scenes: some were left out
    assert sorted(p.stem for p in (shapes_pool / "gallery").glob("*.png")) == sorted(gallery)
    caption = dict(gallery_scenes(shapes_dir))[gallery[0]]
    objects = next(row["objects"] for row in scenes if row["id"] == gallery[0])
    assert caption == shapes.describe([shapes.ShapeObject(**o) for o in objects])


def test_the_shapes_pool_serves_the_sae_sampler(shapes_dir, shapes_pool):
    sae, meta = SparseAutoencoder.load(shapes_pool / "sae" / "sae.pt")
    manifest = json.loads((shapes_pool / "manifest.json").read_text())
    assert meta["pool_fingerprint"] == manifest["fingerprint"] and sae.latent_dim == 8
    assert manifest["records"]["path"] == str((shapes_dir / "train.jsonl").resolve())
    assert SaeSampler(str(shapes_pool)).problems(5) == []


def test_train_py_experiment_misp_dpo_shapes(shapes_dir, shapes_pool, tmp_path):
    run_dir = tmp_path / "run"
    done = train_cli(
        "experiment=misp_dpo_shapes",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "data.limit_train=4",
        "data.limit_val=4",
        "data.batch_size=2",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "data.shapes.num_scenes=40",
        f"data.path={shapes_dir}",
        f"paths.data_dir={shapes_pool.parent.parent}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        run_dir=run_dir,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run: engine shared_prefix" in done.stderr + done.stdout
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {key for row in rows for key, value in row.items() if value}
    assert {"train/loss/img_step", "train/loss/text_step", "train/misp/ess_step", "val/misp/weight[2]"} <= logged
    (store,) = (shapes_pool / "selections").glob("sae-*.jsonl")
    draws = [json.loads(line) for line in store.read_text().splitlines()]
    assert {d["epoch"] for d in draws} == {0} and len({d["record_id"] for d in draws}) == 4
    assert all(len(d["images"]) == 3 and d["log_q"] is None for d in draws)
    assert (run_dir / "summary.txt").is_file()
