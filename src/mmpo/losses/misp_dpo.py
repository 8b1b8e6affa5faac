"""MISP-DPO (arXiv 2509.25717, ICLR 2026; methods.md §4): a multi-negative image term and a text DPO term.

With log-ratios ``rho(b) = log pi(b) - log pi_ref(b)`` of the chosen response ``y_p`` under the positive
image ``m_p`` (``chosen@original``) and under each of the K negative images ``m_n^i``
(``chosen@negative[i]``, drawn by the ``negative_sampler``), and the rejected response ``y_n`` under the
positive image (``rejected@original``):

    a_i    = beta * ( rho(y_p | m_n^i) - rho(y_p | m_p) )                       §4.1, advantage of negative i
    L_img  = softplus( logsumexp_i (a_i + log w_i) ) = -log sigma( -log sum_i w_i exp(a_i) )
    L_text = -log sigma( beta * ( rho(y_p | m_p) - rho(y_n | m_p) ) )            §4.4, DPO with m_p fixed
    L      = L_img + lambda * L_text                                            paper: beta 0.5, K 3, lambda 1

``L_img`` is the Plackett-Luce probability that the positive image ranks above all K negatives, in DPO
form; the notes write it as a log-likelihood to maximise, the minimisation sign is [I]. At K = 1 with
``w = 1`` it is mDPO's CoPO term ``-log sigma(r(m_p, y_p) - r(m_n, y_p))``. Its gradient (Lemma 4.1) is

    grad L_img = beta * sigma( logsumexp_j (a_j + log w_j) ) * sum_i p_i * Delta_i,
    Delta_i    = grad log pi(y_p | m_n^i) - grad log pi(y_p | m_p),      p_i = softmax_i(a_i + log w_i),

a softmax-weighted combination of the per-negative correction directions.

Importance weights ``w_i`` (§4.2) apply when the sampler drew the negatives from a proposal ``q`` over its
candidate pool and handed ``log q_i`` on (``LossInputs.negative_log_q``, ``[B, K]``; ``negative_sampler=sae
select=importance``); otherwise ``w_i = 1``. ``importance`` (:data:`IMPORTANCE`) chooses the form:

- ``self_normalized`` (default, [I]): ``w_i = (1 / q_i) / ((1/K) sum_j 1 / q_j)``, weights of mean 1. ``p_i``
  are then the self-normalised importance weights ``exp(a_i) / q_i / sum_j exp(a_j) / q_j``, and
  ``sum_i w_i exp(a_i)`` is K times the self-normalised estimate of the mean of ``exp(a)`` over the pool:
  the objective of K negatives drawn uniformly. A uniform q gives exactly the plain objective.
- ``unnormalized``: ``w_i = 1 / q_i``, the form printed in the notes (``exp(a_i) / q_phi(m_n^i)``, no
  normalisation; whether the paper normalises or clips is [?]). Same direction, larger scale.
- ``off``: ``w_i = 1`` whatever the sampler hands on.

``lambda`` is ``text_weight``; with ``text_weight=0`` the rejected branch is not computed. Logged:
``loss/img``, ``loss/text``, ``misp/ess`` (the effective sample size ``1 / sum_i p_i^2`` of the weights, in
[1, K], batch mean) and ``misp/weight[i]`` (the batch mean of ``p_i``, the share of the gradient negative i
receives).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mmpo.branches import CHOSEN, REJECTED, Branch, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements, log_ratio

IMPORTANCE = ("self_normalized", "unnormalized", "off")


def negative_branches(count: int) -> tuple[Branch, ...]:
    """``chosen@negative[0..count-1]``."""
    return tuple(Branch("chosen", "negative", k) for k in range(count))


def importance_log_weights(log_q: Tensor, form: str) -> Tensor:
    """``log w_i`` ``[B, K]`` of the ``importance`` form ``form`` (module docstring) from ``log q`` ``[B, K]``."""
    if form == "unnormalized":
        return -log_q
    if form == "self_normalized":
        return -log_q - (torch.logsumexp(-log_q, dim=-1, keepdim=True) - math.log(log_q.shape[-1]))
    raise ValueError(f"loss.importance={form!r} has no weights; allowed: {list(IMPORTANCE)}")


def plackett_luce_image_loss(advantages: Tensor, log_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(softplus(logsumexp_i(a_i + log w_i)) [B], p = softmax_i(a_i + log w_i) [B, K])`` of ``a`` ``[B, K]``."""
    logits = advantages if log_weights is None else advantages + log_weights
    return F.softplus(torch.logsumexp(logits, dim=-1)), torch.softmax(logits.detach(), dim=-1)


class MISPDPOLoss(PreferenceLoss):
    """``L_img + text_weight * L_text`` over ``num_negatives`` negative images (module docstring)."""

    def __init__(
        self,
        beta: float = 0.5,
        num_negatives: int = 3,
        text_weight: float = 1.0,
        importance: str = "self_normalized",
    ):
        super().__init__()
        if int(num_negatives) < 1:
            raise ValueError(f"loss.num_negatives={num_negatives!r} must be >= 1")
        if importance not in IMPORTANCE:
            raise ValueError(f"loss.importance={importance!r}; allowed: {list(IMPORTANCE)}")
        self.beta = beta
        self.num_negatives = int(num_negatives)
        self.text_weight = text_weight
        self.importance = importance
        self.negatives = negative_branches(self.num_negatives)

    @property
    def requirements(self) -> Requirements:
        text = (REJECTED,) if self.text_weight else ()
        return Requirements((CHOSEN, *text, *self.negatives))

    def advantages(self, policy: LogProbs, reference: LogProbs | None) -> Tensor:
        """``a`` ``[B, K]``: ``beta * (rho(chosen@negative[i]) - rho(chosen@original))``."""
        positive = log_ratio(policy, reference, CHOSEN)
        return torch.stack(
            [self.beta * (log_ratio(policy, reference, b) - positive) for b in self.negatives], dim=-1
        )

    def log_weights(self, inputs: LossInputs) -> Tensor | None:
        if self.importance == "off" or inputs.negative_log_q is None:
            return None
        log_q = inputs.negative_log_q
        if log_q.shape[-1] != self.num_negatives:
            raise ValueError(
                f"the negative sampler handed log q of {log_q.shape[-1]} negatives; loss.num_negatives="
                f"{self.num_negatives}"
            )
        return importance_log_weights(log_q.float(), self.importance)

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        a = self.advantages(policy, reference)
        log_w = self.log_weights(inputs)
        image, weights = plackett_luce_image_loss(a, None if log_w is None else log_w.to(a.device))
        terms = {"img": image.mean()}
        loss = terms["img"]
        if self.text_weight:
            h = log_ratio(policy, reference, CHOSEN) - log_ratio(policy, reference, REJECTED)
            terms["text"] = (-F.logsigmoid(self.beta * h)).mean()
            loss = loss + self.text_weight * terms["text"]
        metrics = {"misp/ess": (1 / weights.square().sum(-1)).mean()}
        metrics |= {f"misp/weight[{k}]": weights[:, k].mean() for k in range(self.num_negatives)}
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()}, metrics)
