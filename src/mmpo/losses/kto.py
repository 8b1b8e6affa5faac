"""KTO (Ethayarajh et al., ICML 2024, arXiv 2402.01306, Eq. 7): each response judged on its own against a
reference point, as prospect theory's value of a gain or a loss.

    r(y)     = log pi(y|x) - log pi_ref(y|x)
    z0       = max(0, mean over the batch of r(y' | x'))        (detached; mismatched input and output)
    L_D(y_w) = lambda_D * (1 - sigma(beta (r(y_w) - z0)))       (desirable)
    L_U(y_l) = lambda_U * (1 - sigma(beta (z0 - r(y_l))))       (undesirable)
    L        = mean over the 2B responses of the batch

Defaults: beta 0.1, lambda_D = lambda_U = 1 (paper §4, balanced data), as TRL's ``KTOTrainer``.

Unpaired data where the records allow: a record holds a chosen response and, here, a rejected one (the
branches of a batch are the same for every record), so each record gives one desirable and one undesirable
example, scored independently (TRL's conversion of paired data); records with an undesirable response only
cannot be written. The paper estimates z0 from outputs paired with inputs they do not belong to; TRL cycles
the completions within the batch. Our branches give the mismatched pair from the image side:
``reference_point: mismatched_image`` scores the chosen response under the record's first negative image
(``negative_sampler=random_image``: another record's image), ``zero`` sets z0 = 0. Under DDP z0 is the mean
over all ranks, as in TRL.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements, log_ratio

REFERENCE_POINTS = ("mismatched_image", "zero")


def global_mean(x: Tensor) -> Tensor:
    """The mean of a scalar over the ranks of an initialised process group (itself otherwise)."""
    if dist.is_available() and dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        return x / dist.get_world_size()
    return x


class KTOLoss(PreferenceLoss):
    def __init__(
        self,
        beta: float = 0.1,
        desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0,
        reference_point: str = "mismatched_image",
    ):
        super().__init__()
        if reference_point not in REFERENCE_POINTS:
            raise ValueError(f"loss.reference_point={reference_point!r}; allowed: {list(REFERENCE_POINTS)}")
        self.beta = beta
        self.desirable_weight, self.undesirable_weight = desirable_weight, undesirable_weight
        self.reference_point = reference_point

    @property
    def requirements(self) -> Requirements:
        if self.reference_point == "mismatched_image":
            return Requirements((CHOSEN, REJECTED, CHOSEN_NEGATIVE))
        return Requirements((CHOSEN, REJECTED))

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        if self.reference_point == "mismatched_image":
            kl = global_mean(log_ratio(policy, reference, CHOSEN_NEGATIVE).detach().mean()).clamp(min=0)
        else:
            kl = torch.zeros((), device=policy[CHOSEN].device)
        chosen, rejected = log_ratio(policy, reference, CHOSEN), log_ratio(policy, reference, REJECTED)
        desirable = self.desirable_weight * (1 - torch.sigmoid(self.beta * (chosen - kl)))
        undesirable = self.undesirable_weight * (1 - torch.sigmoid(self.beta * (kl - rejected)))
        loss = torch.cat([desirable, undesirable]).mean()
        terms = {"desirable": desirable.detach().mean(), "undesirable": undesirable.detach().mean()}
        return LossOutput(loss, terms, {"kto/reference_point": kl})
