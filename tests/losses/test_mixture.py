"""Losses that compose: a mixture is the weighted sum of its members (value and gradient), its requirements
are the union of theirs, each member's terms are logged under its name, and with policy == reference every
member keeps its known value."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.config import ConfigError
from mmpo.losses import (
    CHiPLoss,
    DPOLoss,
    Loss,
    LossInputs,
    MDPOLoss,
    Mixture,
    Requirements,
    SFTLoss,
    SimPOLoss,
    build_loss,
)
from mmpo.losses.pairwise import BCOPair
from mmpo.train import check_run, run

LOG2 = math.log(2)


def tables(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    branches = (CHOSEN, REJECTED, CHOSEN_NEGATIVE)
    policy = {b: -(5 + 10 * torch.rand(4, generator=g)).requires_grad_(True) for b in branches}
    reference = {b: v.detach() + torch.randn(4, generator=g) for b, v in policy.items()}
    counts = {b: torch.randint(3, 9, (4,), generator=g) for b in branches}
    return policy, reference, LossInputs(counts)


def test_a_mixture_is_the_weighted_sum_of_its_members():
    members = {"dpo": DPOLoss(beta=0.2), "mdpo": MDPOLoss(), "sft": SFTLoss(), "simpo": SimPOLoss()}
    weights = {"dpo": 0.5, "mdpo": 2.0, "sft": 0.25}  # simpo: 1 by default
    mixture = Mixture(members, weights)
    policy, reference, inputs = tables()
    out = mixture(policy, reference, inputs)
    parts = {
        "dpo": members["dpo"](policy, reference, inputs),
        "mdpo": members["mdpo"](policy, reference, inputs),
        "sft": members["sft"](policy, None, inputs),
        "simpo": members["simpo"](policy, None, inputs),  # reference-free members get no reference
    }
    expected = sum(weights.get(name, 1.0) * part.loss for name, part in parts.items())
    torch.testing.assert_close(out.loss, expected)
    got = torch.autograd.grad(out.loss, list(policy.values()), retain_graph=True)
    want = torch.autograd.grad(expected, list(policy.values()))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # each member's loss under its name, the terms of a member with several under name/term
    assert set(out.terms) == {"dpo", "mdpo", "sft", "simpo", "mdpo/dpo", "mdpo/copo", "mdpo/ancpo"}
    for name, part in parts.items():
        torch.testing.assert_close(out.terms[name], part.loss.detach())
    torch.testing.assert_close(out.terms["mdpo/copo"], parts["mdpo"].terms["copo"])
    # metrics: the first member's (dpo, beta 0.2)
    torch.testing.assert_close(out.metrics["rewards/margins"], parts["dpo"].metrics["rewards/margins"])


def test_requirements_are_the_union_and_the_reference_the_or():
    free = Mixture({"sft": SFTLoss(), "simpo": SimPOLoss()})
    assert free.requirements == Requirements((CHOSEN, REJECTED), reference=False)
    both = Mixture({"sft": SFTLoss(), "mdpo": MDPOLoss(), "dpo": DPOLoss()})
    assert both.requirements == Requirements((CHOSEN, REJECTED, CHOSEN_NEGATIVE), reference=True)
    tokens = Mixture({"dpo": DPOLoss(), "chip": CHiPLoss()}).requirements
    assert tokens.token_logps == CHiPLoss().requirements.token_logps
    assert tokens.token_distributions == (CHOSEN, REJECTED)


@pytest.mark.parametrize(
    ("option", "known"),
    [
        ("mpo", {"dpo": LOG2, "bco_pair": 2 * LOG2}),
        ("rpo", {"dpo": LOG2}),
        ("mdpo_sft", {"mdpo": 3 * LOG2}),
    ],
)
def test_policy_equal_reference_gives_each_members_known_value(compose, option, known):
    mixture = build_loss(compose([f"loss={option}"]).loss)
    policy, _, inputs = tables()
    out = mixture(policy, policy, inputs)
    nll = (-policy[CHOSEN].sum() / inputs.token_counts[CHOSEN].sum()).item()
    values = {**known, "sft": nll}
    for name, value in values.items():
        assert out.terms[name].item() == pytest.approx(value, rel=1e-6), name
    assert out.loss.item() == pytest.approx(sum(mixture.weights[n] * v for n, v in values.items()), rel=1e-6)


def test_named_mixtures_hold_their_papers_weights(compose):
    mpo = build_loss(compose(["loss=mpo"]).loss)
    assert mpo.weights == {"dpo": 0.8, "bco_pair": 0.2, "sft": 1.0}
    assert isinstance(mpo.members["bco_pair"], BCOPair) and mpo.members["bco_pair"].beta == 0.1
    rpo = build_loss(compose(["loss=rpo", "loss.weights.sft=0.005", "loss.members.dpo.beta=0.01"]).loss)
    assert rpo.weights == {"dpo": 1.0, "sft": 0.005} and rpo.members["dpo"].beta == 0.01
    cli = compose(
        ["loss=mix", "+loss@loss.members.dpo=dpo", "+loss@loss.members.sft=sft", "+loss.weights={sft: 0.5}"]
    )
    mix = build_loss(cli.loss)
    assert cli.choices.loss == "mix" and mix.weights == {"dpo": 1.0, "sft": 0.5}


class OtherKind(Loss):
    @property
    def requirements(self) -> Requirements:
        return Requirements((), reference=False, module="embedding")


def test_bad_mixtures_are_refused_naming_the_key(compose):
    with pytest.raises(ValueError, match=r"loss.members is empty; add members with \+loss@loss.members"):
        Mixture({})
    with pytest.raises(
        ValueError, match=r"loss.weights names \['ipo'\], which are not members; members: \['dpo'\]"
    ):
        Mixture({"dpo": DPOLoss()}, {"ipo": 1.0})
    with pytest.raises(ValueError, match=r"different module kinds \['embedding', 'preference'\]"):
        Mixture({"dpo": DPOLoss(), "other": OtherKind()})
    with pytest.raises(ConfigError, match=r"loss=mix: loss.members is empty"):
        check_run(compose(["loss=mix"]))


def test_mpo_trains_and_logs_each_member_under_its_name(compose):
    cfg = compose(["loss=mpo"])
    run(cfg)
    with open(Path(cfg.paths.output_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    first = next(r for r in rows if r.get("train/loss_step"))
    # step 0: policy == reference (LoRA B = 0): 0.8 log 2 + 0.2 * 2 log 2 + the NLL
    assert float(first["train/loss/dpo_step"]) == pytest.approx(LOG2, abs=1e-5)
    assert float(first["train/loss/bco_pair_step"]) == pytest.approx(2 * LOG2, abs=1e-5)
    expected = 0.8 * LOG2 + 0.2 * 2 * LOG2 + float(first["train/loss/sft_step"])
    assert float(first["train/loss_step"]) == pytest.approx(expected, abs=1e-4)
