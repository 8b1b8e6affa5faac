"""Ranking Preference Alignment (RPA): MAPLE's DPO-derived ranking losses on similarities (methods.md §3.4).

DPO with a uniform reference (which cancels ``pi_ref``) and ``beta log pi`` replaced by a scaled
similarity gives, for anchor ``i`` (a text for text-to-image, an image for image-to-text) and its
candidates ``c = 0..K`` (the positive and K hard negatives, §3.3)::

    s_ic = (z_i . z_c) / tau                       (tau = 1 / beta; cosine for unit-norm z)

The reward MLLM's alignment scores ``alpha_ic`` rank the candidates, ``alpha_{i,r_0} >= ... >=
alpha_{i,r_K}`` (§3.3 online construction), and with N anchors

    pairwise:  L = -(1/N) sum_i sum_{0<=k<l<=K} (alpha_{i,r_k} - alpha_{i,r_l}) log sigma(s_{i,r_k} - s_{i,r_l})

    listwise:  L = -(1/N) sum_i sum_{k=0}^{K-1} w_ik log( exp(s_{i,r_k}) / sum_{j=k}^{K} exp(s_{i,r_j}) )
               w_ik = (1/(K-k)) sum_{j=k+1}^{K} (alpha_{i,r_k} - alpha_{i,r_j})    ("average preference margin")

i.e. Plackett-Luce over every suffix of the ranking, each term weighted by the average margin of its
head over the rest. With K = 1 both reduce to ``-(alpha_0 - alpha_1) log sigma(s_0 - s_1)``.

The pairwise sum runs over all ordered pairs with ``alpha_a > alpha_b`` and weight ``alpha_a - alpha_b``,
so it needs no sort and tied candidates contribute nothing. The listwise ranking is a stable sort by
``alpha`` (ties keep candidate order). ``mask`` [N, K+1] (True = present) drops candidates of an
anchor with fewer than K; suffix sums, margins and pairs then run over the present ones. Rewards are
constants (no gradient flows into the scorer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

RPA_KINDS = ("listwise", "pairwise")


def candidate_similarities(anchors: Tensor, candidates: Tensor, temperature: float) -> Tensor:
    """``s[i, c] = anchors[i] . candidates[i, c] / temperature`` for anchors [N, D], candidates [N, C, D]."""
    if candidates.ndim != 3 or candidates.shape[0] != anchors.shape[0]:
        raise ValueError(
            f"candidates must be [N, C, D] with N = {anchors.shape[0]} anchors, got {tuple(candidates.shape)}"
        )
    return torch.einsum("nd,ncd->nc", anchors.float(), candidates.float()) / temperature


def _checked(scores: Tensor, rewards: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if scores.shape != rewards.shape or scores.ndim != 2:
        raise ValueError(
            f"similarity scores {tuple(scores.shape)} and rewards {tuple(rewards.shape)} must both be [N, C]"
        )
    present = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.bool()
    if present.shape != scores.shape:
        raise ValueError(f"candidate mask {tuple(present.shape)} must match the scores {tuple(scores.shape)}")
    return rewards.detach().float(), present


def pairwise_rpa(scores: Tensor, rewards: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pairwise RPA (module docstring) of similarity ``scores`` [N, C] and rewards ``alpha`` [N, C]."""
    rewards, present = _checked(scores, rewards, mask)
    margin = (rewards[:, :, None] - rewards[:, None, :]).clamp(min=0)
    margin = margin * (present[:, :, None] & present[:, None, :])
    log_sigma = F.logsigmoid(scores[:, :, None] - scores[:, None, :])
    return -(margin * log_sigma).sum((1, 2)).mean()


def listwise_rpa(scores: Tensor, rewards: Tensor, mask: Tensor | None = None) -> Tensor:
    """Listwise (suffix Plackett-Luce) RPA (module docstring) of ``scores`` [N, C] and ``alpha`` [N, C]."""
    rewards, present = _checked(scores, rewards, mask)
    order = rewards.masked_fill(~present, float("-inf")).argsort(dim=1, descending=True, stable=True)
    s = scores.float().gather(1, order)
    alpha = rewards.gather(1, order)
    valid = present.gather(1, order)
    # absent candidates get a finite floor rather than -inf, which would make logcumsumexp's backward NaN
    s_masked = s.masked_fill(~valid, torch.finfo(s.dtype).min)
    # log sum_{j>=k} exp(s_j): a reversed cumulative logsumexp over the ranking.
    suffix = s_masked.flip(1).logcumsumexp(1).flip(1)
    # w_k = mean over present j > k of (alpha_k - alpha_j)
    alpha_valid = alpha.masked_fill(~valid, 0.0)
    later_sum = alpha_valid.flip(1).cumsum(1).flip(1) - alpha_valid
    later_count = valid.flip(1).cumsum(1).flip(1) - valid.long()
    has_later = valid & (later_count > 0)
    weight = torch.where(has_later, alpha - later_sum / later_count.clamp(min=1), torch.zeros_like(alpha))
    log_prob = torch.where(has_later, s - suffix, torch.zeros_like(s))
    return -(weight * log_prob).sum(1).mean()


def rpa_loss(kind: str, scores: Tensor, rewards: Tensor, mask: Tensor | None = None) -> Tensor:
    """The RPA loss of ``kind`` in :data:`RPA_KINDS`."""
    if kind == "listwise":
        return listwise_rpa(scores, rewards, mask)
    if kind == "pairwise":
        return pairwise_rpa(scores, rewards, mask)
    raise ValueError(f"rpa kind {kind!r}; allowed: {list(RPA_KINDS)}")
