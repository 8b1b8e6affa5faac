"""Losses that compose: a weighted sum of member losses, each one of the loss configs.

    L = sum_i w_i L_i                     (w_i = 1 for a member the weights do not name)

Members are loss configs placed under ``loss.members.<name>`` by Hydra's defaults list, so the run's
config holds each member's settings and the name is the config key. Named mixtures are configs of their
own (``conf/loss/mpo.yaml``, ``rpo.yaml``, ``mdpo_sft.yaml``); any other is written on the command line::

    python train.py loss=mix +loss@loss.members.dpo=dpo +loss@loss.members.sft=sft \\
        '+loss.weights={dpo: 1.0, sft: 0.005}'

A member of a named mixture is replaced the same way (``loss=mpo loss@loss.members.dpo=ipo``) and set as
usual (``loss=rpo loss.weights.sft=0.005 loss.members.dpo.beta=0.01``).

Requirements: the union of the members' branches (and token tables), a reference if any member needs one,
the members' module kind (one for all). Each member reads the same tables (a reference-free member gets no
reference); ``loss/<name>`` logs each member's loss and ``loss/<name>/<term>`` the terms of members with
several. Metrics: each name from the first member that reports it (the reward metrics use its beta).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from mmpo.branches import LogProbs
from mmpo.losses.base import Loss, LossInputs, LossOutput, Requirements


def union(groups) -> tuple:
    """The items of ``groups`` in first-seen order, each once."""
    return tuple(dict.fromkeys(item for group in groups for item in group))


class Mixture(Loss):
    def __init__(self, members: Mapping[str, Loss], weights: Mapping[str, float] | None = None):
        super().__init__()
        members, weights = dict(members or {}), dict(weights or {})
        if not members:
            raise ValueError(
                "loss.members is empty; add members with +loss@loss.members.<name>=<loss>, "
                "e.g. loss=mix +loss@loss.members.dpo=dpo +loss@loss.members.sft=sft"
            )
        strays = sorted(set(weights) - set(members))
        if strays:
            raise ValueError(
                f"loss.weights names {strays}, which are not members; members: {sorted(members)}"
            )
        not_losses = [name for name, member in members.items() if not isinstance(member, Loss)]
        if not_losses:
            raise ValueError(f"loss.members.{not_losses[0]} is not a loss config (it needs a _target_)")
        kinds = {member.requirements.module for member in members.values()}
        if len(kinds) > 1:
            raise ValueError(
                f"loss.members train different module kinds {sorted(kinds)}; a mixture needs one"
            )
        self.members = nn.ModuleDict(members)
        self.weights = {name: float(weights.get(name, 1.0)) for name in members}

    @property
    def requirements(self) -> Requirements:
        needs = [member.requirements for member in self.members.values()]
        return Requirements(
            union(n.branches for n in needs),
            reference=any(n.reference for n in needs),
            module=needs[0].module,
            token_logps=union(n.token_logps for n in needs),
            token_distributions=union(n.token_distributions for n in needs),
        )

    def forward(
        self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs | None = None
    ) -> LossOutput:
        inputs = inputs or LossInputs()
        total, terms, metrics = 0.0, {}, {}
        for name, member in self.members.items():
            out = member(policy, reference if member.requirements.reference else None, inputs)
            total = total + self.weights[name] * out.loss
            terms[name] = out.loss.detach()
            if len(out.terms) > 1:
                terms.update({f"{name}/{term}": value for term, value in out.terms.items()})
            for key, value in out.metrics.items():
                metrics.setdefault(key, value)
        return LossOutput(total, terms, metrics)
