"""Supervised fine-tuning (the first stage): token-level negative log-likelihood of the chosen response.

    L = - sum_i log pi(y_w^i | x^i) / sum_i |y_w^i|

(the mean over all response tokens in the batch). Reference-free; it has no implicit reward, so its
metrics are the log-probs only.
"""

from __future__ import annotations

from torch import Tensor

from mmpo.branches import CHOSEN, LogProbs
from mmpo.losses.base import Loss, LossInputs, LossOutput, Requirements
from mmpo.losses.metrics import logp_metrics


class SFTLoss(Loss):
    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN,), reference=False)

    def forward(
        self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs | None = None
    ) -> LossOutput:
        loss = chosen_nll(policy, (inputs or LossInputs()).token_counts)
        return LossOutput(loss, {"nll": loss.detach()}, logp_metrics(policy))


def chosen_nll(policy: LogProbs, counts: LogProbs) -> Tensor:
    """``- sum_i log pi(y_w^i | x^i) / sum_i |y_w^i|``, the token-mean NLL of the batch's chosen responses."""
    if CHOSEN not in counts:
        raise ValueError("the token-mean NLL of the chosen responses needs per-branch token counts")
    return -policy[CHOSEN].sum() / counts[CHOSEN].sum().clamp(min=1)
