"""The modality-gap diagnostic: Wasserstein distances by hand and the plot written to disk."""

import pytest
import torch

from mmpo.benchmarks.modality_gap import plot_modality_gap, score_distributions, wasserstein_gaps

POSITIVE = torch.eye(2, dtype=torch.bool)


def test_distributions_and_w1_by_hand():
    scores = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    matched, unmatched = score_distributions(scores, POSITIVE)
    assert sorted(matched) == pytest.approx([0.7, 0.9]) and sorted(unmatched) == pytest.approx([0.1, 0.3])
    # W1 of two equal-size samples = mean |sorted a - sorted b| = (0.6 + 0.6) / 2
    assert wasserstein_gaps(scores, POSITIVE) == pytest.approx({"W_disc": 0.6})
    shifted = scores + 0.25
    assert wasserstein_gaps(scores, POSITIVE, reference=shifted) == pytest.approx(
        {"W_disc": 0.6, "W_dist": 0.25}
    )


def test_needs_both_kinds_of_pairs():
    with pytest.raises(ValueError, match="both matched and unmatched"):
        score_distributions(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bool))


def test_plot_is_written(tmp_path):
    scores = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    out = plot_modality_gap(
        {"clip": (scores, POSITIVE), "mllm": (scores * 0.5, POSITIVE)}, tmp_path / "gap.png", reference="mllm"
    )
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="reference 'x'"):
        plot_modality_gap({"clip": (scores, POSITIVE)}, tmp_path / "g.png", reference="x")
