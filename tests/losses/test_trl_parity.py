"""Every TRL-named loss equals TRL's own implementation on the same random log-probs, value and gradient.

TRL's code runs as it is: ``DPOTrainer._compute_loss`` (its ``loss_type`` loop, multi-loss weights
included), ``KTOTrainer._compute_loss``, ``CPOTrainer.cpo_loss`` (SimPO) and ``ORPOTrainer.odds_ratio_loss``
are called on a stand-in trainer whose model returns the random per-token log-probs, with precomputed
reference log-probs. Our losses are built from their ``conf/loss/<name>.yaml`` (the paper defaults) and TRL
gets the same parameters. Skipped only where TRL is absent (it is in the dev extra).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.losses import LossInputs, build_loss

from ..conftest import CONF_DIR

pytest.importorskip("trl")
from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402
from trl.trainer.kto_trainer import KTOTrainer  # noqa: E402

RECORDS, LENGTH = 5, 10
TOL = {"rtol": 1e-9, "atol": 1e-12}
# our option -> TRL's loss_type (the same name but for the three TRL had first)
DPO_LOSS_TYPES = {
    "dpo": "sigmoid",
    "ipo": "ipo",
    "sft": "sft",
    **{
        name: name
        for name in (
            "hinge",
            "robust",
            "bco_pair",
            "sppo_hard",
            "nca_pair",
            "aot",
            "aot_unpaired",
            "apo_zero",
            "apo_down",
            "exo_pair",
            "discopop",
            "sigmoid_norm",
        )
    },
}
OVERRIDES = {"ipo": {"length_normalize": True}}  # TRL's ipo normalizes by length
TOLERANCES = {"exo_pair": {"rtol": 1e-7, "atol": 1e-7}}  # TRL takes log(eps) of a float32 tensor


@dataclass
class Case:
    """Random per-token log-probs of B chosen and B rejected completions (TRL's [chosen; rejected] batch)
    and reference sequence log-probs; float64 so that both sides agree to rounding."""

    token_logps: torch.Tensor  # [2B, L-1], 0 outside the completion
    completion_mask: torch.Tensor  # [2B, L]
    reference: torch.Tensor  # [2B]
    negative: torch.Tensor  # [B] policy log-prob of chosen@negative (KTO's mismatched pair)
    negative_reference: torch.Tensor

    @classmethod
    def draw(cls, seed: int, scale: float) -> Case:
        g = torch.Generator().manual_seed(seed)
        counts = torch.randint(2, LENGTH - 1, (2 * RECORDS,), generator=g)
        positions = torch.arange(LENGTH)
        completion_mask = ((positions >= 1) & (positions <= counts[:, None])).long()
        per_token = -(0.05 + 2 * torch.rand(2 * RECORDS, LENGTH - 1, generator=g, dtype=torch.float64))
        token_logps = (per_token * completion_mask[:, 1:]).requires_grad_(True)
        sums = token_logps.detach().sum(1)
        reference = sums + scale * torch.randn(2 * RECORDS, generator=g, dtype=torch.float64)
        negative = -(5 + 10 * torch.rand(RECORDS, generator=g, dtype=torch.float64)).requires_grad_(True)
        negative_reference = negative.detach() + scale * torch.randn(
            RECORDS, generator=g, dtype=torch.float64
        )
        return cls(token_logps, completion_mask, reference, negative, negative_reference)

    def ours(self):
        """(policy, reference, inputs) tables of our losses for the same numbers."""
        sums, counts = self.token_logps.sum(1), self.completion_mask.sum(1)
        policy = {CHOSEN: sums[:RECORDS], REJECTED: sums[RECORDS:], CHOSEN_NEGATIVE: self.negative}
        reference = {
            CHOSEN: self.reference[:RECORDS],
            REJECTED: self.reference[RECORDS:],
            CHOSEN_NEGATIVE: self.negative_reference,
        }
        return policy, reference, LossInputs({CHOSEN: counts[:RECORDS], REJECTED: counts[RECORDS:]})

    def model(self, **_):
        zeros = torch.zeros_like(self.token_logps)
        return SimpleNamespace(
            log_probs=self.token_logps, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )

    def batch(self) -> dict:
        ids = torch.ones_like(self.completion_mask)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "completion_mask": self.completion_mask,
        }

    def averages(self):
        return (self.token_logps.sum(1) / self.completion_mask.sum(1)).split(RECORDS)


def stand_in(**attributes) -> SimpleNamespace:
    """A trainer with what TRL's loss code reads besides its own parameters."""
    accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x
    )
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=accelerator,
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        **attributes,
    )


def trl_dpo(case: Case, loss_types: list[str], weights: list[float], beta: float, eps: float = 0.0, tau=0.05):
    trainer = stand_in(
        beta=beta,
        loss_types=loss_types,
        loss_weights=weights,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=0.5,
        label_smoothing=eps,
        use_weighting=False,
        args=SimpleNamespace(discopop_tau=tau),
    )
    inputs = {
        **case.batch(),
        "ref_chosen_logps": case.reference[:RECORDS],
        "ref_rejected_logps": case.reference[RECORDS:],
    }
    return DPOTrainer._compute_loss(trainer, case.model, inputs, False)


def value_and_grads(loss: torch.Tensor, case: Case) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The loss and its gradients with respect to the completion tokens' log-probs (padding entries are no
    token's) and the chosen@negative log-probs."""
    leaves = [case.token_logps, case.negative]
    grads = [
        torch.zeros_like(x) if g is None else g
        for x, g in zip(leaves, torch.autograd.grad(loss, leaves, allow_unused=True), strict=True)
    ]
    return loss.detach(), [grads[0] * case.completion_mask[:, 1:], grads[1]]


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, case: Case, tolerance: dict = TOL) -> None:
    value, grads = value_and_grads(ours, case)
    want_value, want_grads = value_and_grads(theirs, case)
    torch.testing.assert_close(value, want_value, **tolerance)
    for grad, want in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(grad, want, **tolerance)
    assert any(g.abs().max() > 0 for g in want_grads)


def yaml_loss(name: str):
    cfg = OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml")
    return build_loss(OmegaConf.merge(cfg, OVERRIDES.get(name, {})))


@pytest.mark.parametrize("name", sorted(DPO_LOSS_TYPES))
@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_family_equals_trl(name, seed):
    loss = yaml_loss(name)
    beta = getattr(loss, "beta", 0.1)
    case = Case.draw(seed, scale=2 / beta)  # margins of a few 1/beta: no term saturates everywhere
    ours = loss(*case.ours()).loss
    theirs = trl_dpo(
        case,
        [DPO_LOSS_TYPES[name]],
        [1.0],
        beta,
        getattr(loss, "label_smoothing", 0.0),
        getattr(loss, "tau", 0.05),
    )
    assert_same(ours, theirs, case, TOLERANCES.get(name, TOL))


def test_mpo_mixture_equals_trl_multi_loss(compose):
    loss = build_loss(compose(["loss=mpo"]).loss)
    assert loss.weights == {"dpo": 0.8, "bco_pair": 0.2, "sft": 1.0}
    case = Case.draw(3, scale=20.0)
    theirs = trl_dpo(case, ["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0], beta=0.1)
    assert_same(loss(*case.ours()).loss, theirs, case)


def test_simpo_equals_trl_cpo_simpo():
    loss = yaml_loss("simpo")
    case = Case.draw(4, scale=1.0)
    trainer = stand_in(
        alpha=0.0, beta=loss.beta, simpo_gamma=loss.gamma, label_smoothing=0.0, loss_type="simpo"
    )
    losses, _, _ = CPOTrainer.cpo_loss(trainer, *case.averages())
    policy, _, inputs = case.ours()
    assert_same(loss(policy, None, inputs).loss, losses.mean(), case)


def test_orpo_equals_nll_plus_trl_odds_ratio():
    """TRL's ORPO takes its NLL over the prompt too: the odds-ratio part is TRL's, the NLL the response's.
    TRL computes the odds ratio in float32."""
    loss = yaml_loss("orpo")
    case = Case.draw(5, scale=1.0)
    losses, *_ = ORPOTrainer.odds_ratio_loss(stand_in(beta=loss.odds_ratio_weight), *case.averages())
    odds_ratio = -losses.double().mean()
    policy, _, inputs = case.ours()
    nll = -policy[CHOSEN].sum() / inputs.token_counts[CHOSEN].sum()
    out = loss(policy, None, inputs)
    float32 = {"rtol": 1e-6, "atol": 1e-7}
    torch.testing.assert_close(
        loss.odds_ratio_weight * out.terms["odds_ratio"], odds_ratio.detach(), **float32
    )
    assert_same(out.loss, nll + odds_ratio, case, float32)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 1.33)])
def test_kto_equals_trl_kto(weights):
    """Our records give B desirable and B undesirable examples; TRL's KL pairs are our chosen@negative[0]."""
    loss = build_loss(
        {"_target_": "mmpo.losses.KTOLoss", "desirable_weight": weights[0], "undesirable_weight": weights[1]}
    )
    case = Case.draw(6, scale=10.0)
    trainer = stand_in(
        beta=loss.beta,
        loss_type="kto",
        calculate_KL=True,
        desirable_weight=weights[0],
        undesirable_weight=weights[1],
        _compute_kl_logps=lambda model, batch: torch.cat([case.negative, case.negative]),
    )
    batch = {
        **case.batch(),
        "label": torch.tensor([True] * RECORDS + [False] * RECORDS),
        "ref_logps": case.reference,
        "ref_KL_logps": torch.cat([case.negative_reference, case.negative_reference]),
    }
    theirs = KTOTrainer._compute_loss(trainer, case.model, batch, False)
    assert_same(loss(*case.ours()).loss, theirs, case)
