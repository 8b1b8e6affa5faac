"""MAPLE's modality-gap diagnostic: how matched and unmatched image-text scores are distributed.

For a score matrix ``S[t, i]`` (cosine similarity of an embedder, or a reward MLLM's alignment score)
with a boolean ``positive[t, i]`` (text t describes image i)::

    matched   = { S[t, i] : positive[t, i] }       unmatched = { S[t, i] : not positive[t, i] }
    W_disc    = W1(matched, unmatched)                                          (higher is better)
    W_dist    = ( W1(matched, matched_ref) + W1(unmatched, unmatched_ref) ) / 2   (lower is better)

with ``W1`` the 1-Wasserstein distance of the two empirical distributions
(``scipy.stats.wasserstein_distance``) and ``*_ref`` the distributions of a reference model on the same
pairs (MAPLE: the reward MLLM). The paper measures both on MMVP and reports that MAPLE lowers
``W_dist-gap`` and raises ``W_disc-gap`` (methods.md §3.6); their exact definitions are [?], these are
our reading [I]. ``W_dist`` compares raw scores, so both models' scores must be on one scale (e.g. map
cosine to ``(1 + cos) / 2`` before comparing it with probabilities).

:func:`plot_modality_gap` draws the two histograms of each model side by side, titled with its
``W_disc`` (and ``W_dist`` to the reference, when given).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import Tensor

ScoredPairs = tuple[Tensor, Tensor]
"""(scores [T, I], positive [T, I])."""


def score_distributions(scores: Tensor, positive: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(matched, unmatched)`` scores as float64 arrays."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    mask = torch.as_tensor(positive, dtype=torch.bool)
    if s.shape != mask.shape:
        raise ValueError(f"scores {tuple(s.shape)} and positive {tuple(mask.shape)} must have one shape")
    if not mask.any() or mask.all():
        raise ValueError("the modality gap needs both matched and unmatched pairs")
    return s[mask].numpy(), s[~mask].numpy()


def wasserstein_gaps(scores: Tensor, positive: Tensor, reference: Tensor | None = None) -> dict[str, float]:
    """``W_disc`` of ``scores``, and ``W_dist`` to ``reference`` scores of the same pairs when given."""
    matched, unmatched = score_distributions(scores, positive)
    gaps = {"W_disc": float(wasserstein_distance(matched, unmatched))}
    if reference is not None:
        ref_matched, ref_unmatched = score_distributions(reference, positive)
        gaps["W_dist"] = float(
            (wasserstein_distance(matched, ref_matched) + wasserstein_distance(unmatched, ref_unmatched)) / 2
        )
    return gaps


def plot_modality_gap(
    models: Mapping[str, ScoredPairs],
    out_file: str | Path,
    reference: str | None = None,
    bins: int = 40,
) -> Path:
    """Histograms of matched vs unmatched scores, one panel per model (``name -> (scores, positive)``);
    ``reference`` names the model the others' ``W_dist`` is measured to. Writes ``out_file`` (any
    format matplotlib writes) and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if reference is not None and reference not in models:
        raise ValueError(f"modality gap: reference {reference!r} is not among the models {sorted(models)}")
    figure, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3), squeeze=False)
    for axis, (name, (scores, positive)) in zip(axes[0], models.items(), strict=True):
        matched, unmatched = score_distributions(scores, positive)
        ref = None if reference in (None, name) else models[reference][0]
        gaps = wasserstein_gaps(scores, positive, ref)
        axis.hist(unmatched, bins=bins, density=True, alpha=0.6, label="unmatched")
        axis.hist(matched, bins=bins, density=True, alpha=0.6, label="matched")
        axis.set_title(f"{name}\n" + ", ".join(f"{k} = {v:.3f}" for k, v in gaps.items()), fontsize=9)
        axis.set_xlabel("score")
        axis.legend(fontsize=8)
    figure.tight_layout()
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out
