"""MISP-DPO's loss (methods.md §4.1-4.4): reductions to mDPO's CoPO and to the plain objective, Lemma 4.1's
gradient against autograd, hand-computed importance-weighted values, requirements and logged metrics."""

from __future__ import annotations

import math

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, Branch
from mmpo.losses import LossInputs, MDPOLoss, MISPDPOLoss
from mmpo.losses.misp_dpo import negative_branches


def negative(k: int) -> Branch:
    return Branch("chosen", "negative", k)


def tables(batch: int, count: int, seed: int = 0, grad: bool = False):
    """Random policy and reference tables over chosen, rejected and ``count`` negatives."""
    generator = torch.Generator().manual_seed(seed)
    branches = [CHOSEN, REJECTED, *negative_branches(count)]
    policy = {b: (-10 * torch.rand(batch, generator=generator)).requires_grad_(grad) for b in branches}
    reference = {b: -10 * torch.rand(batch, generator=generator) for b in branches}
    return policy, reference


def test_k1_with_uniform_q_is_mdpo_copo_in_value_and_gradient():
    policy, reference = tables(4, 1, grad=True)
    copo = MDPOLoss(beta=0.5, w_dpo=0, w_anc=0)(policy, reference)
    uniform = LossInputs(negative_log_q=torch.full((4, 1), math.log(1 / 32)))
    misp = MISPDPOLoss(beta=0.5, num_negatives=1, text_weight=0)(policy, reference, uniform)
    torch.testing.assert_close(misp.loss, copo.loss)
    torch.testing.assert_close(misp.loss, copo.terms["copo"])
    grads = [torch.autograd.grad(out.loss, [policy[CHOSEN], policy[CHOSEN_NEGATIVE]]) for out in (misp, copo)]
    for mine, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("log_q", [None, [[-1.0, -2.5, -0.3]]])
def test_image_gradient_is_lemma_4_1_softmax_weighted_decomposition(log_q):
    """grad L_img = beta sigma(LSE(a + log w)) sum_i p_i (grad log pi(y|m_n^i) - grad log pi(y|m_p)), with the
    log-probs smooth functions of parameters theta; the per-branch gradients come from autograd."""
    beta, count = 0.7, 3
    theta = torch.randn(6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    directions = torch.randn(1 + count, 6, generator=torch.Generator().manual_seed(2))
    logps = torch.tanh(directions * theta).sum(-1) - 3  # [positive, negatives...]
    branches = [CHOSEN, *negative_branches(count)]
    policy = {b: logps[i : i + 1] for i, b in enumerate(branches)}
    reference = {b: torch.tensor([-2.0 - 0.5 * i]) for i, b in enumerate(branches)}
    inputs = LossInputs(negative_log_q=None if log_q is None else torch.tensor(log_q))
    loss = MISPDPOLoss(beta=beta, num_negatives=count, text_weight=0)
    autograd = torch.autograd.grad(loss(policy, reference, inputs).loss, theta, retain_graph=True)[0]

    grad_logp = [torch.autograd.grad(logps[i], theta, retain_graph=True)[0] for i in range(1 + count)]
    with torch.no_grad():
        a = loss.advantages(policy, reference)[0]
        if log_q is not None:  # self-normalised weights: w_i = (1/q_i) / mean_j (1/q_j)
            inverse = 1 / torch.tensor(log_q[0]).exp()
            a = a + torch.log(inverse / inverse.mean())
        p = torch.softmax(a, 0)
        closed = (
            beta
            * torch.sigmoid(torch.logsumexp(a, 0))
            * sum(p[i] * (grad_logp[1 + i] - grad_logp[0]) for i in range(count))
        )
    torch.testing.assert_close(autograd, closed)


def test_uniform_q_reduces_to_the_plain_objective():
    policy, reference = tables(5, 3)
    loss = MISPDPOLoss()
    plain = loss(policy, reference)
    weighted = loss(policy, reference, LossInputs(negative_log_q=torch.full((5, 3), math.log(1 / 7))))
    torch.testing.assert_close(weighted.loss, plain.loss)
    torch.testing.assert_close(weighted.metrics["misp/ess"], plain.metrics["misp/ess"])


def known_q_tables():
    """beta 0.5: a = [log 2, 0] (rho(negative 0) = 2 log 2, rho(negative 1) = rho(chosen) = 0); q = [1/2, 1/4]."""
    policy = {CHOSEN: torch.tensor([-1.0]), negative(0): torch.tensor([-1.0 + 2 * math.log(2)])}
    policy[negative(1)] = torch.tensor([-4.0])
    reference = {
        CHOSEN: torch.tensor([-1.0]),
        negative(0): torch.tensor([-1.0]),
        negative(1): torch.tensor([-4.0]),
    }
    return policy, reference, LossInputs(negative_log_q=torch.log(torch.tensor([[0.5, 0.25]])))


def test_known_non_uniform_q_self_normalised_by_hand():
    # 1/q = [2, 4], mean 3: w = [2/3, 4/3]; sum_i w_i e^a_i = 2/3 * 2 + 4/3 * 1 = 8/3; L = log(1 + 8/3)
    # p = [4/3, 4/3] / (8/3) = [1/2, 1/2]: ESS 2
    out = MISPDPOLoss(beta=0.5, num_negatives=2, text_weight=0)(*known_q_tables())
    assert out.loss.item() == pytest.approx(math.log(11 / 3), rel=1e-6)
    assert out.metrics["misp/weight[0]"].item() == pytest.approx(0.5, rel=1e-6)
    assert out.metrics["misp/ess"].item() == pytest.approx(2.0, rel=1e-6)


def test_known_non_uniform_q_unnormalised_and_off_by_hand():
    # unnormalised: sum_i e^a_i / q_i = 2/(1/2) + 1/(1/4) = 8, L = log 9; off: e^a = [2, 1], L = log 4
    unnormalised = MISPDPOLoss(beta=0.5, num_negatives=2, text_weight=0, importance="unnormalized")
    assert unnormalised(*known_q_tables()).loss.item() == pytest.approx(math.log(9), rel=1e-6)
    off = MISPDPOLoss(beta=0.5, num_negatives=2, text_weight=0, importance="off")(*known_q_tables())
    assert off.loss.item() == pytest.approx(math.log(4), rel=1e-6)
    assert off.metrics["misp/weight[0]"].item() == pytest.approx(2 / 3, rel=1e-6)
    assert off.metrics["misp/ess"].item() == pytest.approx(1 / (4 / 9 + 1 / 9), rel=1e-6)


def test_text_term_and_total_by_hand():
    # rho(chosen) = 0.4, rho(rejected) = -0.6: L_text = -log sigma(0.5 * 1.0); negatives as the chosen: a = 0
    policy = {CHOSEN: torch.tensor([-2.0]), REJECTED: torch.tensor([-3.0])}
    reference = {CHOSEN: torch.tensor([-2.4]), REJECTED: torch.tensor([-2.4])}
    for k in range(3):
        policy[negative(k)], reference[negative(k)] = torch.tensor([-2.0]), torch.tensor([-2.4])
    out = MISPDPOLoss(beta=0.5, num_negatives=3, text_weight=2.0)(policy, reference)
    text = -math.log(1 / (1 + math.exp(-0.5)))
    assert out.terms["text"].item() == pytest.approx(text, rel=1e-6)
    assert out.terms["img"].item() == pytest.approx(math.log(4), rel=1e-6)  # softplus(log 3)
    assert out.loss.item() == pytest.approx(math.log(4) + 2.0 * text, rel=1e-6)
    assert out.metrics["misp/ess"].item() == pytest.approx(3.0, rel=1e-6)


def test_policy_equals_reference_gives_log_k_plus_one_plus_log_2():
    policy, _ = tables(3, 5)
    out = MISPDPOLoss(num_negatives=5)(policy, policy)
    assert out.loss.item() == pytest.approx(math.log(6) + math.log(2), rel=1e-6)
    assert [out.metrics[f"misp/weight[{k}]"].item() for k in range(5)] == pytest.approx([0.2] * 5)


def test_requirements_follow_k_and_lambda():
    assert MISPDPOLoss().requirements.branches == (CHOSEN, REJECTED, *negative_branches(3))
    no_text = MISPDPOLoss(num_negatives=5, text_weight=0).requirements
    assert no_text.branches == (CHOSEN, *negative_branches(5)) and no_text.negatives == 5
    assert no_text.rejected == 0 and no_text.reference


def test_log_q_of_another_k_and_bad_options_are_errors():
    policy, reference = tables(2, 3)
    with pytest.raises(ValueError, match="log q of 2 negatives; loss.num_negatives=3"):
        MISPDPOLoss()(policy, reference, LossInputs(negative_log_q=torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="loss.num_negatives=0"):
        MISPDPOLoss(num_negatives=0)
    with pytest.raises(ValueError, match=r"loss.importance='clipped'; allowed: \['self_normalized'"):
        MISPDPOLoss(importance="clipped")
