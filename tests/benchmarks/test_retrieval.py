"""Retrieval metrics: Recall@K in both directions with several captions per image, Winoground scores."""

import pytest
import torch

from mmpo.benchmarks.retrieval import recall_at_k, winoground_scores


def test_recall_at_k_by_hand():
    # 5 captions for 3 images: captions 0,1 -> image 0; caption 2 -> image 1; captions 3,4 -> image 2.
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.3],  # gt 0, rank 0
            [0.2, 0.5, 0.4],  # gt 0, two images score higher -> rank 2
            [0.1, 0.3, 0.3],  # gt 1, tied with image 2 -> tie counts against it -> rank 1
            [0.0, 0.2, 0.7],  # gt 2, rank 0
            [0.6, 0.1, 0.5],  # gt 2, rank 1
        ]
    )
    # image -> text: image 0's best caption (0.9) beats all others -> rank 0; image 1's caption 2 (0.3)
    # is beaten by caption 1 (0.5) -> rank 1; image 2's best caption 3 (0.7) is top -> rank 0.
    metrics = recall_at_k(scores, [0, 0, 1, 2, 2], ks=(1, 2, 3))
    assert metrics == pytest.approx(
        {"t2i/R@1": 2 / 5, "t2i/R@2": 4 / 5, "t2i/R@3": 1.0, "i2t/R@1": 2 / 3, "i2t/R@2": 1.0, "i2t/R@3": 1.0}
    )


def test_recall_at_k_ties_count_against_the_query():
    metrics = recall_at_k(torch.ones(2, 2), [0, 1], ks=(1, 2))
    assert metrics == pytest.approx({"t2i/R@1": 0.0, "t2i/R@2": 1.0, "i2t/R@1": 0.0, "i2t/R@2": 1.0})


def test_recall_at_k_checks_its_inputs():
    with pytest.raises(ValueError, match="at least one caption"):
        recall_at_k(torch.eye(2), [0, 0])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(torch.eye(2), [0, 2])


def test_winoground_scores_by_hand():
    # scores[n, caption, image]
    scores = torch.tensor(
        [
            [[0.9, 0.2], [0.1, 0.8]],  # text yes, image yes -> group yes
            [[0.5, 0.6], [0.4, 0.7]],  # text yes (0.5 > 0.4, 0.7 > 0.6), image no (0.5 < 0.6)
            [[0.5, 0.5], [0.5, 0.5]],  # all ties: nothing
            [[0.3, 0.1], [0.4, 0.2]],  # text no (0.3 < 0.4), image no (0.2 < 0.4)
        ]
    )
    assert winoground_scores(scores) == pytest.approx({"text": 2 / 4, "image": 1 / 4, "group": 1 / 4})
