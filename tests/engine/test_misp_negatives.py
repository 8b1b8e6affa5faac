"""MISP-DPO's K retrieved negatives through the engine: selected once per record by the data set, and the
``chosen@negative[k]`` log-probs of every engine mode equal a separate forward of the chosen response with
the k-th negative as the record's own image."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from mmpo.branches import CHOSEN, REJECTED
from mmpo.data.collator import PreferenceCollator
from mmpo.data.examples import PreferenceDataset
from mmpo.engine.forward import MODES
from mmpo.losses.misp_dpo import negative_branches
from mmpo.negatives import SaeSampler
from mmpo.negatives.base import SamplingKey
from mmpo.retrieval.clip import ClipEmbedder
from mmpo.retrieval.pool import build_pool
from mmpo.retrieval.sae import fit_sae
from mmpo.retrieval.tiny_clip import save_tiny_clip

from .conftest import collate, make_policy, mixed_records
from .test_modes import LOGP_TOL, assert_same, run

K = 3


@pytest.fixture(scope="module")
def pool_dir(shapes_dir, tmp_path_factory):
    """A pool of every image of the shapes world against its training records, and its SAE."""
    root = tmp_path_factory.mktemp("misp_pool")
    clip = save_tiny_clip(root / "clip")
    pool = build_pool(
        ClipEmbedder.from_path(clip), clip, shapes_dir / "images", shapes_dir / "train.jsonl", root / "pool",
        top_m=6, progress=False,
    )  # fmt: skip
    sae, _ = fit_sae(pool, latent_dim=8, epochs=1, progress=False)
    (root / "pool" / "sae").mkdir()
    sae.save(root / "pool" / "sae" / "sae.pt", pool_fingerprint=pool.fingerprint)
    return root / "pool"


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_k_negatives_are_drawn_once_per_record_and_score_as_separate_forwards(
    family, records, pool_dir, tmp_path
):
    policy, processor, fam = make_policy(family)
    sampler = SaeSampler(str(pool_dir), store_dir=str(tmp_path))
    assert sampler.problems(K) == []
    calls, choose = Counter(), sampler.choose

    def counted(row, count, generator):
        calls[row] += 1
        return choose(row, count, generator)

    sampler.choose = counted
    chosen = mixed_records(records, 3)
    branches = (CHOSEN, REJECTED, *negative_branches(K))
    dataset = PreferenceDataset(chosen, sampler, K, seed=0)
    batch = PreferenceCollator(processor, fam, branches)([dataset[i] for i in range(len(dataset))])
    assert sorted(calls.values()) == [1] * len(chosen)  # one selection of K per record

    results = {mode: run(policy, batch, mode) for mode in MODES if mode != "auto"}
    for result in results.values():
        assert_same(result, results["naive"])
    selections = [sampler.selection(r, K, SamplingKey(0, r.id, 0, "sae")).images for r in chosen]
    assert len({image for images in selections for image in images}) > K  # records differ in negatives
    for k, branch in enumerate(negative_branches(K)):
        alone = [replace(r, images=[images[k]]) for r, images in zip(chosen, selections, strict=True)]
        separate, _, _ = run(policy, collate(processor, fam, alone, (CHOSEN,)), "naive")
        assert not torch.allclose(separate[CHOSEN], results["naive"][0][CHOSEN])  # another image
        for logps, _, _ in results.values():
            torch.testing.assert_close(logps[branch], separate[CHOSEN], **LOGP_TOL)
    assert sorted(calls.values()) == [1] * len(chosen)  # the stored selections served the look-ups
