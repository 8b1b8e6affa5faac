"""Supervised fine-tuning (the first stage): token-level negative log-likelihood of the chosen response.

    L = - sum_i log pi(y_w^i | x^i) / sum_i |y_w^i|

(the mean over all response tokens in the batch). Reference-free.
"""

from __future__ import annotations

from mmpo.branches import CHOSEN, Branch, LogProbs
from mmpo.losses.base import LossOutput, PreferenceLoss


class SFTLoss(PreferenceLoss):
    name = "sft"
    needs_reference = False

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta  # only scales the logged "rewards" (beta * log pi); the loss does not use it

    @property
    def branches(self) -> tuple[Branch, ...]:
        return (CHOSEN,)

    def forward(self, policy: LogProbs, reference: LogProbs | None, token_counts: LogProbs | None = None):
        if token_counts is None:
            raise ValueError("the sft loss needs per-branch token counts")
        loss = -policy[CHOSEN].sum() / token_counts[CHOSEN].sum().clamp(min=1)
        return LossOutput(loss, {"nll": loss.detach()})
