"""Selection math: scores, greedy diversity on a constructed case, importance draws' log q and frequencies."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
import torch

from mmpo.retrieval.selection import (
    clip_knn,
    combined_scores,
    greedy_diverse,
    importance_sample,
    select_negatives,
)


def test_combined_scores_by_hand():
    scores = combined_scores(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([3.0, 0.0, 1.0]))
    torch.testing.assert_close(scores, torch.tensor([0.25 + 1.0, 0.5 + 0.0, 1.0 + 1 / 3]))
    torch.testing.assert_close(
        combined_scores(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])), torch.tensor([0.5, 1.0])
    )


# Candidates 0 and 1 have the same latent direction, 2 and 3 another; scores favour 0 > 1 > 2 > 3.
SCORES = torch.tensor([1.0, 0.95, 0.9, 0.2])
LATENTS = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])


def test_greedy_trades_score_for_diversity():
    # beta=1: 0 first (top score); then 2 (0.9 + 1) beats 1 (0.95 + 0) and 3 (0.2 + 1); then 1 (0.95 + 0)
    # beats 3 (0.2 + min(1, 0)).
    assert greedy_diverse(SCORES, LATENTS, 3, diversity_weight=1.0).tolist() == [0, 2, 1]
    # beta=0: plain score order; beta=0.5, k=4: 0, then 2 (0.9 + 0.5), then 1 (0.95 + 0 > 0.2 + 0), then 3
    assert greedy_diverse(SCORES, LATENTS, 3, diversity_weight=0.0).tolist() == [0, 1, 2]
    assert greedy_diverse(SCORES, LATENTS, 4, diversity_weight=0.5).tolist() == [0, 2, 1, 3]
    # beta=0.04: 1 (0.95) beats 2 (0.9 + 0.04) for the second pick
    assert greedy_diverse(SCORES, LATENTS, 2, diversity_weight=0.04).tolist() == [0, 1]


def test_greedy_ties_go_to_the_lowest_index():
    assert greedy_diverse(torch.ones(5), torch.ones(5, 3), 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot select k=5 negatives from 4 candidates"):
        greedy_diverse(SCORES, LATENTS, 5)


# s = (0, ln 2, ln 3), tau = 1: q = (1/6, 2/6, 3/6). For each ordered pair (i, j) of two draws:
# first_draw log q = (log q_i, log q_j); per_draw = (log q_i, log q_j / (1 - q_i)).
Q = [Fraction(1, 6), Fraction(2, 6), Fraction(3, 6)]
PER_DRAW_SECOND = {
    (0, 1): Fraction(2, 5),
    (0, 2): Fraction(3, 5),
    (1, 0): Fraction(1, 4),
    (1, 2): Fraction(3, 4),
    (2, 0): Fraction(1, 3),
    (2, 1): Fraction(2, 3),
}


def test_importance_log_q_by_hand():
    scores = torch.tensor([0.0, math.log(2), math.log(3)], dtype=torch.double)
    seen = set()
    for seed in range(40):
        first, log_q = importance_sample(scores, 2, torch.Generator().manual_seed(seed), log_q="first_draw")
        again, per_draw = importance_sample(scores, 2, torch.Generator().manual_seed(seed), log_q="per_draw")
        i, j = first.tolist()
        assert again.tolist() == [i, j]
        seen.add((i, j))
        torch.testing.assert_close(log_q, torch.tensor([math.log(Q[i]), math.log(Q[j])], dtype=torch.double))
        expected = torch.tensor([math.log(Q[i]), math.log(PER_DRAW_SECOND[i, j])], dtype=torch.double)
        torch.testing.assert_close(per_draw, expected)
    assert len(seen) == 6
    # temperature 2: q ∝ exp(s / 2) = (1, sqrt 2, sqrt 3)
    _, log_q = importance_sample(scores, 3, torch.Generator().manual_seed(0), temperature=2.0)
    total = 1 + math.sqrt(2) + math.sqrt(3)
    assert sorted(log_q.tolist()) == pytest.approx(
        sorted(math.log(x / total) for x in (1, math.sqrt(2), math.sqrt(3)))
    )


def test_importance_draw_frequencies_match_q():
    """Over many seeded draws of 2 of 4: each ordered pair (i, j) comes up with the successive-sampling
    probability q_i q_j / (1 - q_i), and the first draw with q_i (4 standard errors)."""
    scores = torch.tensor([0.0, 0.5, 1.0, 2.0])
    q = torch.softmax(scores.double(), 0).tolist()
    n, generator = 10_000, torch.Generator().manual_seed(1234)
    pairs = Counter(tuple(importance_sample(scores, 2, generator)[0].tolist()) for _ in range(n))
    assert len(pairs) == 12
    for (i, j), count in pairs.items():
        successive = q[i] * q[j] / (1 - q[i])
        assert count / n == pytest.approx(successive, abs=4 * math.sqrt(successive * (1 - successive) / n))
    for i in range(4):
        first = sum(c for (a, _), c in pairs.items() if a == i) / n
        assert first == pytest.approx(q[i], abs=4 * math.sqrt(q[i] * (1 - q[i]) / n))


def test_importance_randomness_comes_from_the_generator():
    scores = torch.linspace(0, 1, 10)
    draw = lambda seed: importance_sample(scores, 3, torch.Generator().manual_seed(seed))[0].tolist()  # noqa: E731
    assert draw(7) == draw(7)
    assert len({tuple(draw(seed)) for seed in range(10)}) > 1
    with pytest.raises(ValueError, match="log_q='last'; allowed: \\['first_draw', 'per_draw'\\]"):
        importance_sample(scores, 3, torch.Generator(), log_q="last")


def test_clip_knn_and_dispatch():
    sims = torch.tensor([0.1, 0.9, 0.5, 0.9])
    assert clip_knn(sims, 3).tolist() == [1, 3, 2]
    indices, log_q = select_negatives("greedy", 3, similarities=sims, scores=SCORES, latents=LATENTS)
    assert indices.tolist() == [0, 2, 1] and log_q is None
    indices, log_q = select_negatives("clip_knn", 2, similarities=sims)
    assert indices.tolist() == [1, 3] and log_q is None
    with pytest.raises(ValueError, match="allowed: \\['greedy', 'importance', 'clip_knn'\\]"):
        select_negatives("random", 2, similarities=sims)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        select_negatives("importance", 2, similarities=sims, scores=SCORES)
