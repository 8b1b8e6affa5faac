"""Loss values against hand-computed formulas and invariants."""

from __future__ import annotations

import math

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.losses import (
    DPOLoss,
    IPOLoss,
    LossInputs,
    MDPOLoss,
    Requirements,
    SFTLoss,
    build_loss,
    preference_metrics,
)

LOG2 = math.log(2)


def table(chosen, rejected, corrupted=None):
    out = {CHOSEN: torch.tensor(chosen), REJECTED: torch.tensor(rejected)}
    if corrupted is not None:
        out[CHOSEN_NEGATIVE] = torch.tensor(corrupted)
    return out


def nlsig(x: float) -> float:
    """-log sigma(x), computed by hand."""
    return math.log(1 + math.exp(-x))


POLICY = table([-10.0, -4.0], [-12.0, -3.0], [-11.0, -6.0])
REFERENCE = table([-11.0, -5.0], [-11.0, -4.0], [-10.0, -5.0])


def test_dpo_matches_hand_computation():
    # h = (pc - rc) - (pr - rr): sample 0: (1) - (-1) = 2; sample 1: (1) - (1) = 0
    expected = (nlsig(0.1 * 2) + nlsig(0.0)) / 2
    out = DPOLoss(beta=0.1)(POLICY, REFERENCE)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.terms["dpo"].item() == pytest.approx(expected, rel=1e-6)


def test_dpo_label_smoothing_matches_cdpo():
    eps, beta = 0.2, 0.5
    expected = sum((1 - eps) * nlsig(beta * h) + eps * nlsig(-beta * h) for h in (2.0, 0.0)) / 2
    assert DPOLoss(beta, eps)(POLICY, REFERENCE).loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cls", [DPOLoss, MDPOLoss])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_policy_equal_reference_gives_log2_per_term(cls, eps):
    loss = cls(label_smoothing=eps)
    out = loss(POLICY, POLICY)
    for term in out.terms.values():
        assert term.item() == pytest.approx(LOG2, abs=1e-6)
    assert out.loss.item() == pytest.approx(LOG2 * len(out.terms), abs=1e-6)


def test_mdpo_default_is_three_log2_at_step0():
    assert MDPOLoss()(POLICY, POLICY).loss.item() == pytest.approx(3 * LOG2, abs=1e-6)


def test_mdpo_terms_match_hand_computation():
    beta = 0.1
    # rewards r = beta * (policy - reference)
    rc = [beta * 1.0, beta * 1.0]
    rr = [beta * -1.0, beta * 1.0]
    rl = [beta * -1.0, beta * -1.0]  # chosen@corrupted
    dpo = sum(nlsig(c - r) for c, r in zip(rc, rr, strict=True)) / 2
    copo = sum(nlsig(c - m) for c, m in zip(rc, rl, strict=True)) / 2
    anc = sum(nlsig(c - 0.0) for c in rc) / 2
    out = MDPOLoss(beta=beta)(POLICY, REFERENCE)
    assert out.terms["dpo"].item() == pytest.approx(dpo, rel=1e-6)
    assert out.terms["copo"].item() == pytest.approx(copo, rel=1e-6)
    assert out.terms["ancpo"].item() == pytest.approx(anc, rel=1e-6)
    assert out.loss.item() == pytest.approx(dpo + copo + anc, rel=1e-6)
    weighted = MDPOLoss(beta=beta, w_dpo=0.5, w_copo=2.0, w_anc=0.25, delta=0.3)(POLICY, REFERENCE)
    anc_delta = sum(nlsig(c - 0.3) for c in rc) / 2
    assert weighted.loss.item() == pytest.approx(0.5 * dpo + 2.0 * copo + 0.25 * anc_delta, rel=1e-6)


def test_mdpo_anchor_variants_add_negative_anchors():
    beta = 0.1
    rc, rr, rl = [0.1, 0.1], [-0.1, 0.1], [-0.1, -0.1]
    base = sum(nlsig(c) for c in rc) / 2
    with_rejected = base + sum(nlsig(-r) for r in rr) / 2
    with_all = with_rejected + sum(nlsig(-r) for r in rl) / 2
    for anchors, expected in (
        (["chosen"], base),
        (["chosen", "rejected"], with_rejected),
        (["chosen", "rejected", "corrupted"], with_all),
    ):
        out = MDPOLoss(beta=beta, anchors=anchors)(POLICY, REFERENCE)
        assert out.terms["ancpo"].item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="loss.anchors"):
        MDPOLoss(anchors=["rejected"])


def test_mdpo_with_zero_weights_is_exactly_dpo_and_drops_the_corrupted_branch():
    mdpo = MDPOLoss(beta=0.3, w_copo=0.0, w_anc=0.0)
    assert mdpo.requirements == DPOLoss().requirements == Requirements((CHOSEN, REJECTED))
    assert MDPOLoss().requirements.negatives == 1 and DPOLoss().requirements.negatives == 0
    assert torch.equal(mdpo(POLICY, REFERENCE).loss, DPOLoss(beta=0.3)(POLICY, REFERENCE).loss)


def test_copo_gradient_flows_only_through_image_conditioned_logps():
    policy = {b: v.clone().requires_grad_(True) for b, v in POLICY.items()}
    MDPOLoss(w_dpo=0.0, w_anc=0.0)(policy, REFERENCE).loss.backward()
    assert policy[REJECTED].grad is None or torch.all(policy[REJECTED].grad == 0)
    assert torch.all(policy[CHOSEN].grad < 0)  # raising log pi(y_w | m_w) lowers the loss
    assert torch.all(policy[CHOSEN_NEGATIVE].grad > 0)  # raising log pi(y_w | m_l) raises it
    assert torch.allclose(policy[CHOSEN].grad, -policy[CHOSEN_NEGATIVE].grad)


def test_ipo_matches_hand_computation_and_its_step0_value():
    beta = 0.25
    expected = ((2.0 - 1 / (2 * beta)) ** 2 + (0.0 - 1 / (2 * beta)) ** 2) / 2
    assert IPOLoss(beta)(POLICY, REFERENCE).loss.item() == pytest.approx(expected, rel=1e-6)
    assert IPOLoss(beta)(POLICY, POLICY).loss.item() == pytest.approx(1 / (4 * beta**2), rel=1e-6)
    counts = {CHOSEN: torch.tensor([2.0, 4.0]), REJECTED: torch.tensor([4.0, 1.0])}
    # length-normalized h: sample 0: 1/2 - (-1)/4 = 0.75; sample 1: 1/4 - 1/1 = -0.75
    normalized = ((0.75 - 2.0) ** 2 + (-0.75 - 2.0) ** 2) / 2
    assert IPOLoss(beta, length_normalize=True)(
        POLICY, REFERENCE, LossInputs(counts)
    ).loss.item() == pytest.approx(normalized)


def test_sft_is_token_mean_nll_of_chosen():
    counts = {CHOSEN: torch.tensor([5, 3])}
    out = SFTLoss()(POLICY, None, LossInputs(counts))
    assert out.loss.item() == pytest.approx(14.0 / 8)
    assert not SFTLoss().requirements.reference
    # no implicit reward: its metrics are the log-probs only
    assert set(out.metrics) == {f"logps/{b}" for b in POLICY} and not hasattr(SFTLoss(), "beta")


def test_metrics_rewards_margins_and_image_reliance():
    m = preference_metrics(POLICY, REFERENCE, beta=0.1)
    assert m["rewards/margins"].item() == pytest.approx((0.2 + 0.0) / 2)
    assert m["rewards/accuracies"].item() == pytest.approx(0.5)  # sample 1 ties: not counted as correct
    assert m["rewards/conditional_margin"].item() == pytest.approx((0.2 + 0.2) / 2)
    assert m["rewards/conditional_accuracy"].item() == 1.0
    # policy-only: log pi(y_w|m_w) - log pi(y_w|m_l) = [1, 2]
    assert m["image_reliance/logp_margin"].item() == pytest.approx(1.5)
    assert m["image_reliance/accuracy"].item() == 1.0
    assert m[f"logps/{CHOSEN_NEGATIVE}"].item() == pytest.approx(-8.5)


def test_a_loss_returns_the_reward_metrics_of_every_branch_in_the_tables():
    """Validation scores chosen@negative[0] for DPO too: DPO's own metrics include image reliance."""
    out = DPOLoss(beta=0.1)(POLICY, REFERENCE)
    assert out.metrics["rewards/margins"].item() == pytest.approx(0.1)
    assert "image_reliance/accuracy" in out.metrics and f"rewards/{CHOSEN_NEGATIVE}" in out.metrics


def test_build_loss_from_config_node_and_rejects_bad_args():
    from omegaconf import OmegaConf

    loss = build_loss(OmegaConf.create({"_target_": "mmpo.losses.DPOLoss", "beta": 0.2}))
    assert isinstance(loss, DPOLoss) and loss.beta == 0.2
    with pytest.raises(Exception, match="label_smoothing"):
        build_loss({"_target_": "mmpo.losses.DPOLoss", "label_smoothing": 0.7})
