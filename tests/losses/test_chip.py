"""CHiP against values computed by hand from the official code's formulas (``chip_loss``,
``compute_weighted_logp``, ``chip_get_batch_logps``, ``get_seg_weight``) on a constructed example whose diff
is known, the stop-gradient of its token level, and its requirements and start-up checks."""

from __future__ import annotations

import math

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, TokenLogProbs
from mmpo.config import ConfigError
from mmpo.losses import CHiPLoss, DPOLoss, LossInputs, Requirements
from mmpo.losses.segments import modified_tokens, segment_weights
from mmpo.train import check_run

VOCAB = 16
# record 0: one substituted segment (two tokens each side) between matches of 3 tokens
# record 1: the match "5" is shorter than min_match 3, so [10 5 11] and [12 5 13] form one modified segment
CHOSEN_IDS = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 10, 5, 11, 6, 7, 8]]
REJECTED_IDS = [[1, 2, 3, 9, 9, 6, 7, 8], [1, 2, 3, 4, 12, 5, 13, 6, 7, 8]]
W = 4.0
# the weights the code's get_seg_weight gives them (dpo_token_weight = 4), 0 on padding
CHOSEN_WEIGHTS = [[1, 1, 1, W, W, 1, 1, 1, 0, 0], [1, 1, 1, 1, W, W, W, 1, 1, 1]]
REJECTED_WEIGHTS = [[1, 1, 1, W, W, 1, 1, 1, 0, 0], [1, 1, 1, 1, W, W, W, 1, 1, 1]]


def test_modified_tokens_follow_the_codes_diff():
    assert modified_tokens(REJECTED_IDS[0], CHOSEN_IDS[0], 3) == ([3, 4], [3, 4])
    assert modified_tokens(REJECTED_IDS[1], CHOSEN_IDS[1], 3) == ([4, 5, 6], [4, 5, 6])
    assert modified_tokens(REJECTED_IDS[1], CHOSEN_IDS[1], 1) == ([4, 6], [4, 6])  # "5" now matches
    # a pure insertion (one side's span empty) is not a modification; no match at all modifies everything
    assert modified_tokens([1, 2, 3, 20, 4, 5, 6], [1, 2, 3, 4, 5, 6], 3) == ([], [])
    assert modified_tokens([3, 4, 5], [1, 2], 3) == ([0, 1, 2], [0, 1])


def table(ids: list[list[int]], generator: torch.Generator, vocab: bool = True) -> TokenLogProbs:
    """Token tables as the engine returns them: random distributions, the tokens' log-probs picked."""
    width = max(map(len, ids))
    mask = torch.tensor([[t < len(row) for t in range(width)] for row in ids])
    padded = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    distributions = torch.log_softmax(torch.randn(len(ids), width, VOCAB, generator=generator), -1)
    distributions = distributions.masked_fill(~mask[..., None], 0.0)
    logps = distributions.gather(-1, padded[..., None]).squeeze(-1).masked_fill(~mask, 0.0)
    return TokenLogProbs(logps, padded, mask, distributions if vocab else None)


def example(seed: int = 0, reference_is_policy: bool = False):
    g = torch.Generator().manual_seed(seed)
    policy_tokens = {
        CHOSEN: table(CHOSEN_IDS, g),
        REJECTED: table(REJECTED_IDS, g),
        CHOSEN_NEGATIVE: table(CHOSEN_IDS, g),
    }
    reference_tokens = (
        policy_tokens
        if reference_is_policy
        else {
            CHOSEN: table(CHOSEN_IDS, g),
            REJECTED: table(REJECTED_IDS, g),
            CHOSEN_NEGATIVE: table(CHOSEN_IDS, g),
        }
    )
    policy = {b: t.logps.sum(-1) for b, t in policy_tokens.items()}
    reference = {b: t.logps.sum(-1) for b, t in reference_tokens.items()}
    counts = {b: t.mask.sum(-1) for b, t in policy_tokens.items()}
    return policy, reference, LossInputs(counts, None, policy_tokens, reference_tokens)


def weighted(tables, branch, i: int, w: list[float]) -> float:
    """compute_weighted_logp of record i: sum_t w_t log p_t."""
    return sum(w[t] * tables[branch].logps[i, t].item() for t in range(len(w)))


def kl(reference, policy, branch, i: int) -> float:
    """chip_get_batch_logps' per-position KL(p_ref || p_pi), summed over record i's response tokens."""
    total = 0.0
    for t in range(int(policy[branch].mask[i].sum())):
        ref, pol = reference[branch].vocab[i, t].tolist(), policy[branch].vocab[i, t].tolist()
        total += sum(math.exp(a) * (a - b) for a, b in zip(ref, pol, strict=True))
    return total


def by_hand(policy, reference, inputs, beta=0.1, tok_beta=0.1, scaled=True) -> float:
    """The code's chip_loss, one record at a time in plain Python."""
    P, R = inputs.policy_tokens, inputs.reference_tokens
    losses = []
    for i in range(2):
        wc, wr = CHOSEN_WEIGHTS[i], REJECTED_WEIGHTS[i]
        pc, pr, pcn = (
            weighted(P, CHOSEN, i, wc),
            weighted(P, REJECTED, i, wr),
            weighted(P, CHOSEN_NEGATIVE, i, wc),
        )
        rc, rr = weighted(R, CHOSEN, i, wc), weighted(R, REJECTED, i, wr)
        # compute_weighted_logp of the 1-D reference sum under the noised image: sum * sum_t w_t
        rcn = (
            reference[CHOSEN_NEGATIVE][i].item() * sum(wc) if scaled else weighted(R, CHOSEN_NEGATIVE, i, wc)
        )
        logits = (pc - pr) - (rc - rr)
        logits += pc - rc
        logits -= pcn - rcn
        logits -= tok_beta * (kl(R, P, REJECTED, i) - kl(R, P, CHOSEN, i))
        losses.append(math.log1p(math.exp(-beta * logits)))
    return sum(losses) / len(losses)


def test_segment_weights_of_the_known_diff():
    _, _, inputs = example()
    chosen, rejected = segment_weights(inputs.policy_tokens[CHOSEN], inputs.policy_tokens[REJECTED], W, 3)
    assert chosen.tolist() == CHOSEN_WEIGHTS and rejected.tolist() == REJECTED_WEIGHTS


@pytest.mark.parametrize("noisy_reference", ["scaled", "weighted"])
def test_chip_equals_the_codes_formula_by_hand(noisy_reference):
    policy, reference, inputs = example()
    loss = CHiPLoss(noisy_reference=noisy_reference)
    expected = by_hand(policy, reference, inputs, scaled=noisy_reference == "scaled")
    assert loss(policy, reference, inputs).loss.item() == pytest.approx(expected, rel=1e-5)


def test_policy_equal_reference_is_log2_only_when_the_noisy_reference_is_weighted():
    policy, reference, inputs = example(reference_is_policy=True)
    assert CHiPLoss(noisy_reference="weighted")(policy, reference, inputs).loss.item() == pytest.approx(
        math.log(2), abs=1e-6
    )
    # the code: v = -(S_ref(y_w|m~) - W * log pi_ref(y_w|m~)), so the loss starts elsewhere
    scaled = CHiPLoss()(policy, reference, inputs).loss.item()
    assert scaled == pytest.approx(by_hand(policy, reference, inputs), rel=1e-5)
    assert abs(scaled - math.log(2)) > 0.1


def test_the_token_level_stops_the_gradient_of_the_chosen_kl():
    policy, reference, inputs = example()
    for branch in (CHOSEN, REJECTED):
        inputs.policy_tokens[branch].vocab.requires_grad_(True)
    CHiPLoss()(policy, reference, inputs).loss.backward()
    chosen = inputs.policy_tokens[CHOSEN].vocab.grad
    assert chosen is None or torch.all(chosen == 0)  # sg(KL(y_w))
    assert inputs.policy_tokens[REJECTED].vocab.grad.abs().max() > 0


def test_every_level_off_is_dpo_on_the_sums_and_reads_no_tokens():
    policy, reference, inputs = example()
    plain = CHiPLoss(segment_level=False, visual=False, token_level=False)
    assert plain.requirements == Requirements((CHOSEN, REJECTED))
    assert torch.allclose(plain(policy, reference, inputs).loss, DPOLoss()(policy, reference).loss)
    full = CHiPLoss().requirements
    assert full.branches == (CHOSEN, REJECTED, CHOSEN_NEGATIVE) and full.negatives == 1
    assert full.token_logps == full.branches and full.token_distributions == (CHOSEN, REJECTED)
    assert CHiPLoss(segment_level=False).requirements.token_logps == (CHOSEN, REJECTED)


def test_chip_runs_checks_name_the_sampler_and_the_reference(compose):
    check_run(compose(["loss=chip", "negative_sampler=diffusion"]))
    with pytest.raises(ConfigError, match=r"loss=chip needs 1 negative image\(s\) per record"):
        check_run(compose(["loss=chip"]))
    with pytest.raises(ConfigError, match=r"reference=precomputed stores sequence log-probs only; loss=chip"):
        check_run(compose(["loss=chip", "negative_sampler=diffusion", "reference=precomputed"]))


@pytest.mark.parametrize("mode", ["batched", "shared_prefix"])
def test_chip_trains_from_log2_with_the_weighted_noisy_reference(compose, mode):
    """Through train.py on the tiny LLaVA: at step 0 (LoRA B = 0) policy == reference, every KL is 0."""
    import csv
    from pathlib import Path

    from mmpo.train import run

    cfg = compose(
        ["loss=chip", "negative_sampler=diffusion", "loss.noisy_reference=weighted", f"engine.mode={mode}"]
    )
    run(cfg)
    with open(Path(cfg.paths.output_dir) / "metrics.csv") as f:
        first = next(r for r in csv.DictReader(f) if r.get("train/loss_step"))
    assert float(first["train/loss_step"]) == pytest.approx(math.log(2), abs=1e-5)
    assert float(first["train/chip/kl_rejected_step"]) == pytest.approx(0.0, abs=1e-6)
