"""experiment=misp_dpo_shapes end to end: the shapes pool (gallery, tiny CLIP, SAE) built offline, then the
real config composed and trained (in process, and as ``python train.py experiment=misp_dpo_shapes`` shrunk,
as a user runs it)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from mmpo.data import shapes
from mmpo.data.records import read_records
from mmpo.modules.preference import PreferenceModule
from mmpo.negatives import ClipKnnSampler, SaeSampler
from mmpo.retrieval.sae import SparseAutoencoder
from mmpo.retrieval.shapes_pool import build_shapes_pool, gallery_scenes
from mmpo.train import run

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
    assert (
        len({content[i] for i in gallery}) == len(gallery) and not {content[i] for i in gallery} & preference
    )
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


SAMPLER_CLASSES = {"sae": SaeSampler, "clip_knn": ClipKnnSampler}


def first_logged(run_dir: Path, key: str) -> float:
    with open(run_dir / "metrics.csv") as f:
        return next(float(row[key]) for row in csv.DictReader(f) if row.get(key))


@pytest.mark.parametrize(
    ("overrides", "sampler", "validation"),
    [
        (["experiment=misp_dpo_shapes"], "sae", "RandomImageSampler"),
        (["loss=misp_dpo", "negative_sampler=sae"], "sae", "CropSampler"),
        (["loss=misp_dpo", "negative_sampler=clip_knn"], "clip_knn", "CropSampler"),
    ],
)
def test_composed_config_starts_at_the_closed_form_of_policy_equal_to_reference(
    compose, shapes_pool, overrides, sampler, validation
):
    """The real config, trained one step: at step 0 the LoRA adds nothing (B = 0), so policy == reference
    and every a_i = 0: L_img = softplus(log K) = log(K + 1), L_text = log 2, each negative's weight 1/K and
    the ESS K; the K = 3 negatives of each drawn record are stored."""
    cfg = compose([*overrides, "model=tiny_llava", "trainer.max_steps=1"])
    with open_dict(cfg):
        cfg.negative_sampler.pool = str(shapes_pool)
    assert (cfg.loss.beta, cfg.loss.num_negatives, cfg.loss.text_weight) == (0.5, 3, 1.0)
    assert cfg.negative_sampler._target_ == f"mmpo.negatives.{SAMPLER_CLASSES[sampler].__name__}"
    assert cfg.val_negative_sampler._target_.endswith(validation)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    assert first_logged(out, "train/loss/img_step") == pytest.approx(math.log(4), abs=1e-5)
    assert first_logged(out, "train/loss/text_step") == pytest.approx(math.log(2), abs=1e-5)
    assert first_logged(out, "train/loss_step") == pytest.approx(math.log(8), abs=1e-5)
    assert first_logged(out, "train/misp/ess_step") == pytest.approx(3, abs=1e-4)
    assert first_logged(out, "train/misp/weight[2]_step") == pytest.approx(1 / 3, abs=1e-5)
    assert "loss=misp_dpo" in (out / "summary.txt").read_text()
    (store,) = (shapes_pool / "selections").glob(f"{sampler}-*.jsonl")
    draws = [json.loads(line) for line in store.read_text().splitlines()]
    training = {record.id for record in read_records(Path(cfg.data.path) / "train.jsonl")}
    assert draws and {d["record_id"] for d in draws} <= training  # validation draws its own negatives
    assert all(len(d["images"]) == 3 and d["log_q"] is None for d in draws)


def test_importance_draws_hand_their_log_q_to_the_loss(compose, shapes_pool, tmp_path):
    """select=importance through the real config: at step 0 (a_i = 0) the unnormalised objective is
    log(1 + sum_i 1 / q_i) and the ESS 1 / sum_i p_i^2 with p_i proportional to 1 / q_i, both batch means,
    computed here from the stored log q of the batch's two records."""
    overrides = [
        "experiment=misp_dpo_shapes",
        "model=tiny_llava",
        "trainer.max_steps=1",
        "data.limit_train=2",
    ]
    cfg = compose([*overrides, "negative_sampler.select=importance", "loss.importance=unnormalized"])
    with open_dict(cfg):
        cfg.negative_sampler.pool = str(shapes_pool)
        cfg.negative_sampler.store_dir = str(tmp_path / "selections")
    run(cfg)
    (store,) = (tmp_path / "selections").glob("sae-*.jsonl")
    log_q = torch.tensor([json.loads(line)["log_q"] for line in store.read_text().splitlines()])
    assert log_q.shape == (2, 3) and bool((log_q < 0).all())
    inverse = (-log_q).exp()
    p = inverse / inverse.sum(-1, keepdim=True)
    out = Path(cfg.paths.output_dir)
    expected_img = torch.log1p(inverse.sum(-1)).mean().item()
    assert first_logged(out, "train/loss/img_step") == pytest.approx(expected_img, rel=1e-5)
    assert first_logged(out, "train/misp/ess_step") == pytest.approx(
        (1 / p.square().sum(-1)).mean().item(), rel=1e-4
    )
    assert first_logged(out, "train/misp/weight[0]_step") == pytest.approx(p[:, 0].mean().item(), rel=1e-4)


def test_the_random_multi_negative_baseline_is_the_experiment_with_random_images(compose):
    overrides = ["negative_sampler=random_image", "~negative_sampler.pool", "model=tiny_llava"]
    cfg = compose(["experiment=misp_dpo_shapes", *overrides])
    assert PreferenceModule.problems(cfg) == []
    assert cfg.negative_sampler._target_.endswith("RandomImageSampler") and cfg.loss.num_negatives == 3


@pytest.mark.slow
def test_train_py_experiment_misp_dpo_shapes(shapes_dir, shapes_pool, tmp_path):
    run_dir = tmp_path / "run"
    done = train_cli(
        "experiment=misp_dpo_shapes",
        "model=tiny_llava",  # the random tiny LLaVA: no SFT base to build first
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
    assert {
        "train/loss/img_step",
        "train/loss/text_step",
        "train/misp/ess_step",
        "val/misp/weight[2]",
    } <= logged
    (store,) = (shapes_pool / "selections").glob("sae-*.jsonl")
    draws = [json.loads(line) for line in store.read_text().splitlines()]
    assert {d["epoch"] for d in draws} == {0} and len({d["record_id"] for d in draws}) == 4
    assert all(len(d["images"]) == 3 and d["log_q"] is None for d in draws)
    assert (run_dir / "summary.txt").is_file()
