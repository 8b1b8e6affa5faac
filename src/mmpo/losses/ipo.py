"""IPO (Azar et al., 2024, Eq. 17): squared distance of the log-ratio margin to 1/(2 beta).

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]
    L = (h - 1 / (2 beta))^2

``length_normalize: true`` divides each log-prob by its response length first (what TRL's ``ipo`` does);
the default follows the paper's sequence log-likelihoods. With policy == reference, L = 1 / (4 beta^2).
"""

from __future__ import annotations

from mmpo.branches import CHOSEN, REJECTED, Branch, LogProbs
from mmpo.losses.base import LossOutput, PreferenceLoss


class IPOLoss(PreferenceLoss):
    name = "ipo"

    def __init__(self, beta: float = 0.1, length_normalize: bool = False):
        super().__init__()
        self.beta = beta
        self.length_normalize = length_normalize

    @property
    def branches(self) -> tuple[Branch, ...]:
        return (CHOSEN, REJECTED)

    def forward(self, policy: LogProbs, reference: LogProbs | None, token_counts: LogProbs | None = None):
        if self.length_normalize:
            if token_counts is None:
                raise ValueError("loss.length_normalize=true needs per-branch token counts")
            policy = {b: policy[b] / token_counts[b] for b in self.branches}
            reference = {b: reference[b] / token_counts[b] for b in self.branches}
        h = (policy[CHOSEN] - reference[CHOSEN]) - (policy[REJECTED] - reference[REJECTED])
        loss = ((h - 1 / (2 * self.beta)) ** 2).mean()
        return LossOutput(loss, {"ipo": loss.detach()})
