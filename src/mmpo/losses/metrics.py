"""Per-branch diagnostics the losses return with their terms: log-probs, rewards, margins, accuracies,
image reliance (every metric of a branch the tables hold, whether or not the loss reads it).

logps/<branch>                log pi, batch mean
rewards/<branch>              beta * (log pi - log pi_ref)   (batch mean)
rewards/margins, accuracies   r(chosen) - r(rejected), share with r(chosen) > r(rejected)
rewards/conditional_margin    r(chosen | image) - r(chosen | negative image)   (mDPO's CoPO margin)
rewards/conditional_accuracy  share with r(chosen | image) > r(chosen | negative image)
image_reliance/logp_margin    log pi(chosen | image) - log pi(chosen | negative image)
image_reliance/accuracy       share of samples whose policy prefers the chosen response with the
                              real image over the first negative one (no reference involved)
"""

from __future__ import annotations

from torch import Tensor

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, Branch, LogProbs


def log_ratio(policy: LogProbs, reference: LogProbs | None, branch: Branch) -> Tensor:
    """``log pi(branch) - log pi_ref(branch)``; the reference term is 0 for reference-free losses."""
    if reference is None:
        return policy[branch]
    return policy[branch] - reference[branch]


def implicit_rewards(policy: LogProbs, reference: LogProbs | None, beta: float) -> LogProbs:
    """Implicit rewards ``r = beta * (log pi - log pi_ref)`` per branch (``beta * log pi`` without a
    reference)."""
    return {b: beta * log_ratio(policy, reference, b) for b in policy}


def logp_metrics(policy: LogProbs) -> dict[str, Tensor]:
    return {f"logps/{branch}": logp.detach().mean() for branch, logp in policy.items()}


def preference_metrics(policy: LogProbs, reference: LogProbs | None, beta: float) -> dict[str, Tensor]:
    out = logp_metrics(policy)
    rewards = implicit_rewards(policy, reference, beta)
    for branch in policy:
        out[f"rewards/{branch}"] = rewards[branch].detach().mean()
    if CHOSEN in policy and REJECTED in policy:
        margin = (rewards[CHOSEN] - rewards[REJECTED]).detach()
        out["rewards/margins"] = margin.mean()
        out["rewards/accuracies"] = (margin > 0).float().mean()
    if CHOSEN in policy and CHOSEN_NEGATIVE in policy:
        conditional = (rewards[CHOSEN] - rewards[CHOSEN_NEGATIVE]).detach()
        out["rewards/conditional_margin"] = conditional.mean()
        out["rewards/conditional_accuracy"] = (conditional > 0).float().mean()
        reliance = (policy[CHOSEN] - policy[CHOSEN_NEGATIVE]).detach()
        out["image_reliance/logp_margin"] = reliance.mean()
        out["image_reliance/accuracy"] = (reliance > 0).float().mean()
    return out
