"""A loss defined outside ``src/`` (the seam a user's own loss goes through): three negative images and a
second rejected response, with its own requirement declaration.

    L = mean_i [ softplus(logsumexp_k a_ik) ] - mean_i log sigma(beta * (h_i(rejected[1])))
    a_ik = beta * ( log-ratio(chosen@negative[k]) - log-ratio(chosen@original) )
    h_i(r) = log-ratio(chosen@original) - log-ratio(r@original)

With policy == reference every a_ik = 0 and h = 0, so L = softplus(log 3) + log 2 = log 4 + log 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmpo.branches import CHOSEN, Branch
from mmpo.losses import LossOutput, PreferenceLoss, Requirements
from mmpo.losses.base import log_ratio

NEGATIVES = tuple(Branch("chosen", "negative", k) for k in range(3))
SECOND_REJECTED = Branch("rejected", j=1)


class TripleNegativeLoss(PreferenceLoss):
    def __init__(self, beta: float = 0.1):
        super().__init__()
        self.beta = beta

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, SECOND_REJECTED, *NEGATIVES))

    def loss(self, policy, reference, inputs) -> LossOutput:
        positive = log_ratio(policy, reference, CHOSEN)
        a = torch.stack([self.beta * (log_ratio(policy, reference, b) - positive) for b in NEGATIVES], -1)
        image = F.softplus(torch.logsumexp(a, -1)).mean()
        text = -F.logsigmoid(self.beta * (positive - log_ratio(policy, reference, SECOND_REJECTED))).mean()
        return LossOutput(image + text, {"image": image.detach(), "text": text.detach()})
