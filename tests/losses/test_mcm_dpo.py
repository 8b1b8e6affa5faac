"""MCM-DPO: both aggregations against hand-computed values, the incremental components, its branches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mmpo.branches import CHOSEN, REJECTED, Branch
from mmpo.losses import DPOLoss, MCMDPOLoss, build_loss
from mmpo.losses.mcm_dpo import COMPONENTS, LOSERS

LOG2 = math.log(2)
CONF = Path(__file__).resolve().parents[2] / "conf" / "loss" / "mcm_dpo.yaml"

# rho = log pi - log pi_ref per branch, for two samples; the winner's is [1, 0]
RHO = {
    CHOSEN: [1.0, 0.0],
    LOSERS["response"]: [-1.0, 1.0],  # Delta_1 = [2, -1]
    LOSERS["image"]: [-2.0, 0.0],  # Delta_2 = [3, 0]
    LOSERS["context"]: [0.0, -1.0],  # Delta_3 = [1, 1]
    LOSERS["context_response"]: [-3.0, 2.0],  # Delta_4 = [4, -2]
    LOSERS["image_response"]: [-1.0, -2.0],  # Delta_5 = [2, 2]
    LOSERS["context_image"]: [1.0, 0.0],  # Delta_6 = [0, 0]
    LOSERS["context_image_response"]: [-4.0, -1.0],  # Delta_7 = [5, 1]
}
DELTA = {
    "response": (2.0, -1.0),
    "image": (3.0, 0.0),
    "context": (1.0, 1.0),
    "context_response": (4.0, -2.0),
    "image_response": (2.0, 2.0),
    "context_image": (0.0, 0.0),
    "context_image_response": (5.0, 1.0),
}
REFERENCE = {b: torch.tensor([-10.0 - i, -20.0 + i]) for i, b in enumerate(RHO)}
POLICY = {b: REFERENCE[b] + torch.tensor(rho) for b, rho in RHO.items()}
WEIGHTS = {"response": 1.0, "image": 0.5, "context": 0.5} | {name: 0.2 for name in COMPONENTS[3:]}


def nlsig(x: float) -> float:
    """-log sigma(x), by hand."""
    return math.log(1 + math.exp(-x))


def test_single_sigmoid_matches_hand_computation():
    # z = (1*D1 + .5*D2 + .5*D3 + .2*(D4 + D5 + D6 + D7)) / 2.8
    z0 = (2.0 + 0.5 * 3.0 + 0.5 * 1.0 + 0.2 * (4.0 + 2.0 + 0.0 + 5.0)) / 2.8
    z1 = (-1.0 + 0.5 * 0.0 + 0.5 * 1.0 + 0.2 * (-2.0 + 2.0 + 0.0 + 1.0)) / 2.8
    expected = (nlsig(0.1 * z0) + nlsig(0.1 * z1)) / 2
    out = MCMDPOLoss()(POLICY, REFERENCE)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert set(out.terms) == {"mcm_dpo"} and out.terms["mcm_dpo"].item() == pytest.approx(expected, rel=1e-6)


def test_sum_aggregation_matches_hand_computation_and_logs_each_component():
    out = MCMDPOLoss(aggregation="sum")(POLICY, REFERENCE)
    per_component = {name: (nlsig(0.1 * d[0]) + nlsig(0.1 * d[1])) / 2 for name, d in DELTA.items()}
    expected = sum(WEIGHTS[name] * value for name, value in per_component.items())
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    for name, value in per_component.items():
        assert out.terms[name].item() == pytest.approx(value, rel=1e-6), name


def test_fewer_components_normalise_by_the_active_weights_or_a_fixed_normalizer():
    # components=2: response + image, Z = 1.5
    expected = (nlsig(0.1 * (2.0 + 1.5) / 1.5) + nlsig(0.1 * (-1.0 + 0.0) / 1.5)) / 2
    assert MCMDPOLoss(components=2)(POLICY, REFERENCE).loss.item() == pytest.approx(expected, rel=1e-6)
    # the official code keeps para_norm = 2.8 whatever use_cl_reward_num is
    fixed = (nlsig(0.1 * 3.5 / 2.8) + nlsig(0.1 * -1.0 / 2.8)) / 2
    assert MCMDPOLoss(components=2, normalizer=2.8)(POLICY, REFERENCE).loss.item() == pytest.approx(
        fixed, rel=1e-6
    )


@pytest.mark.parametrize(("lam", "normalizer"), [(1.0, None), (2.0, None), (1.0, 2.8), (2.0, 0.5)])
def test_response_component_alone_is_dpo_with_beta_times_lam_over_z(lam, normalizer):
    loss = MCMDPOLoss(beta=0.3, lam=lam, components=1, normalizer=normalizer)
    z = lam if normalizer is None else normalizer
    assert loss.requirements.branches == DPOLoss().requirements.branches == (CHOSEN, REJECTED)
    torch.testing.assert_close(
        loss(POLICY, REFERENCE).loss, DPOLoss(beta=0.3 * lam / z)(POLICY, REFERENCE).loss, rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("components", range(1, 8))
def test_components_switch_on_the_official_order_and_their_branches(components):
    loss = MCMDPOLoss(components=components)
    expected = (CHOSEN, *(LOSERS[name] for name in COMPONENTS[:components]))
    assert loss.requirements.branches == expected
    assert loss.requirements.negatives == (1 if components >= 2 else 0)
    assert loss.requirements.context_pool == (components >= 3)
    out = loss(POLICY, REFERENCE)
    assert {k.removeprefix("margins/") for k in out.metrics if k.startswith("margins/")} == set(
        COMPONENTS[:components]
    )


def test_the_seven_losers_are_the_spec_tuples_and_all_eight_branches_distinct():
    # (context, image, response) of each loser: methods.md §2.2
    assert all(b.k == 0 and b.j == 0 for b in LOSERS.values())  # the first negative, the rejected
    tuples = {name: (b.context, b.image, b.response) for name, b in LOSERS.items()}
    assert tuples == {
        "response": ("original", "original", "rejected"),
        "image": ("original", "negative", "chosen"),
        "context": ("swapped", "original", "chosen"),
        "context_response": ("swapped", "original", "rejected"),
        "image_response": ("original", "negative", "rejected"),
        "context_image": ("swapped", "negative", "chosen"),
        "context_image_response": ("swapped", "negative", "rejected"),
    }
    assert len(set(MCMDPOLoss().requirements.branches)) == 8
    assert Branch("chosen", "negative", context="swapped") in MCMDPOLoss().requirements.branches


@pytest.mark.parametrize(("aggregation", "steps"), [("single_sigmoid", 1.0), ("sum", 2.8)])
def test_policy_equal_reference_gives_log2_per_sigmoid_term(aggregation, steps):
    out = MCMDPOLoss(aggregation=aggregation)(POLICY, POLICY)
    assert out.loss.item() == pytest.approx(steps * LOG2)
    for name in COMPONENTS if aggregation == "sum" else ():
        assert out.terms[name].item() == pytest.approx(LOG2), name  # every margin is 0: -log sigma(0)
    assert all(out.metrics[f"margins/{name}"].item() == 0 for name in COMPONENTS)


@pytest.mark.parametrize("aggregation", ["single_sigmoid", "sum"])
def test_raising_a_loser_raises_the_loss_and_raising_the_winner_lowers_it(aggregation):
    policy = {b: v.clone().requires_grad_(True) for b, v in POLICY.items()}
    MCMDPOLoss(aggregation=aggregation)(policy, REFERENCE).loss.backward()
    assert torch.all(policy[CHOSEN].grad < 0)
    for name, branch in LOSERS.items():
        assert torch.all(policy[branch].grad > 0), name
    # single sigmoid: the gradient of each loser is its weight share of the winner's
    if aggregation == "single_sigmoid":
        for name, branch in LOSERS.items():
            torch.testing.assert_close(policy[branch].grad, -policy[CHOSEN].grad * WEIGHTS[name] / 2.8)


def test_metrics_are_each_components_reward_margin_and_the_official_component_one_rewards():
    out = MCMDPOLoss()(POLICY, REFERENCE)
    for name, (d0, d1) in DELTA.items():
        assert out.metrics[f"margins/{name}"].item() == pytest.approx(0.1 * (d0 + d1) / 2)
        assert out.metrics[f"accuracies/{name}"].item() == ((d0 > 0) + (d1 > 0)) / 2
    # the official code logs beta * rho for W and for (c_w, m_w, y_l), their margin and accuracy
    assert out.metrics[f"rewards/{CHOSEN}"].item() == pytest.approx(0.1 * (1.0 + 0.0) / 2)
    assert out.metrics[f"rewards/{REJECTED}"].item() == pytest.approx(0.1 * (-1.0 + 1.0) / 2)
    assert out.metrics["rewards/margins"].item() == pytest.approx(0.1 * (2.0 - 1.0) / 2)
    assert out.metrics["rewards/accuracies"].item() == 0.5


def test_config_holds_the_paper_defaults():
    loss = build_loss(OmegaConf.load(CONF))
    assert isinstance(loss, MCMDPOLoss) and loss.beta == 0.1 and loss.aggregation == "single_sigmoid"
    assert loss.weights == WEIGHTS and loss.normalizer == pytest.approx(2.8)
    # the effective per-component beta of methods.md §2.3
    assert loss.beta * loss.weights["response"] / loss.normalizer == pytest.approx(0.0357, abs=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aggregation": "mean"}, r"loss.aggregation='mean'; allowed: \['single_sigmoid', 'sum'\]"),
        ({"components": 0}, r"loss.components=0; allowed: 1..7"),
        ({"components": 8}, r"loss.components=8; allowed: 1..7"),
        ({"normalizer": 0.0}, r"loss.normalizer=0.0 must be > 0"),
    ],
)
def test_bad_options_name_the_key_and_the_allowed_values(options, message):
    with pytest.raises(ValueError, match=message):
        MCMDPOLoss(**options)
