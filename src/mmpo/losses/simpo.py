"""SimPO (Meng et al., NeurIPS 2024, arXiv 2405.14734, Eq. 6): reference-free, length-normalized, with a
target reward margin.

    L = -log sigma( beta / |y_w| * log pi(y_w|x) - beta / |y_l| * log pi(y_l|x) - gamma )

|y| counts response tokens. Defaults: the paper's Llama-3-Instruct setting (App. B): beta 2.5,
gamma / beta = 0.55, so gamma = 1.375 (what TRL's ``CPOTrainer(loss_type="simpo", cpo_alpha=0)``
computes). No reference: the reward metrics are ``beta * log pi`` of the sequences.
"""

from __future__ import annotations

from mmpo.branches import CHOSEN, REJECTED, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements, sigmoid_preference


class SimPOLoss(PreferenceLoss):
    def __init__(self, beta: float = 2.5, gamma: float = 1.375):
        super().__init__()
        self.beta, self.gamma = beta, gamma

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, REJECTED), reference=False)

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        counts = inputs.token_counts
        if CHOSEN not in counts or REJECTED not in counts:
            raise ValueError("loss=simpo needs per-branch token counts")
        chosen = policy[CHOSEN] / counts[CHOSEN].clamp(min=1)
        rejected = policy[REJECTED] / counts[REJECTED].clamp(min=1)
        return LossOutput(sigmoid_preference(self.beta * (chosen - rejected) - self.gamma).mean())
