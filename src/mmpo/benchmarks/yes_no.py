"""Yes/no answers: a tolerant rule extractor and binary confusion metrics.

:func:`extract_yes_no` follows VLMEvalKit's ``YOrN_Extraction``: lower-case, punctuation to spaces,
split into words; "yes" without "no" -> ``"yes"``, "no" without "yes" -> ``"no"``, anything else
(neither, or both) -> ``"unknown"``. POPE and AMBER have their own official parsers
(:mod:`~mmpo.benchmarks.pope`, :mod:`~mmpo.benchmarks.amber`); HallusionBench's offline route uses this one.

:func:`binary_metrics` counts with one class declared positive:
``accuracy = (TP + TN) / N``, ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``,
``F1 = 2PR / (P + R + eps)`` and ``positive_ratio = (TP + FP) / N`` (the share of positive
predictions, e.g. POPE's yes-ratio). A prediction that is neither class (``"unknown"``) is wrong and
never positive. Empty denominators give 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mmpo.benchmarks.base import ratio

_NON_WORD = re.compile(r"[^\w\s]")


def extract_yes_no(answer: str) -> str:
    """``"yes"``, ``"no"`` or ``"unknown"`` by whole-word presence (see module docstring)."""
    words = set(_NON_WORD.sub(" ", answer.lower()).split())
    if "yes" in words and "no" not in words:
        return "yes"
    if "no" in words and "yes" not in words:
        return "no"
    return "unknown"


def binary_metrics(
    predictions: Sequence[str], labels: Sequence[str], positive: str, eps: float = 0.0
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and positive ratio of ``predictions`` against ``labels``."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    tp = sum(p == positive and t == positive for p, t in zip(predictions, labels, strict=True))
    fp = sum(p == positive and t != positive for p, t in zip(predictions, labels, strict=True))
    fn = sum(p != positive and t == positive for p, t in zip(predictions, labels, strict=True))
    correct = sum(p == t for p, t in zip(predictions, labels, strict=True))
    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall + eps)
    return {
        "accuracy": ratio(correct, len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_ratio": ratio(tp + fp, len(labels)),
    }
