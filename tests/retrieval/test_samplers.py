"""The pool samplers (negative_sampler=sae|clip_knn): their selections against the building blocks, seeding,
the selection store, the start-up checks, and errors for records the pool cannot serve."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.data.records import read_records
from mmpo.images import load_image
from mmpo.losses import Requirements
from mmpo.modules.preference import DataPlan, PreferenceModule, sampler_problems
from mmpo.negatives import ClipKnnSampler, Pool, SaeSampler
from mmpo.negatives.base import SamplingKey
from mmpo.retrieval.pool import build_pool
from mmpo.retrieval.sae import fit_sae, score_candidates
from mmpo.retrieval.selection import combined_scores, greedy_diverse, importance_sample

from .conftest import TOP_M


@pytest.fixture(scope="module")
def sae_path(pool, tmp_path_factory):
    sae, _ = fit_sae(pool, latent_dim=8, epochs=1, progress=False)
    path = tmp_path_factory.mktemp("sae") / "sae.pt"
    sae.save(path, pool_fingerprint=pool.fingerprint, pool_dir=str(pool.directory))
    return path


@pytest.fixture(scope="module")
def records(gallery):
    return read_records(gallery / "records.jsonl")


def draw(sampler, record, count=3, seed=0, epoch=0):
    return sampler.negatives(record, [load_image(record.images[0])], count, seed, epoch, Pool())


def positions(sampler, record, count=3, seed=0, epoch=0) -> list[int]:
    key = SamplingKey(seed, record.id, epoch, sampler.stream(0))
    return list(sampler.selection(record, count, key).candidates)


def sae_sampler(pool, sae_path, tmp_path, **options) -> SaeSampler:
    return SaeSampler(str(pool.directory), str(sae_path), store_dir=str(tmp_path), **options)


def sae_scores(pool, sae_path, row):
    from mmpo.retrieval.sae import SparseAutoencoder

    out = score_candidates(SparseAutoencoder.load(sae_path)[0], pool, [row], progress=False)
    return combined_scores(out.reconstruction_error[0], out.latent_l1[0]), out.latents[0]


def test_clip_knn_gives_the_most_similar_candidates_as_images(pool, records, tmp_path):
    sampler = ClipKnnSampler(str(pool.directory), store_dir=str(tmp_path))
    record = records[0]
    negatives = draw(sampler, record)
    row = pool.record_ids.index(record.id)
    best = np.argsort(-pool.similarities[row], kind="stable")[:3]
    expected = [load_image(pool.image_paths[pool.candidates[row, i]]) for i in best]
    assert [np.asarray(n.images[0]).tolist() for n in negatives] == [np.asarray(e).tolist() for e in expected]
    assert all(n.log_q is None and n.pixel_transform is None for n in negatives)
    assert not sampler.epoch_dependent


def test_sae_greedy_is_algorithm_1_on_the_sae_scores_whatever_the_seed(pool, sae_path, records, tmp_path):
    sampler = sae_sampler(pool, sae_path, tmp_path, diversity_weight=0.5)
    for record in records[:4]:
        scores, latents = sae_scores(pool, sae_path, pool.record_ids.index(record.id))
        expected = greedy_diverse(scores, latents, 3, diversity_weight=0.5).tolist()
        assert positions(sampler, record) == expected
        assert positions(sampler, record, seed=1, epoch=2) == expected
    assert not sampler.epoch_dependent


def test_sae_importance_draws_follow_seed_record_and_epoch(pool, sae_path, records, tmp_path):
    sampler = sae_sampler(pool, sae_path, tmp_path, select="importance", temperature=0.5, store=False)
    assert sampler.epoch_dependent
    record = records[1]
    scores, _ = sae_scores(pool, sae_path, pool.record_ids.index(record.id))
    key = SamplingKey(3, record.id, 1, "sae")
    indices, log_q = importance_sample(scores, 3, key.generator(), temperature=0.5)
    negatives = draw(sampler, record, seed=3, epoch=1)
    assert positions(sampler, record, seed=3, epoch=1) == indices.tolist()
    assert [n.log_q for n in negatives] == pytest.approx(log_q.tolist())
    again = sae_sampler(pool, sae_path, tmp_path, select="importance", temperature=0.5, store=False)
    assert positions(again, record, seed=3, epoch=1) == indices.tolist()
    by_seed = {tuple(positions(sampler, r, seed=s)) for r in records for s in (0, 1)}
    by_epoch = {tuple(positions(sampler, r, epoch=e)) for r in records for e in (0, 1)}
    assert len(by_seed) > len(records) and len(by_epoch) > len(records)


@pytest.mark.parametrize("select", ["greedy", "importance"])
def test_the_first_k_negatives_of_k_plus_one_are_the_k_negatives(pool, sae_path, records, tmp_path, select):
    sampler = sae_sampler(pool, sae_path, tmp_path, select=select, store=False)
    for record in records[:4]:
        assert positions(sampler, record, count=2) == positions(sampler, record, count=3)[:2]


def test_the_store_holds_every_draw_and_serves_it_back(pool, sae_path, records, tmp_path, monkeypatch):
    first = sae_sampler(pool, sae_path, tmp_path, select="importance")
    drawn = {r.id: positions(first, r, epoch=e) for r in records[:5] for e in (0, 1)}
    (path,) = tmp_path.glob("sae-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {(row["record_id"], row["epoch"], row["seed"], row["stream"]) for row in lines} == {
        (r.id, e, 0, "sae") for r in records[:5] for e in (0, 1)
    }
    assert all(len(row["images"]) == len(row["log_q"]) == 3 for row in lines)

    second = sae_sampler(pool, sae_path, tmp_path, select="importance")
    monkeypatch.setattr(second, "choose", lambda *args: pytest.fail("a stored draw was made again"))
    assert {r.id: positions(second, r, epoch=1) for r in records[:5]} == {
        r.id: drawn[r.id] for r in records[:5]
    }
    assert positions(second, records[0], count=2, epoch=1) == positions(first, records[0], epoch=1)[:2]
    sae_sampler(pool, sae_path, tmp_path, select="greedy").selection(
        records[0], 3, SamplingKey(0, "r00", 0, "sae")
    )
    assert len(list(tmp_path.glob("sae-*.jsonl"))) == 2  # another configuration, another file


def test_negatives_take_the_size_of_the_record_image(pool, records, tmp_path):
    sampler = ClipKnnSampler(str(pool.directory), store_dir=str(tmp_path))
    image = load_image(records[0].images[0]).resize((48, 40))
    negatives = sampler.negatives(records[0], [image], 2, 0, 0, Pool())
    assert [n.images[0].size for n in negatives] == [(48, 40)] * 2


def test_records_the_pool_cannot_serve_are_errors_naming_them(pool, records, tmp_path):
    sampler = ClipKnnSampler(str(pool.directory), store_dir=str(tmp_path))
    with pytest.raises(ValueError, match="record 'elsewhere' is not in the pool"):
        draw(sampler, replace(records[0], id="elsewhere"))
    with pytest.raises(ValueError, match="record 'r00': its image .* is not the pool's"):
        draw(sampler, replace(records[0], images=records[1].images))
    two = replace(records[0], images=records[0].images * 2)
    with pytest.raises(ValueError, match="record 'r00' has 2 images; negative_sampler=clip_knn replaces one"):
        sampler.negatives(two, [load_image(p) for p in two.images], 1, 0, 0, Pool())


def test_start_up_problems_name_pool_sae_and_candidates(pool, sae_path, tmp_path):
    assert SaeSampler().problems(3) == [
        "sae draws from a pool: set negative_sampler.pool=<directory of scripts/build_pool.py>"
    ]
    (missing,) = ClipKnnSampler(str(tmp_path / "none")).problems(3)
    assert "manifest.json' does not exist: build the pool with scripts/build_pool.py" in missing
    assert sae_sampler(pool, sae_path, tmp_path).problems(TOP_M) == []
    (too_few,) = sae_sampler(pool, sae_path, tmp_path).problems(TOP_M + 1)
    assert f"holds {TOP_M} candidates per record (top_m); the loss needs {TOP_M + 1}" in too_few
    (no_sae,) = sae_sampler(pool, tmp_path / "sae.pt", tmp_path).problems(3)
    assert no_sae.startswith(f"sae='{tmp_path / 'sae.pt'}': ") and "scripts/train_sae.py" in no_sae
    other = tmp_path / "other.pt"
    sae, _ = fit_sae(pool, latent_dim=4, epochs=1, progress=False)
    sae.save(other, pool_fingerprint="another pool", pool_dir="/elsewhere")
    (wrong,) = sae_sampler(pool, other, tmp_path).problems(3)
    assert "was trained on another pool ('/elsewhere')" in wrong


def test_a_changed_records_file_makes_the_pool_stale(embedder, clip_dir, gallery, tmp_path):
    records = tmp_path / "records.jsonl"
    rows = [json.loads(line) for line in (gallery / "records.jsonl").read_text().splitlines()]
    records.write_text(
        "".join(json.dumps({**r, "images": [str(gallery / r["images"][0])]}) + "\n" for r in rows)
    )
    built = build_pool(
        embedder, clip_dir, gallery / "images", records, tmp_path / "pool", top_m=3, progress=False
    )
    sampler = ClipKnnSampler(str(built.directory))
    assert sampler.problems(3) == []
    records.write_text(records.read_text().replace("Yes.", "Yes!"))
    (stale,) = sampler.problems(3)
    assert f"is stale: the records file it was built from, '{records}', changed" in stale
    records.unlink()
    assert "no longer exists" in sampler.problems(3)[0]


def test_preference_start_up_reports_the_sampler_problems_once(compose, tmp_path):
    cfg = compose(["experiment=misp_dpo_shapes", f"negative_sampler.pool={tmp_path / 'none'}"])
    problems = [p for p in PreferenceModule.problems(cfg) if "manifest.json" in p]
    assert len(problems) == 1 and problems[0].startswith(f"negative_sampler: pool='{tmp_path / 'none'}'")
    shared = ClipKnnSampler(str(tmp_path / "none"))
    plan = DataPlan(
        "misp_dpo",
        Requirements((CHOSEN, REJECTED, CHOSEN_NEGATIVE)),
        {"train": [CHOSEN, CHOSEN_NEGATIVE], "val": [CHOSEN, CHOSEN_NEGATIVE]},
        {"train": shared, "val": shared},
    )
    assert len(sampler_problems(plan)) == 1


def test_the_fingerprint_follows_pool_sae_and_selection_not_the_store(pool, sae_path, tmp_path):
    base = sae_sampler(pool, sae_path, tmp_path).fingerprint_fields()
    assert base["pool"] == pool.fingerprint and base["select"] == "greedy"
    assert sae_sampler(pool, sae_path, tmp_path / "elsewhere", store=False).fingerprint_fields() == base
    assert sae_sampler(pool, sae_path, tmp_path, diversity_weight=0.0).fingerprint_fields() != base
    assert (
        sae_sampler(pool, sae_path, tmp_path, temperature=9.0).fingerprint_fields() == base
    )  # greedy: unused
    other = tmp_path / "other.pt"
    sae, _ = fit_sae(pool, latent_dim=4, epochs=1, progress=False)
    sae.save(other, pool_fingerprint=pool.fingerprint)
    assert sae_sampler(pool, other, tmp_path).fingerprint_fields()["sae"] != base["sae"]
