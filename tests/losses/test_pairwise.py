"""The DPO family, SimPO, ORPO and KTO: their values with policy == reference (worked out by hand from each
formula at c = r = 0), their parameter checks, and KTO's reference point."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.losses import KTOLoss, LossInputs, ORPOLoss, SimPOLoss, build_loss
from mmpo.losses.pairwise import AOT, DiscoPOP, EXOPair, Robust

from ..conftest import CONF_DIR

LOG2 = math.log(2)
POLICY = {
    CHOSEN: torch.tensor([-10.0, -4.0, -7.0]),
    REJECTED: torch.tensor([-12.0, -3.0, -9.0]),
    CHOSEN_NEGATIVE: torch.tensor([-11.0, -6.0, -8.0]),
}
COUNTS = LossInputs({CHOSEN: torch.tensor([5, 2, 4]), REJECTED: torch.tensor([6, 3, 4])})


def yaml(name: str):
    return build_loss(OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml"))


# c = r = h = 0: sigma(0) = 1/2, -log sigma(0) = log 2
AT_REFERENCE = {
    "hinge": lambda loss: 1.0,
    "robust": lambda loss: LOG2,  # ((1 - eps) log 2 - eps log 2) / (1 - 2 eps)
    "bco_pair": lambda loss: 2 * LOG2,
    "sppo_hard": lambda loss: 2 * (0.5 / loss.beta) ** 2,
    "nca_pair": lambda loss: 2 * LOG2,
    "apo_zero": lambda loss: 1.0,  # 1 - 1/2 + 1/2
    "apo_down": lambda loss: 1.0,  # 1/2 + 1 - 1/2
    "aot": lambda loss: LOG2,
    "aot_unpaired": lambda loss: LOG2,
    "exo_pair": lambda loss: -LOG2 - 0.5 * math.log(loss.label_smoothing * (1 - loss.label_smoothing)),
    "discopop": lambda loss: (LOG2 + 1) / 2,  # m = 1/2: (1/2) log 2 + (1/2) exp(0)
    "sigmoid_norm": lambda loss: LOG2,
    "kto": lambda loss: 0.5,  # z0 = 0: 1 - sigma(0) for both halves
}


@pytest.mark.parametrize("name", sorted(AT_REFERENCE))
def test_policy_equal_reference_gives_the_known_value(name):
    loss = yaml(name)
    out = loss(POLICY, POLICY, COUNTS)
    assert out.loss.item() == pytest.approx(AT_REFERENCE[name](loss), rel=1e-6)
    assert out.metrics["rewards/margins"].item() == 0.0


def test_every_pairwise_option_is_one_class_of_the_pairwise_module():
    """The name lives in the YAML file only: each option's target is a distinct class of one module."""
    targets = {
        path.stem: OmegaConf.load(path)["_target_"]
        for path in (CONF_DIR / "loss").glob("*.yaml")
        if str(OmegaConf.load(path).get("_target_", "")).startswith("mmpo.losses.pairwise.")
    }
    assert set(targets) == set(AT_REFERENCE) - {"kto"}
    assert len(set(targets.values())) == len(targets)


def test_parameters_outside_their_range_are_refused():
    with pytest.raises(ValueError, match=r"loss.label_smoothing=0.5; allowed: 0 <= eps < 0.5"):
        Robust(label_smoothing=0.5)
    with pytest.raises(ValueError, match=r"loss.label_smoothing=0.0; allowed: 0 < eps < 0.5"):
        EXOPair(label_smoothing=0.0)
    with pytest.raises(ValueError, match=r"loss.tau=0"):
        DiscoPOP(tau=0)
    with pytest.raises(
        ValueError, match=r"loss.reference_point='batch'; allowed: \['mismatched_image', 'zero'\]"
    ):
        KTOLoss(reference_point="batch")


def test_aot_sorts_the_batch_quantiles():
    """Policy margins [2, -1, 0] and reference margins [0, 0, 3]: the sorted differences are -1-0, 0-0, 2-3."""
    policy = {CHOSEN: torch.tensor([2.0, -1.0, 0.0]), REJECTED: torch.zeros(3)}
    reference = {CHOSEN: torch.tensor([0.0, 0.0, 3.0]), REJECTED: torch.zeros(3)}
    delta = torch.tensor([-1.0, 0.0, -1.0])
    expected = -torch.nn.functional.logsigmoid(0.5 * delta).mean()
    assert AOT(beta=0.5)(policy, reference).loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_simpo_by_hand():
    # mean log-probs: chosen [-2, -2, -1.75], rejected [-2, -1, -2.25]
    beta, gamma = 2.0, 1.0
    margins = [beta * (-2 + 2) - gamma, beta * (-2 + 1) - gamma, beta * (-1.75 + 2.25) - gamma]
    expected = sum(math.log1p(math.exp(-m)) for m in margins) / 3
    loss = SimPOLoss(beta, gamma)
    assert not loss.requirements.reference
    assert loss(POLICY, None, COUNTS).loss.item() == pytest.approx(expected, rel=1e-6)


def test_orpo_by_hand():
    lam = 0.25
    chosen, rejected = [-2.0, -2.0, -1.75], [-2.0, -1.0, -2.25]

    def log_odds(logp):
        return logp - math.log(1 - math.exp(logp))

    odds = (
        sum(math.log1p(math.exp(-(log_odds(c) - log_odds(r)))) for c, r in zip(chosen, rejected, strict=True))
        / 3
    )
    nll = 21.0 / 11  # -(-10 - 4 - 7) / (5 + 2 + 4)
    out = ORPOLoss(lam)(POLICY, None, COUNTS)
    assert out.terms["nll"].item() == pytest.approx(nll, rel=1e-6)
    assert out.terms["odds_ratio"].item() == pytest.approx(odds, rel=1e-6)
    assert out.loss.item() == pytest.approx(nll + lam * odds, rel=1e-6)


def test_kto_reference_point_is_the_clamped_mismatched_log_ratio():
    beta = 0.5
    reference = {b: v + 1.0 for b, v in POLICY.items()}  # every log-ratio is -1
    reference[CHOSEN_NEGATIVE] = POLICY[CHOSEN_NEGATIVE] - torch.tensor([1.0, 2.0, 3.0])  # mean ratio 2
    out = KTOLoss(beta)(POLICY, reference)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = ((1 - sig(beta * (-1 - 2))) + (1 - sig(beta * (2 + 1)))) / 2
    assert out.metrics["kto/reference_point"].item() == pytest.approx(2.0)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    # a negative mismatched log-ratio clamps to z0 = 0, which reference_point=zero always uses
    reference[CHOSEN_NEGATIVE] = POLICY[CHOSEN_NEGATIVE] + 4.0
    zero = KTOLoss(beta, reference_point="zero")
    assert zero.requirements.branches == (CHOSEN, REJECTED)
    assert KTOLoss(beta)(POLICY, reference).loss.item() == pytest.approx(zero(POLICY, reference).loss.item())
    assert zero(POLICY, reference).loss.item() == pytest.approx(((1 - sig(-beta)) + (1 - sig(beta))) / 2)
