"""ORPO (Hong et al., EMNLP 2024, arXiv 2403.07691, Eqs. 2-7): reference-free SFT plus an odds-ratio
preference term, in one stage.

    p(y|x)  = exp( log pi(y|x) / |y| )                   (the mean token log-prob)
    odds(y) = p / (1 - p)
    L_SFT   = - sum_i log pi(y_w^i|x^i) / sum_i |y_w^i|   (token-mean NLL of the chosen responses)
    L_OR    = - log sigma( log odds(y_w) - log odds(y_l) )
    L       = L_SFT + lambda * L_OR

Default lambda = 0.1 (Table 7, Mistral-ORPO-beta; TRL's ``beta``). TRL's ``ORPOTrainer`` takes the NLL
over the prompt tokens too; the paper's (and this) NLL is over the response.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmpo.branches import CHOSEN, REJECTED, LogProbs
from mmpo.losses.base import Loss, LossInputs, LossOutput, Requirements
from mmpo.losses.metrics import logp_metrics
from mmpo.losses.sft import chosen_nll


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for x <= 0, stable on both sides of -log 2 (Maechler, 2012)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


class ORPOLoss(Loss):
    def __init__(self, odds_ratio_weight: float = 0.1):
        super().__init__()
        self.odds_ratio_weight = odds_ratio_weight

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, REJECTED), reference=False)

    def forward(
        self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs | None = None
    ) -> LossOutput:
        counts = (inputs or LossInputs()).token_counts
        if REJECTED not in counts:
            raise ValueError("loss=orpo needs per-branch token counts")
        nll = chosen_nll(policy, counts)
        chosen = policy[CHOSEN] / counts[CHOSEN].clamp(min=1)
        rejected = policy[REJECTED] / counts[REJECTED].clamp(min=1)
        log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
        odds_ratio = -F.logsigmoid(log_odds).mean()
        metrics = {**logp_metrics(policy), "log_odds_ratio": log_odds.detach().mean()}
        terms = {"nll": nll.detach(), "odds_ratio": odds_ratio.detach()}
        return LossOutput(nll + self.odds_ratio_weight * odds_ratio, terms, metrics)
