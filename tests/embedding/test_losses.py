"""RPA (pairwise, listwise), symmetric InfoNCE with the extended pool, the lambda mix, and the DDP gather."""

from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from mmpo.embedding.contrastive import gather_with_grad, symmetric_info_nce
from mmpo.embedding.objective import CandidateSet, MapleLoss
from mmpo.embedding.rpa import candidate_similarities, listwise_rpa, pairwise_rpa, rpa_loss
from mmpo.losses import Loss, Requirements


def neg_log_sigmoid(x: float) -> float:
    return math.log1p(math.exp(-x))


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


# ---- RPA -------------------------------------------------------------------------------------------
def test_pairwise_by_hand_and_order_free():
    scores = torch.tensor([[2.0, 1.0, 0.0]])
    rewards = torch.tensor([[0.9, 0.5, 0.1]])
    # pairs (0,1): 0.4, (0,2): 0.8, (1,2): 0.4
    expected = 0.4 * neg_log_sigmoid(1) + 0.8 * neg_log_sigmoid(2) + 0.4 * neg_log_sigmoid(1)
    assert float(pairwise_rpa(scores, rewards)) == pytest.approx(expected)
    permutation = [2, 0, 1]
    assert float(pairwise_rpa(scores[:, permutation], rewards[:, permutation])) == pytest.approx(expected)


def test_listwise_by_hand():
    scores = torch.tensor([[0.0, 2.0, 1.0]])
    rewards = torch.tensor([[0.1, 0.9, 0.5]])  # ranking: candidate 1, 2, 0
    w0 = ((0.9 - 0.5) + (0.9 - 0.1)) / 2
    w1 = 0.5 - 0.1
    expected = -(w0 * (2 - lse(2, 1, 0)) + w1 * (1 - lse(1, 0)))
    assert float(listwise_rpa(scores, rewards)) == pytest.approx(expected)


def test_listwise_ties_keep_candidate_order():
    scores = torch.tensor([[0.3, 1.0, -0.5]])
    rewards = torch.tensor([[0.5, 0.5, 0.1]])  # candidates 0 and 1 tie: 0 ranks first
    w0 = (0.0 + 0.4) / 2
    w1 = 0.4
    expected = -(w0 * (0.3 - lse(0.3, 1.0, -0.5)) + w1 * (1.0 - lse(1.0, -0.5)))
    assert float(listwise_rpa(scores, rewards)) == pytest.approx(expected)


def test_listwise_with_one_negative_equals_pairwise():
    """K = 1: w_0 = alpha_0 - alpha_1 and the suffix softmax is sigma(s_0 - s_1)."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 2, generator=generator)
    rewards = torch.rand(6, 2, generator=generator)
    assert torch.allclose(listwise_rpa(scores, rewards), pairwise_rpa(scores, rewards))


@pytest.mark.parametrize("kind", ["listwise", "pairwise"])
def test_mask_equals_dropping_the_candidate(kind):
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 4, generator=generator, requires_grad=True)
    rewards = torch.rand(2, 4, generator=generator)
    mask = torch.tensor([[True, True, False, True], [True, False, True, True]])
    masked = rpa_loss(kind, scores, rewards, mask)
    rows = [rpa_loss(kind, scores[i : i + 1, mask[i]], rewards[i : i + 1, mask[i]]) for i in range(2)]
    assert torch.allclose(masked, torch.stack(rows).mean())
    masked.backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[~mask] == 0).all()


def test_candidate_similarities_scale_by_temperature():
    anchors = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    assert torch.allclose(candidate_similarities(anchors, candidates, 0.5), torch.tensor([[2.0, 1.2]]))


def test_rewards_carry_no_gradient():
    scores = torch.tensor([[1.0, 0.0]], requires_grad=True)
    rewards = torch.tensor([[0.8, 0.2]], requires_grad=True)
    listwise_rpa(scores, rewards).backward()
    assert rewards.grad is None


# ---- InfoNCE ---------------------------------------------------------------------------------------
IMAGES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TEXTS = torch.tensor([[1.0, 0.0], [0.6, 0.8]])


def test_symmetric_info_nce_by_hand():
    # logits = images @ texts.T = [[1, 0.6], [0, 0.8]]
    i2t = -((1 - lse(1, 0.6)) + (0.8 - lse(0, 0.8))) / 2
    t2i = -((1 - lse(1, 0)) + (0.8 - lse(0.6, 0.8))) / 2
    assert float(symmetric_info_nce(IMAGES, TEXTS, temperature=1.0)) == pytest.approx((i2t + t2i) / 2)
    logits = IMAGES @ TEXTS.T / 0.1
    official = (F.cross_entropy(logits, torch.arange(2)) + F.cross_entropy(logits.T, torch.arange(2))) / 2
    assert torch.allclose(symmetric_info_nce(IMAGES, TEXTS, temperature=0.1), official)


def test_extended_negatives_join_the_denominators():
    text_negative = torch.tensor([[[-1.0, 0.0]], [[0.0, 1.0]]])  # [B, K=1, D], one per anchor
    i2t = -((1 - lse(1, 0.6, -1, 0)) + (0.8 - lse(0, 0.8, 0, 1))) / 2
    t2i = -((1 - lse(1, 0)) + (0.8 - lse(0.6, 0.8))) / 2
    got = symmetric_info_nce(IMAGES, TEXTS, temperature=1.0, text_negatives=text_negative)
    assert float(got) == pytest.approx((i2t + t2i) / 2)
    absent = torch.zeros(2, 1, dtype=torch.bool)
    masked = symmetric_info_nce(IMAGES, TEXTS, 1.0, text_negatives=text_negative, text_negatives_mask=absent)
    assert torch.allclose(masked, symmetric_info_nce(IMAGES, TEXTS, 1.0))


# ---- the MAPLE mix ---------------------------------------------------------------------------------
def batch(seed: int, size: int = 4, negatives: int = 2, dim: int = 8):
    generator = torch.Generator().manual_seed(seed)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, dim, generator=generator), dim=-1)

    images, texts = unit(size), unit(size)
    image_candidates = torch.cat([images[:, None], unit(size, negatives)], 1)
    text_candidates = torch.cat([texts[:, None], unit(size, negatives)], 1)
    rewards = torch.rand(2, size, negatives + 1, generator=generator)
    return images, texts, image_candidates, text_candidates, rewards


def test_lambda_mixes_rpa_and_contrast():
    images, texts, image_c, text_c, rewards = batch(0)
    image_set, text_set = CandidateSet(image_c, rewards[0]), CandidateSet(text_c, rewards[1])
    pure_contrast = MapleLoss(weight=0.0, extended_negatives=False)(images, texts, image_set, text_set)
    assert torch.allclose(pure_contrast.loss, symmetric_info_nce(images, texts, 0.05))
    shuffled = MapleLoss(weight=0.0, extended_negatives=False)(
        images, texts, CandidateSet(image_c, rewards[0].flip(-1)), text_set
    )
    assert torch.equal(shuffled.loss, pure_contrast.loss)  # rewards only enter through RPA
    mixed = MapleLoss(weight=0.3, rpa_temperature=0.1)(images, texts, image_set, text_set)
    rpa_t2i = listwise_rpa(candidate_similarities(texts, image_c, 0.1), rewards[0])
    rpa_i2t = listwise_rpa(candidate_similarities(images, text_c, 0.1), rewards[1])
    extended = symmetric_info_nce(
        images, texts, 0.05, image_negatives=image_c[:, 1:], text_negatives=text_c[:, 1:]
    )
    assert torch.allclose(mixed.terms["rpa"], (rpa_t2i + rpa_i2t) / 2)
    assert torch.allclose(mixed.terms["contrast"], extended)
    assert torch.allclose(mixed.loss, 0.3 * (rpa_t2i + rpa_i2t) / 2 + 0.7 * extended)
    one_direction = MapleLoss(weight=1.0, rpa="pairwise", rpa_temperature=0.1)(images, texts, image_set)
    assert torch.allclose(
        one_direction.loss, pairwise_rpa(candidate_similarities(texts, image_c, 0.1), rewards[0])
    )


def test_maple_loss_options_are_checked():
    with pytest.raises(ValueError, match=r"allowed: \['listwise', 'pairwise'\]"):
        MapleLoss(rpa="triplet")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MapleLoss(weight=1.5)
    images, texts, *_ = batch(0)
    with pytest.raises(ValueError, match="needs image_candidates"):
        MapleLoss(weight=0.5)(images, texts)


def test_maple_loss_is_a_loss_of_the_embedding_module_kind():
    loss = MapleLoss()
    assert isinstance(loss, Loss)
    assert loss.requirements == Requirements((), reference=False, module="embedding")


def test_maple_metrics_by_hand():
    # two caption anchors with 3 image candidates each (column 0: the anchor's own image)
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    images = torch.tensor([[0.6, 0.8], [0.8, 0.6]])  # in batch: anchor 0 prefers image 1, anchor 1 image 0
    candidates = torch.tensor(
        [
            [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]],  # cosines 1.0, 0.8, 0.0: the positive first
            [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]],  # cosines 1.0, 1.0, 0.0: a tie, not strictly first
        ]
    )
    rewards = torch.tensor([[0.9, 0.2, 0.5], [0.9, 0.9, 0.1]])
    out = MapleLoss(weight=1.0)(images, texts, image_candidates=CandidateSet(candidates, rewards))
    metrics = {k: float(v) for k, v in out.metrics.items()}
    assert metrics["t2i/positive_top1"] == 0.5
    assert metrics["t2i/reward_positive_top1"] == 0.5  # anchor 1's reward ties too
    # preferred pairs: anchor 0 (0>1, 0>2, 2>1): similarities agree on 0>1, 0>2, not 2>1;
    # anchor 1 (0>2, 1>2): both agree
    assert metrics["t2i/reward_agreement"] == pytest.approx(4 / 5)
    assert metrics["i2t/in_batch_accuracy"] == 0.0 and metrics["t2i/in_batch_accuracy"] == 0.0
    assert "i2t/positive_top1" not in metrics


def test_maple_metrics_skip_masked_candidates():
    texts = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]]])  # the absent column is the closest
    rewards = torch.tensor([[0.9, 0.1, 0.0]])
    mask = torch.tensor([[True, True, False]])
    out = MapleLoss(weight=1.0)(texts, texts, image_candidates=CandidateSet(candidates, rewards, mask))
    assert float(out.metrics["t2i/positive_top1"]) == 1.0
    assert float(out.metrics["t2i/reward_agreement"]) == 1.0


# ---- DDP -------------------------------------------------------------------------------------------
WORLD = 2


def _rank_loss(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        tensors = batch(seed=3, size=2 * WORLD)
        local = [t[rank * 2 : (rank + 1) * 2].clone().requires_grad_(True) for t in tensors[:4]]
        rewards = tensors[4][:, rank * 2 : (rank + 1) * 2]
        out = MapleLoss(weight=0.4)(
            local[0], local[1], CandidateSet(local[2], rewards[0]), CandidateSet(local[3], rewards[1])
        )
        out.loss.backward()
        torch.save({"loss": out.loss.detach(), "grads": [t.grad for t in local]}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_is_identity_in_one_process():
    x = torch.randn(3, 4)
    assert gather_with_grad(x) is x


def test_ddp_gathered_loss_equals_the_global_batch_loss(tmp_path):
    """Two gloo ranks with half the batch each: their mean loss is the one-process loss of the whole
    batch, and each rank's gradient is W times the global gradient of its rows (DDP then averages)."""
    mp.spawn(_rank_loss, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    tensors = batch(seed=3, size=2 * WORLD)
    whole = [t.clone().requires_grad_(True) for t in tensors[:4]]
    out = MapleLoss(weight=0.4)(
        whole[0], whole[1], CandidateSet(whole[2], tensors[4][0]), CandidateSet(whole[3], tensors[4][1])
    )
    out.loss.backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert torch.allclose(torch.stack([r["loss"] for r in ranks]).mean(), out.loss, atol=1e-6)
    for r, result in enumerate(ranks):
        for mine, full in zip(result["grads"], whole, strict=True):
            assert torch.allclose(mine, WORLD * full.grad[r * 2 : (r + 1) * 2], atol=1e-6)
