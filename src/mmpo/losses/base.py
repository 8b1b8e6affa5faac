"""What every loss shares: what it declares it needs, what it reads, what it returns.

A loss is a pure function of two tables of per-branch sequence log-probs (policy and reference, each
``[batch]`` float32, summed over response tokens) and a few batch-level inputs (:class:`LossInputs`). It
knows nothing of models, images or tokenizers. It declares its :class:`Requirements`; the start-up checks
and the data pipeline read them, and nothing outside the loss knows which paper it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from mmpo.branches import Branch, LogProbs, TokenTables, negatives_needed, rejected_needed
from mmpo.losses.metrics import implicit_rewards, log_ratio, preference_metrics


@dataclass(frozen=True)
class Requirements:
    """What a loss needs from the rest of the run.

    ``branches`` decides the rows the data pipeline builds; how many negative images and rejected responses
    each record must have, and whether a context pool is needed, follow from it (:attr:`negatives`,
    :attr:`rejected`, :attr:`context_pool`). ``reference``: whether the loss reads reference log-probs.
    ``module``: the module kind that trains it (``conf/module/<kind>.yaml``).

    Losses with token-level terms also name the branches whose per-token log-probs they read
    (``token_logps``, in :attr:`LossInputs.policy_tokens` / ``reference_tokens``) and, among those, the
    branches whose full-vocabulary log-probs at each response position they read (``token_distributions``,
    ``[batch, T, V]`` per branch). Without them the engine returns sequence sums only (its fast path).
    """

    branches: tuple[Branch, ...]
    reference: bool = True
    module: str = "preference"
    token_logps: tuple[Branch, ...] = ()
    token_distributions: tuple[Branch, ...] = ()

    def __post_init__(self) -> None:
        unread = [str(b) for b in self.token_logps if b not in self.branches]
        if unread:
            raise ValueError(f"Requirements.token_logps names branches the loss does not read: {unread}")
        untokened = [str(b) for b in self.token_distributions if b not in self.token_logps]
        if untokened:
            raise ValueError(f"Requirements.token_distributions must be among token_logps: {untokened}")

    @property
    def negatives(self) -> int:
        return negatives_needed(self.branches)

    @property
    def rejected(self) -> int:
        return rejected_needed(self.branches)

    @property
    def context_pool(self) -> bool:
        return any(b.context == "swapped" for b in self.branches)


@dataclass(frozen=True)
class LossInputs:
    """What a loss may read besides the two log-prob tables."""

    token_counts: LogProbs = field(default_factory=dict)
    """Response tokens per branch and record (length normalisation, token-mean NLL)."""
    negative_log_q: Tensor | None = None
    """``[batch, K]`` log q of each record's negatives, when the negative sampler weights its draws."""
    policy_tokens: TokenTables = field(default_factory=dict)
    """Per-token log-probs of the branches in ``Requirements.token_logps`` (policy, with grad)."""
    reference_tokens: TokenTables = field(default_factory=dict)
    """The same for the reference (empty for reference-free losses)."""


@dataclass
class LossOutput:
    """The scalar to minimise, its terms (each logged as ``loss/<name>``) and the loss's own metrics
    (rewards, margins, accuracies of the branches it reads; logged as they are named)."""

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Loss(nn.Module):
    """Base class of every loss: :attr:`requirements` and ``forward(policy, reference, inputs)``."""

    @property
    def requirements(self) -> Requirements:
        raise NotImplementedError

    def forward(
        self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs | None = None
    ) -> LossOutput:
        raise NotImplementedError


class PreferenceLoss(Loss):
    """Base class of the losses with implicit rewards ``r = beta * (log pi - log pi_ref)``: subclasses set
    :attr:`requirements` and implement :meth:`loss`; :meth:`forward` adds the reward metrics of every branch
    in the tables (validation may score more branches than the loss reads, e.g. image reliance)."""

    beta: float = 0.1

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        raise NotImplementedError

    def forward(
        self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs | None = None
    ) -> LossOutput:
        out = self.loss(policy, reference, inputs or LossInputs())
        out.metrics = {**preference_metrics(policy, reference, self.beta), **out.metrics}
        return out

    def rewards(self, policy: LogProbs, reference: LogProbs | None) -> LogProbs:
        return implicit_rewards(policy, reference, self.beta)


def sigmoid_preference(margin: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Per-sample ``-(1 - eps) * log sigma(m) - eps * log sigma(-m)`` (conservative DPO for eps > 0)."""
    loss = -F.logsigmoid(margin)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-margin)
    return loss


__all__ = [
    "Loss",
    "LossInputs",
    "LossOutput",
    "PreferenceLoss",
    "Requirements",
    "implicit_rewards",
    "log_ratio",
    "sigmoid_preference",
]
