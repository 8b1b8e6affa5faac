"""Cross-modal retrieval metrics from similarity scores (MAPLE's COCO/Flickr30K and Winoground numbers).

Recall@K (CLIP convention, LAION CLIP_benchmark ``zeroshot_retrieval``) for a similarity matrix
``S[t, i]`` between ``T`` texts and ``I`` images where text ``t`` describes image ``g(t)`` (COCO: 5
captions per image):

- text -> image: ``R@K = mean_t [g(t) is among the K highest S[t, :]]``;
- image -> text: ``R@K = mean_i [some t with g(t) = i is among the K highest S[:, i]]``.

"Among the K highest" counts ties against the query: an item with rank ``#{j ≠ gt: S_j ≥ S_gt}``
hits iff that rank is below K (for image -> text the best-scoring ground-truth caption counts), so
an all-equal matrix scores ``R@K = 0`` for K below the number of tied candidates, rather than
whatever order a top-k kernel returns.

Winoground (Thrush et al., 2022) with ``s[n, c, i]`` = score of caption ``c`` with image ``i`` of item
``n``: ``text = s00 > s10 ∧ s11 > s01`` (each image prefers its caption), ``image = s00 > s01 ∧ s11 > s10``
(each caption prefers its image), ``group = text ∧ image``; strict ``>``, so ties are wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def recall_at_k(
    similarity: torch.Tensor, text_to_image: Sequence[int] | torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """``t2i/R@K`` and ``i2t/R@K`` for a ``[texts, images]`` similarity matrix and each text's image index."""
    scores = torch.as_tensor(similarity, dtype=torch.float64)
    targets = torch.as_tensor(text_to_image, dtype=torch.long)
    n_texts, n_images = scores.shape
    if targets.shape != (n_texts,):
        raise ValueError(
            f"text_to_image must have one image index per text ({n_texts}), got {tuple(targets.shape)}"
        )
    if bool(((targets < 0) | (targets >= n_images)).any()):
        raise ValueError("text_to_image holds an index outside the image range")
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(n_texts), targets] = True
    if not bool(positive.any(dim=0).all()):
        raise ValueError("every image needs at least one caption for image -> text recall")

    # text -> image: rank of the ground-truth image among all images in the text's row.
    gt_score = scores[torch.arange(n_texts), targets].unsqueeze(1)
    t2i_rank = (scores >= gt_score).sum(dim=1) - 1
    # image -> text: non-ground-truth captions scoring at least the image's best ground-truth caption.
    best_gt = scores.masked_fill(~positive, float("-inf")).max(dim=0).values
    i2t_rank = ((scores >= best_gt.unsqueeze(0)) & ~positive).sum(dim=0)

    metrics = {}
    for k in ks:
        metrics[f"t2i/R@{k}"] = float((t2i_rank < k).double().mean())
        metrics[f"i2t/R@{k}"] = float((i2t_rank < k).double().mean())
    return metrics


def winoground_scores(scores: torch.Tensor) -> dict[str, float]:
    """Text, image and group score over items ``scores[n, caption, image]`` (shape ``[N, 2, 2]``)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"scores must have shape [N, 2, 2], got {tuple(s.shape)}")
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    group = text & image
    return {
        "text": float(text.double().mean()),
        "image": float(image.double().mean()),
        "group": float(group.double().mean()),
    }
