"""The candidate pool: faiss retrieval = brute-force top-M in torch, own-image exclusion, the directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmpo.data.records import read_records
from mmpo.retrieval.pool import CandidatePool, build_index, build_pool, list_images, top_candidates

from .conftest import NUM_IMAGES, NUM_RECORDS, TOP_M


def own_rows(pool) -> list[int]:
    return [pool.image_paths.index(path) for path in pool.record_images]


def test_images_are_distinct(gallery):
    """Precondition of the nearest-neighbour tests: no two pool images are pixel-identical."""
    images = list_images(gallery / "images")
    assert len({p.read_bytes() for p in images}) == len(images) == NUM_IMAGES


def test_image_query_without_exclusion_finds_each_records_own_image_first(build):
    pool = build(query="image", exclude_own=False)
    assert pool.candidates[:, 0].tolist() == own_rows(pool)
    np.testing.assert_allclose(pool.similarities[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("query", ["image", "text", "image+text"])
def test_candidates_are_the_brute_force_top_m_without_the_own_image(build, query):
    pool = build(query=query)
    image, text = (
        torch.from_numpy(pool.record_image_embeddings),
        torch.from_numpy(pool.record_text_embeddings),
    )
    queries = {
        "image": image,
        "text": text,
        "image+text": torch.nn.functional.normalize(image + text, dim=-1),
    }[query]
    sims = queries @ torch.from_numpy(pool.image_embeddings).T
    sims[torch.arange(len(sims)), own_rows(pool)] = -torch.inf
    expected = sims.topk(TOP_M, dim=1)
    assert pool.candidates.shape == (len(pool.record_ids), TOP_M)
    np.testing.assert_allclose(pool.similarities, expected.values.numpy(), atol=1e-5)
    gaps = expected.values[:, TOP_M - 1] - sims.topk(TOP_M + 1, dim=1).values[:, TOP_M]
    clear = gaps > 1e-5  # rows whose M-th and (M+1)-th similarities are not tied up to float error
    assert clear.float().mean() > 0.5
    for row in torch.nonzero(clear).flatten().tolist():
        assert set(pool.candidates[row]) == set(expected.indices[row].tolist())
    assert all(own not in row for own, row in zip(own_rows(pool), pool.candidates.tolist(), strict=True))


def test_pool_directory_describes_itself(pool, gallery, clip_dir):
    manifest = pool.manifest
    assert manifest["images"] == [p.name for p in list_images(gallery / "images")]
    assert (
        manifest["model"]["path"] == str(clip_dir.resolve())
        and "model.safetensors" in manifest["model"]["files"]
    )
    records = read_records(gallery / "records.jsonl")
    assert (
        pool.record_ids == [r.id for r in records]
        and manifest["records"]["count"] == len(records) == NUM_RECORDS
    )
    assert pool.record_prompts == [r.prompt for r in records]
    reread = CandidatePool.load(pool.directory)
    np.testing.assert_array_equal(reread.candidates, pool.candidates)
    index = pool.read_index()
    assert index.ntotal == len(pool.image_paths) == pool.image_embeddings.shape[0]
    row = json.loads((pool.directory / "candidates.jsonl").read_text().splitlines()[0])
    assert row["images"] == [pool.image_paths[i] for i in row["indices"]]


def test_fingerprint_follows_options_not_the_run(build, pool):
    assert build().fingerprint == pool.fingerprint
    assert build(top_m=TOP_M - 1).fingerprint != pool.fingerprint


def test_difference_factors(pool):
    a, b = pool.difference_factors([3, 0])
    assert a.shape == (2, TOP_M, pool.image_embeddings.shape[1]) and b.shape == (
        2,
        pool.image_embeddings.shape[1],
    )
    c = pool.candidates[0, TOP_M - 1]
    expected = pool.record_image_embeddings[0] - pool.image_embeddings[c]
    np.testing.assert_allclose(a[1, TOP_M - 1].numpy(), expected)
    np.testing.assert_allclose(b[1].numpy(), pool.record_text_embeddings[0])


def test_unreadable_pool_image_is_skipped_and_listed(embedder, clip_dir, gallery, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for path in list_images(gallery / "images")[:12]:
        (images / path.name).write_bytes(path.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG garbage")
    args = (embedder, clip_dir, images, gallery / "records.jsonl", tmp_path / "pool")
    with pytest.raises(ValueError, match="broken.png"):
        build_pool(*args, top_m=4, progress=False)
    pool = build_pool(*args, top_m=4, on_error="skip", progress=False)
    assert [s["path"] for s in pool.manifest["skipped_images"]] == ["broken.png"]
    assert len(pool.image_paths) == 12 and str(images / "broken.png") not in pool.image_paths


def test_clear_errors():
    with pytest.raises(ValueError, match="index_factory='Nope'"):
        build_index(np.eye(4, dtype=np.float32), "Nope")
    index = build_index(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="top_m=4 candidates \\(\\+1 excluded\\) exceed the pool's 4 images"):
        top_candidates(index, np.eye(4, dtype=np.float32)[:1], 4, [{0}], progress=False)
    with pytest.raises(FileNotFoundError, match="build the pool with scripts/build_pool.py"):
        CandidatePool.load("/nonexistent/pool")


def test_records_with_an_unreadable_or_no_image_raise_or_are_listed(embedder, clip_dir, gallery, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"garbage")
    lines = (gallery / "records.jsonl").read_text().splitlines()[:6]
    bad = [
        {"id": "broken", "images": [str(tmp_path / "broken.png")], "prompt": "p", "chosen": "c"},
        {"id": "text-only", "images": [], "prompt": "p", "chosen": "c"},
    ]
    records = tmp_path / "records.jsonl"
    for name, extra in (("broken", bad[:1]), ("text-only", bad[1:])):
        absolute = [
            json.dumps({**json.loads(line), "images": [str(gallery / json.loads(line)["images"][0])]})
            for line in lines
        ]
        records.write_text("\n".join([*absolute, *map(json.dumps, extra)]) + "\n")
        with pytest.raises(ValueError, match=f"record id '{name}'"):
            build_pool(
                embedder, clip_dir, gallery / "images", records, tmp_path / "pool", top_m=3, progress=False
            )
    records.write_text("\n".join([*absolute, *map(json.dumps, bad)]) + "\n")
    pool = build_pool(
        embedder,
        clip_dir,
        gallery / "images",
        records,
        tmp_path / "pool",
        top_m=3,
        on_error="skip",
        progress=False,
    )
    assert len(pool.record_ids) == 6 and "broken" not in pool.record_ids
    skipped = pool.manifest["records"]["skipped"]
    assert [s["id"] for s in skipped] == ["text-only", "broken"] and "cannot be read" in skipped[1]["error"]
