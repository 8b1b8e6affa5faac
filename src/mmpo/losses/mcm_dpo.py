"""MCM-DPO (Multifaceted Cross-Modal DPO, arXiv 2510.00647, ACM MM 2025; methods.md §2.2-2.3).

Every component contrasts the winner W = (c_w, m_w, y_w) (the record's context, image and chosen
alt-text) with one loser tuple; with ``rho(c, m, y) = log pi(y | x, c, m) - log pi_ref(y | x, c, m)``
(sequence sums) its margin is ``Delta_k = rho(W) - rho(L_k)``:

    k  component (framework figure)  loser L_k          weight w_k
    1  response                      (c_w, m_w, y_l)    lam   = 1.0
    2  image                         (c_w, m_l, y_w)    alpha = 0.5
    3  context                       (c_l, m_w, y_w)    alpha = 0.5
    4  context_response              (c_l, m_w, y_l)    gamma = 0.2
    5  image_response                (c_w, m_l, y_l)    gamma = 0.2
    6  context_image                 (c_l, m_l, y_w)    gamma = 0.2
    7  context_image_response        (c_l, m_l, y_l)    gamma = 0.2

``m_l`` is the record's first negative image (the paper's: forward-diffusion noise at t = 700,
``negative_sampler=diffusion_700``), ``c_l`` another record's context (``data.context_swap``), ``y_l``
the rejected response. ``components = n`` switches on components 1..n, in the order of the official
``use_cl_reward_num`` (1 is DPO, as the official ``use_cross_modal_loss=False``). Aggregations:

    single_sigmoid (default; the official LLAVADPOTrainer.mcmdpo_loss):
        L = -log sigma( beta * sum_k w_k Delta_k / Z )
    sum (ablation: one DPO loss per component):
        L = sum_k w_k * -log sigma( beta * Delta_k )

over the active components, ``Z = normalizer``, or the sum of the active weights when it is null (2.8
with all seven: the official ``para_norm``, which the official code keeps fixed when fewer components
are on; ``normalizer: 2.8`` reproduces that). The mapping of the code's weights (``para_r3`` = 1.0,
``para_r1`` = ``para_r2`` = 0.5, ``para_r4..7`` = 0.2) to the paper's lambda / alpha / gamma is
methods.md's [I]. With policy == reference every margin is 0: single_sigmoid gives log 2, sum
``Z log 2``. With only the response component on, single_sigmoid is DPO with ``beta * lam / Z``.

Logged: the loss (``loss/mcm_dpo``; with ``sum`` each component's unweighted term ``loss/<component>``),
each active component's reward margin ``margins/<component>`` (``beta * Delta_k``) and accuracy
``accuracies/<component>`` (share with ``Delta_k > 0``), and, from :class:`PreferenceLoss`, the rewards of
component 1 that the official code logs (``rewards/chosen@original`` = ``beta rho(W)``,
``rewards/rejected@original``, ``rewards/margins``, ``rewards/accuracies``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmpo.branches import CHOSEN, Branch, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements, log_ratio

LOSERS: dict[str, Branch] = {
    "response": Branch("rejected"),
    "image": Branch("chosen", "negative"),
    "context": Branch("chosen", context="swapped"),
    "context_response": Branch("rejected", context="swapped"),
    "image_response": Branch("rejected", "negative"),
    "context_image": Branch("chosen", "negative", context="swapped"),
    "context_image_response": Branch("rejected", "negative", context="swapped"),
}
"""The loser branch of each component, in the official incremental order (``components``)."""
COMPONENTS = tuple(LOSERS)
SINGLE, PAIRWISE = ("image", "context"), ("context_response", "image_response", "context_image")
AGGREGATIONS = ("single_sigmoid", "sum")


class MCMDPOLoss(PreferenceLoss):
    def __init__(
        self,
        beta: float = 0.1,
        lam: float = 1.0,
        alpha: float = 0.5,
        gamma: float = 0.2,
        components: int = 7,
        aggregation: str = "single_sigmoid",
        normalizer: float | None = None,
    ):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"loss.aggregation={aggregation!r}; allowed: {list(AGGREGATIONS)}")
        if not (isinstance(components, int) and 1 <= components <= len(COMPONENTS)):
            raise ValueError(
                f"loss.components={components!r}; allowed: 1..{len(COMPONENTS)} (components 1..n of "
                f"{list(COMPONENTS)})"
            )
        self.beta = beta
        self.aggregation = aggregation
        self.active = COMPONENTS[:components]
        self.weights = {
            name: lam if name == "response" else alpha if name in SINGLE else gamma for name in self.active
        }
        self.normalizer = sum(self.weights.values()) if normalizer is None else normalizer
        if self.normalizer <= 0:
            raise ValueError(
                f"loss.normalizer={normalizer!r} must be > 0 (null: the sum of the active weights)"
            )

    @property
    def requirements(self) -> Requirements:
        return Requirements((CHOSEN, *(LOSERS[name] for name in self.active)))

    def margins(self, policy: LogProbs, reference: LogProbs | None) -> dict[str, torch.Tensor]:
        """``Delta_k = rho(W) - rho(L_k)`` per active component, each ``[batch]``."""
        winner = log_ratio(policy, reference, CHOSEN)
        return {name: winner - log_ratio(policy, reference, LOSERS[name]) for name in self.active}

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        margins = self.margins(policy, reference)
        terms: dict[str, torch.Tensor] = {}
        if self.aggregation == "single_sigmoid":
            logit = sum(self.weights[name] * margin for name, margin in margins.items()) / self.normalizer
            loss = (-F.logsigmoid(self.beta * logit)).mean()
        else:
            for name, margin in margins.items():
                terms[name] = (-F.logsigmoid(self.beta * margin)).mean()
            loss = sum(self.weights[name] * term for name, term in terms.items())
        terms["mcm_dpo"] = loss
        metrics = {}
        for name, margin in margins.items():
            metrics[f"margins/{name}"] = (self.beta * margin).detach().mean()
            metrics[f"accuracies/{name}"] = (margin.detach() > 0).float().mean()
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()}, metrics)
