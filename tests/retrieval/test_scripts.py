"""The scripts end to end on tiny inputs, as a user runs them (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from mmpo.retrieval.pool import CandidatePool
from mmpo.retrieval.sae import SparseAutoencoder, fit_sae

from ..conftest import ROOT
from .conftest import NUM_RECORDS, TOP_M


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def sae_path(pool, tmp_path_factory):
    sae, _ = fit_sae(pool, latent_dim=8, epochs=1, progress=False)
    path = tmp_path_factory.mktemp("sae") / "sae.pt"
    sae.save(path, pool_fingerprint=pool.fingerprint)
    return path


def test_build_pool(clip_dir, gallery, tmp_path):
    args = ["--model", clip_dir, "--images", gallery / "images", "--records", gallery / "records.jsonl"]
    done = run(
        "build_pool.py", *args, "--out", tmp_path / "pool", "--top-m", TOP_M, "--include-own", "--no-progress"
    )
    assert done.returncode == 0, done.stderr
    assert f"{NUM_RECORDS} records (0 skipped), top-{TOP_M} by image" in done.stdout
    pool = CandidatePool.load(tmp_path / "pool")
    assert [pool.image_paths[i] for i in pool.candidates[:, 0]] == pool.record_images  # own image first


def test_build_pool_user_error_has_no_traceback(gallery, tmp_path):
    args = [
        "--images",
        gallery / "images",
        "--records",
        gallery / "records.jsonl",
        "--out",
        tmp_path / "pool",
    ]
    done = run("build_pool.py", "--model", tmp_path / "no_model", *args)
    assert done.returncode != 0
    assert (
        "build_pool: error:" in done.stderr
        and "no config.json" in done.stderr
        and "Traceback" not in done.stderr
    )


def test_train_sae(pool, tmp_path):
    done = run("train_sae.py", "--pool", pool.directory, "--out", tmp_path, "--latent-dim", 8, "--epochs", 3)
    assert done.returncode == 0, done.stderr
    sae, meta = SparseAutoencoder.load(tmp_path / "sae.pt")
    assert sae.latent_dim == 8 and meta["pool_fingerprint"] == pool.fingerprint
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history if h["split"] == "val"] == [0, 1, 2]
    assert Image.open(tmp_path / "loss.png").format == "PNG"


def test_show_negatives(pool, sae_path, tmp_path):
    out = tmp_path / "negatives.png"
    done = run(
        "show_negatives.py", "--pool", pool.directory, "--sae", sae_path, "--out", out, "--num-records", 2,
        "--k", 3, "--select", "importance",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 records x 3 negatives" in done.stdout and "warning" not in done.stdout
    width, height = Image.open(out).size
    assert width > height  # 2 rows of 4 panels


def test_bench_pool():
    done = run(
        "bench_pool.py",
        "--size",
        2000,
        "--dim",
        32,
        "--queries",
        50,
        "--top-m",
        8,
        "--factories",
        "IVF16,Flat|nprobe=16",
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    # nprobe = nlist visits every list: the IVF search is exact too
    assert [(r[0].strip(), float(r[-1])) for r in rows] == [("Flat", 1.0), ("IVF16,Flat", 1.0)]
