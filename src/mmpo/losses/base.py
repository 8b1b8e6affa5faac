"""What every loss shares: its output type and the interface the module calls.

A loss is a pure function of two tables of per-branch sequence log-probs (policy and reference, each
``[batch]`` float32, summed over response tokens). It knows nothing of models, images or tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from mmpo.branches import Branch, LogProbs


@dataclass
class LossOutput:
    """The scalar to minimise and its terms (each logged as ``loss/<name>``)."""

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class PreferenceLoss(nn.Module):
    """Base class: subclasses set :attr:`branches` and implement :meth:`forward`."""

    name: str = "base"
    needs_reference: bool = True
    beta: float = 0.1

    @property
    def branches(self) -> tuple[Branch, ...]:
        raise NotImplementedError

    def forward(
        self, policy: LogProbs, reference: LogProbs | None, token_counts: LogProbs | None = None
    ) -> LossOutput:
        raise NotImplementedError

    def rewards(self, policy: LogProbs, reference: LogProbs | None) -> LogProbs:
        return implicit_rewards(policy, reference, self.beta)


def implicit_rewards(policy: LogProbs, reference: LogProbs | None, beta: float) -> LogProbs:
    """Implicit rewards ``r = beta * (log pi - log pi_ref)`` per branch (``beta * log pi`` without a
    reference)."""
    return {b: beta * log_ratio(policy, reference, b) for b in policy}


def sigmoid_preference(margin: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Per-sample ``-(1 - eps) * log sigma(m) - eps * log sigma(-m)`` (conservative DPO for eps > 0)."""
    loss = -F.logsigmoid(margin)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-margin)
    return loss


def log_ratio(policy: LogProbs, reference: LogProbs | None, branch: Branch) -> Tensor:
    """``log pi(branch) - log pi_ref(branch)``; the reference term is 0 for reference-free losses."""
    if reference is None:
        return policy[branch]
    return policy[branch] - reference[branch]
