"""IPO (Azar et al., 2024, Eq. 17): squared distance of the log-ratio margin to 1/(2 beta).

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]
    L = (h - 1 / (2 beta))^2

``length_normalize: true`` divides each log-prob by its response length first (what TRL's ``ipo`` does);
the default follows the paper's sequence log-likelihoods. With policy == reference, L = 1 / (4 beta^2).
"""

from __future__ import annotations

from mmpo.branches import CHOSEN, REJECTED, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements


class IPOLoss(PreferenceLoss):
    def __init__(self, beta: float = 0.1, length_normalize: bool = False):
        super().__init__()
        self.beta = beta
        self.length_normalize = length_normalize

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, REJECTED))

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        if self.length_normalize:
            if not inputs.token_counts:
                raise ValueError("loss.length_normalize=true needs per-branch token counts")
            counts = inputs.token_counts
            policy = {b: policy[b] / counts[b] for b in (CHOSEN, REJECTED)}
            reference = {b: reference[b] / counts[b] for b in (CHOSEN, REJECTED)}
        h = (policy[CHOSEN] - reference[CHOSEN]) - (policy[REJECTED] - reference[REJECTED])
        loss = ((h - 1 / (2 * self.beta)) ** 2).mean()
        return LossOutput(loss, {"ipo": loss.detach()})
