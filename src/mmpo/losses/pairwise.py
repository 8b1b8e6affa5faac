"""The DPO family of TRL's ``DPOTrainer``: losses of the chosen and rejected log-ratios of one pair.

With, per record (sequence log-probs, :mod:`mmpo.branches` ``chosen@original`` and ``rejected@original``),

    c = log pi(y_w|x) - log pi_ref(y_w|x)        r = log pi(y_l|x) - log pi_ref(y_l|x)        h = c - r

each class below is one per-pair function of (c, r) (its docstring gives it, with its paper); the loss is
its batch mean. The definitions are those of trl 1.16 (``DPOTrainer._compute_loss``, ``loss_type``) and
each option's name is TRL's ``loss_type`` and its config file's: ``loss=hinge`` is ``conf/loss/hinge.yaml``
(``_target_: mmpo.losses.pairwise.Hinge``), which holds the paper's defaults. TRL's ``sigmoid``, ``ipo``
and ``sft`` are ``loss=dpo``, ``loss=ipo loss.length_normalize=true`` and ``loss=sft``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mmpo.branches import CHOSEN, REJECTED, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements, sigmoid_preference


@dataclass(frozen=True)
class Pair:
    """What a per-pair function reads: the log-ratios and, for some, the raw margins and lengths."""

    chosen: Tensor
    """c = log pi(y_w|x) - log pi_ref(y_w|x), [batch]."""
    rejected: Tensor
    """r = log pi(y_l|x) - log pi_ref(y_l|x), [batch]."""
    policy_margin: Tensor
    """log pi(y_w|x) - log pi(y_l|x)."""
    reference_margin: Tensor
    """log pi_ref(y_w|x) - log pi_ref(y_l|x)."""
    chosen_tokens: Tensor | None
    rejected_tokens: Tensor | None

    @property
    def margin(self) -> Tensor:
        """h = c - r."""
        return self.chosen - self.rejected


def check_label_smoothing(eps: float, low_open: bool = False) -> None:
    if not ((0 < eps) if low_open else (0 <= eps)) or not eps < 0.5:
        allowed = "0 < eps < 0.5" if low_open else "0 <= eps < 0.5"
        raise ValueError(f"loss.label_smoothing={eps}; allowed: {allowed}")


class PairwiseLoss(PreferenceLoss):
    """Base of the losses of this module: ``per_pair(pair) -> [batch]``, averaged over the batch."""

    def __init__(self, beta: float = 0.1):
        super().__init__()
        self.beta = beta

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, REJECTED))

    def per_pair(self, pair: Pair) -> Tensor:
        raise NotImplementedError

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        counts = inputs.token_counts
        pair = Pair(
            chosen=policy[CHOSEN] - reference[CHOSEN],
            rejected=policy[REJECTED] - reference[REJECTED],
            policy_margin=policy[CHOSEN] - policy[REJECTED],
            reference_margin=reference[CHOSEN] - reference[REJECTED],
            chosen_tokens=counts.get(CHOSEN),
            rejected_tokens=counts.get(REJECTED),
        )
        return LossOutput(self.per_pair(pair).mean())


class Hinge(PairwiseLoss):
    """Hinge on the log-ratio margin, RSO's hinge-norm (Liu et al., ICLR 2024, arXiv 2309.06657, §4; the
    SLiC-HF calibration loss on reference-normalized likelihoods): ``relu(1 - beta h)``, the margin is
    1 / beta (paper: gamma = beta = 0.05)."""

    def per_pair(self, pair: Pair) -> Tensor:
        return torch.relu(1 - self.beta * pair.margin)


class Robust(PairwiseLoss):
    """Robust DPO (Chowdhury et al., ICML 2024, arXiv 2403.00409, Eq. 9): the unbiased loss under labels
    flipped with probability eps, ``[(1-eps) (-log sigma(beta h)) + eps log sigma(-beta h)] / (1 - 2 eps)``
    (paper: beta 0.1, eps 0.1)."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.1):
        super().__init__(beta)
        check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing

    def per_pair(self, pair: Pair) -> Tensor:
        eps, z = self.label_smoothing, self.beta * pair.margin
        return ((1 - eps) * -F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


class BCOPair(PairwiseLoss):
    """Pairwise binary-classifier optimization (Jung et al., 2024, arXiv 2404.04656): the implicit reward as
    the logit of a classifier of chosen (1) vs rejected (0), ``-log sigma(beta c) - log sigma(-beta r)``
    (paper: beta 0.01). The paper's reward shift delta (a running mean of the rewards) is not part of
    TRL's ``bco_pair`` since trl 1.0, nor of this one."""

    def per_pair(self, pair: Pair) -> Tensor:
        return -F.logsigmoid(self.beta * pair.chosen) - F.logsigmoid(-self.beta * pair.rejected)


class SPPOHard(PairwiseLoss):
    """SPPO with hard win probabilities (Wu et al., 2024, arXiv 2405.00675, Eq. 4.7 with P = 1 for the
    winner, 0 for the loser): ``(c - 1/(2 beta))^2 + (r + 1/(2 beta))^2`` (paper: beta = 1/eta = 0.001)."""

    def per_pair(self, pair: Pair) -> Tensor:
        return (pair.chosen - 0.5 / self.beta) ** 2 + (pair.rejected + 0.5 / self.beta) ** 2


class NCAPair(PairwiseLoss):
    """Noise-contrastive alignment for pairs (Chen et al., 2024, arXiv 2402.05369): absolute likelihoods,
    ``-log sigma(beta c) - 1/2 log sigma(-beta c) - 1/2 log sigma(-beta r)`` (paper: beta 0.01)."""

    def per_pair(self, pair: Pair) -> Tensor:
        c, r = self.beta * pair.chosen, self.beta * pair.rejected
        return -F.logsigmoid(c) - 0.5 * F.logsigmoid(-c) - 0.5 * F.logsigmoid(-r)


class APOZero(PairwiseLoss):
    """Anchored preference optimization, zero anchor (D'Oosterlinck et al., 2024, arXiv 2408.06266, Eq. 7):
    winners up, losers down, ``1 - sigma(beta c) + sigma(beta r)`` (paper: beta 0.1)."""

    def per_pair(self, pair: Pair) -> Tensor:
        return 1 - torch.sigmoid(self.beta * pair.chosen) + torch.sigmoid(self.beta * pair.rejected)


class APODown(PairwiseLoss):
    """Anchored preference optimization, down anchor (arXiv 2408.06266, Eq. 8): both down, losers more,
    ``sigma(beta c) + 1 - sigma(beta h)`` (paper: beta 0.1)."""

    def per_pair(self, pair: Pair) -> Tensor:
        return torch.sigmoid(self.beta * pair.chosen) + 1 - torch.sigmoid(self.beta * pair.margin)


class AOT(PairwiseLoss):
    """Alignment via optimal transport, paired (Melnyk et al., NeurIPS 2024, arXiv 2406.05882): stochastic
    dominance of the policy's margins over the reference's through their sorted batch quantiles,

        delta_(i) = sort(log pi(y_w) - log pi(y_l))_(i) - sort(log pi_ref(y_w) - log pi_ref(y_l))_(i)
        L_(i)     = -(1 - eps) log sigma(beta delta_(i)) - eps log sigma(-beta delta_(i))

    (paper: beta 0.01). It reads the whole (per-device) batch, so it depends on the batch size."""

    def __init__(self, beta: float = 0.01, label_smoothing: float = 0.0):
        super().__init__(beta)
        check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing

    def delta(self, pair: Pair) -> Tensor:
        return torch.sort(pair.policy_margin).values - torch.sort(pair.reference_margin).values

    def per_pair(self, pair: Pair) -> Tensor:
        return sigmoid_preference(self.beta * self.delta(pair), self.label_smoothing)


class AOTUnpaired(AOT):
    """AOT for unpaired data (arXiv 2406.05882): the sorted chosen log-ratios dominate the sorted rejected
    ones, ``delta_(i) = sort(c)_(i) - sort(r)_(i)``, same loss as :class:`AOT` (paper: beta 0.01)."""

    def delta(self, pair: Pair) -> Tensor:
        return torch.sort(pair.chosen).values - torch.sort(pair.rejected).values


class EXOPair(PairwiseLoss):
    """Efficient exact optimization, pairwise (Ji et al., ICML 2024, arXiv 2402.00856, Eq. 16): the reverse
    KL from the policy's pair distribution ``(sigma(beta h), sigma(-beta h))`` to the smoothed labels
    ``(1 - eps, eps)``,

        sigma(beta h) [log sigma(beta h) - log(1 - eps)] + sigma(-beta h) [log sigma(-beta h) - log eps]

    (paper: beta 0.1, eps 1e-3; eps > 0 is required)."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 1e-3):
        super().__init__(beta)
        check_label_smoothing(label_smoothing, low_open=True)
        self.label_smoothing = label_smoothing

    def per_pair(self, pair: Pair) -> Tensor:
        z, eps = self.beta * pair.margin, self.label_smoothing
        win = torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
        return win + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps))


class DiscoPOP(PairwiseLoss):
    """DiscoPOP, the log-ratio modulated loss (Lu et al., NeurIPS 2024, arXiv 2406.08414, Eq. 5): with
    ``z = beta h`` and ``m = sigma(z / tau)``, ``(1 - m) (-log sigma(z)) + m exp(-z)``
    (paper: beta 0.05, tau 0.05)."""

    def __init__(self, beta: float = 0.05, tau: float = 0.05):
        super().__init__(beta)
        if tau <= 0:
            raise ValueError(f"loss.tau={tau}; allowed: tau > 0")
        self.tau = tau

    def per_pair(self, pair: Pair) -> Tensor:
        z = self.beta * pair.margin
        modulation = torch.sigmoid(z / self.tau)
        return (1 - modulation) * -F.logsigmoid(z) + modulation * torch.exp(-z)


class SigmoidNorm(PairwiseLoss):
    """Length-normalized DPO (SimPO, Meng et al., NeurIPS 2024, arXiv 2405.14734, App. I "DPO w/ LN";
    Tulu 3, Lambert et al., 2024, arXiv 2411.15124, §4.3): ``-log sigma(beta (c / |y_w| - r / |y_l|))``
    with |y| the response tokens (Tulu 3: beta 5)."""

    def per_pair(self, pair: Pair) -> Tensor:
        if pair.chosen_tokens is None or pair.rejected_tokens is None:
            raise ValueError("loss=sigmoid_norm needs per-branch token counts")
        chosen = pair.chosen / pair.chosen_tokens.clamp(min=1)
        rejected = pair.rejected / pair.rejected_tokens.clamp(min=1)
        return -F.logsigmoid(self.beta * (chosen - rejected))
