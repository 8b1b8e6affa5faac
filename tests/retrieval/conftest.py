"""Fixtures of the retrieval tests: a tiny random CLIP saved by path, ~20 generated images and records."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mmpo.data import shapes
from mmpo.retrieval.clip import ClipEmbedder
from mmpo.retrieval.pool import build_pool
from mmpo.retrieval.tiny_clip import save_tiny_clip

TOP_M = 5
NUM_IMAGES = 20
NUM_RECORDS = 16


@pytest.fixture(scope="session")
def gallery(tmp_path_factory) -> Path:
    """``images/`` with 20 distinct shapes scenes and ``records.jsonl``: one record for each of the first 16
    (the last 4 images are in the pool only), prompts asking about one object each."""
    root = tmp_path_factory.mktemp("gallery")
    (root / "images").mkdir()
    rng, scenes = random.Random(0), {}
    while len(scenes) < NUM_IMAGES:
        scene = shapes.sample_scene(rng, f"g{len(scenes):02d}")
        scenes.setdefault(scene.objects, scene)
    with open(root / "records.jsonl", "w") as f:
        for i, scene in enumerate(scenes.values()):
            shapes.render(scene).save(root / "images" / f"{scene.id}.png")
            if i < NUM_RECORDS:
                asked = rng.choice(shapes.all_object_names())
                record = {
                    "id": f"r{i:02d}",
                    "images": [f"images/{scene.id}.png"],
                    "prompt": f"Is there {shapes.with_article(asked)} in the image?",
                    "chosen": "Yes.",
                    "rejected": "No.",
                }
                f.write(json.dumps(record) + "\n")
    return root


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def embedder(clip_dir) -> ClipEmbedder:
    return ClipEmbedder.from_path(clip_dir)


@pytest.fixture(scope="session")
def build(embedder, clip_dir, gallery, tmp_path_factory):
    """``build(**options)`` -> a pool over the gallery's images and records."""

    def _build(**options):
        out = tmp_path_factory.mktemp("pool")
        options = {"top_m": TOP_M, "progress": False, **options}
        return build_pool(embedder, clip_dir, gallery / "images", gallery / "records.jsonl", out, **options)

    return _build


@pytest.fixture(scope="session")
def pool(build):
    return build()
