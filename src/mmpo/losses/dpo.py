"""DPO (Rafailov et al., 2023, Eq. 7) with conservative label smoothing (cDPO).

    h   = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]
    L   = -(1 - eps) * log sigma(beta * h) - eps * log sigma(-beta * h)

With policy == reference, h = 0 and L = log 2 for every eps.
"""

from __future__ import annotations

from mmpo.branches import CHOSEN, REJECTED, LogProbs
from mmpo.losses.base import (
    LossInputs,
    LossOutput,
    PreferenceLoss,
    Requirements,
    log_ratio,
    sigmoid_preference,
)


class DPOLoss(PreferenceLoss):
    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"loss.label_smoothing={label_smoothing}; allowed: 0 <= eps < 0.5")
        self.beta = beta
        self.label_smoothing = label_smoothing

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, REJECTED))

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        h = log_ratio(policy, reference, CHOSEN) - log_ratio(policy, reference, REJECTED)
        loss = sigmoid_preference(self.beta * h, self.label_smoothing).mean()
        return LossOutput(loss, {"dpo": loss.detach()})
