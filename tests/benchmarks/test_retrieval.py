"""Recall@K in both directions with several captions per image, both tie conventions, and the Karpathy
benchmark end to end on a colour-coded encoder."""

import pytest
import torch

from mmpo.benchmarks.base import BenchmarkDataMissing
from mmpo.benchmarks.retrieval import KarpathyRetrieval, recall_at_k

from .colour_encoder import COLOURS, ColourEncoder
from .fixtures import write_image, write_json


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


def clip_benchmark_recall(scores: torch.Tensor, positive: torch.Tensor, k: int) -> float:
    """CLIP_benchmark's formula re-run: top-k indices one-hot, true positives counted, hit iff > 0."""
    top = torch.nn.functional.one_hot(scores.topk(k, dim=1).indices, num_classes=scores.shape[1])
    true_positives = (top * positive[:, None, :]).sum(dim=(1, 2))
    return float((true_positives / positive.sum(1) > 0).float().mean())


def test_topk_convention_is_clip_benchmarks_and_agrees_without_ties():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(12, 4, generator=generator)  # continuous: no ties
    targets = torch.tensor([0, 1, 2, 3] * 3)
    positive = torch.nn.functional.one_hot(targets, 4).bool()
    topk = recall_at_k(scores, targets, ks=(1, 2), ties="topk")
    for k in (1, 2):
        assert topk[f"t2i/R@{k}"] == pytest.approx(clip_benchmark_recall(scores, positive, k))
        assert topk[f"i2t/R@{k}"] == pytest.approx(clip_benchmark_recall(scores.T, positive.T, k))
    assert recall_at_k(scores, targets, ks=(1, 2)) == pytest.approx(topk)
    # with ties, a pessimistic hit is a hit whatever order topk breaks them in: never more hits
    tied = torch.randint(0, 3, (12, 4), generator=generator).float()
    pessimistic = recall_at_k(tied, targets, ks=(1, 2, 3))
    broken = recall_at_k(tied, targets, ks=(1, 2, 3), ties="topk")
    assert all(pessimistic[key] <= broken[key] for key in pessimistic)
    assert any(pessimistic[key] < broken[key] for key in pessimistic)


def test_recall_at_k_checks_its_inputs():
    with pytest.raises(ValueError, match="at least one caption"):
        recall_at_k(torch.eye(2), [0, 0])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(torch.eye(2), [0, 2])
    with pytest.raises(ValueError, match=r"allowed: \['pessimistic', 'topk'\]"):
        recall_at_k(torch.eye(2), [0, 1], ties="random")


def write_karpathy(root):
    images = []
    for name, colour, captions, split in [
        ("r.jpg", "red", ["a red thing", "red"], "test"),
        ("g.jpg", "green", ["green"], "test"),
        ("b.jpg", "blue", ["blue", "green"], "test"),  # the second caption is wrong
        ("x.jpg", "red", ["red"], "train"),  # not in the test split
    ]:
        write_image(root / "images" / "val2014" / name, COLOURS[colour])
        entry = {"filepath": "val2014", "filename": name, "split": split}
        images.append({**entry, "sentences": [{"raw": c} for c in captions]})
    write_json(root / "dataset_coco.json", {"images": images, "dataset": "coco"})


def test_karpathy_retrieval_end_to_end(tmp_path):
    write_karpathy(tmp_path)
    benchmark = KarpathyRetrieval(str(tmp_path), ks=(1, 2, 3), batch_size=2)
    encoder = ColourEncoder()
    metrics, records = benchmark.evaluate(encoder)
    # t2i: caption "green" of the blue image ranks behind green (1 > 0) and red (tie 0 = 0) -> rank 2.
    # i2t: the green image's caption ties with the blue image's "green" caption -> rank 1.
    assert metrics == pytest.approx(
        {"t2i/R@1": 4 / 5, "t2i/R@2": 4 / 5, "t2i/R@3": 1.0, "i2t/R@1": 2 / 3, "i2t/R@2": 1.0, "i2t/R@3": 1.0}
    )
    assert max(encoder.calls) <= 2  # batched
    assert [r["image"] for r in records] == ["r.jpg", "r.jpg", "g.jpg", "b.jpg", "b.jpg"]
    assert records[-1]["top1"] == "g.jpg"
    first_only = KarpathyRetrieval(str(tmp_path), captions_per_image=1, ks=(1,))
    assert first_only.evaluate(ColourEncoder())[0] == pytest.approx({"t2i/R@1": 1.0, "i2t/R@1": 1.0})


def test_karpathy_retrieval_data_missing_and_not_generative(tmp_path):
    with pytest.raises(BenchmarkDataMissing, match="dataset_coco.json"):
        KarpathyRetrieval(str(tmp_path)).items()
    write_karpathy(tmp_path)
    benchmark = KarpathyRetrieval(str(tmp_path))
    with pytest.raises(TypeError, match="evaluate\\(encoder\\)"):
        benchmark.score(benchmark.items(), {})
    with pytest.raises(ValueError, match="no image has split 'val'"):
        KarpathyRetrieval(str(tmp_path), split="val").items()
