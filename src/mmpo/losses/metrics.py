"""Per-branch diagnostics logged for every loss: log-probs, rewards, margins, accuracies, image reliance.

rewards/<branch>              beta * (log pi - log pi_ref)   (batch mean)
rewards/margins, accuracies   r(chosen) - r(rejected), share with r(chosen) > r(rejected)
rewards/conditional_margin    r(chosen | image) - r(chosen | corrupted image)   (mDPO's CoPO margin)
rewards/conditional_accuracy  share with r(chosen | image) > r(chosen | corrupted image)
image_reliance/logp_margin    log pi(chosen | image) - log pi(chosen | corrupted image)
image_reliance/accuracy       share of samples whose policy prefers the chosen response with the
                              real image over the corrupted one (no reference involved)
"""

from __future__ import annotations

from torch import Tensor

from mmpo.branches import CHOSEN, CHOSEN_CORRUPTED, REJECTED, LogProbs
from mmpo.losses.base import implicit_rewards


def preference_metrics(policy: LogProbs, reference: LogProbs | None, beta: float) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    rewards = implicit_rewards(policy, reference, beta)
    for branch, logp in policy.items():
        out[f"logps/{branch}"] = logp.detach().mean()
        out[f"rewards/{branch}"] = rewards[branch].detach().mean()
    if CHOSEN in policy and REJECTED in policy:
        margin = (rewards[CHOSEN] - rewards[REJECTED]).detach()
        out["rewards/margins"] = margin.mean()
        out["rewards/accuracies"] = (margin > 0).float().mean()
    if CHOSEN in policy and CHOSEN_CORRUPTED in policy:
        conditional = (rewards[CHOSEN] - rewards[CHOSEN_CORRUPTED]).detach()
        out["rewards/conditional_margin"] = conditional.mean()
        out["rewards/conditional_accuracy"] = (conditional > 0).float().mean()
        reliance = (policy[CHOSEN] - policy[CHOSEN_CORRUPTED]).detach()
        out["image_reliance/logp_margin"] = reliance.mean()
        out["image_reliance/accuracy"] = (reliance > 0).float().mean()
    return out
