"""Cross-modal retrieval from embeddings: Recall@K, and the base of every benchmark scored from embeddings.

**Recall@K** (the CLIP convention, LAION CLIP_benchmark ``metrics/zeroshot_retrieval.py``;
benchmarks.md §7) for a cosine-similarity matrix ``S[t, i]`` between ``T`` texts and ``I`` images where
text ``t`` describes image ``g(t)`` (COCO: about 5 captions per image):

- text -> image: ``R@K = mean_t [g(t) is among the K highest S[t, :]]``;
- image -> text: ``R@K = mean_i [some t with g(t) = i is among the K highest S[:, i]]``.

Ties (``ties``, one of :data:`TIE_CONVENTIONS`):

- ``pessimistic`` (default): a query hits iff ``#{j not ground truth: S_j >= S_gt} < K`` (for image ->
  text ``S_gt`` is its best-scoring caption), so an equal score counts against the query and an
  all-equal matrix scores ``R@K = 0`` for K below the number of candidates. Independent of the order
  of the data.
- ``topk``: CLIP_benchmark's own rule, a hit iff a ground truth is among the indices ``torch.topk``
  returns; among tied scores that is whichever the kernel picks, so results can depend on data order
  and device. Without ties both agree.

CLIP_benchmark names these numbers ``image_retrieval_recall@K`` (text -> image) and
``text_retrieval_recall@K`` (image -> text); here they are ``t2i/R@K`` and ``i2t/R@K``.

**Benchmarks scored from embeddings** (:class:`EmbeddingBenchmark`): ``items()`` reads the public files
as for every benchmark; instead of generated text, :meth:`EmbeddingBenchmark.evaluate` takes an
:class:`Encoder` (``encode_images(images) -> [N, D]``, ``encode_texts(texts) -> [M, D]``, e.g.
:class:`mmpo.embedding.embedder.Embedder`), embeds in batches of ``batch_size`` without gradients,
L2-normalises, and returns ``(metrics, per-item records)``.

:class:`KarpathyRetrieval` (``coco_retrieval``, ``flickr30k_retrieval``): the Karpathy split files
``dataset_coco.json`` / ``dataset_flickr30k.json`` (``{"images": [{"filename", "filepath"?, "split",
"sentences": [{"raw"}, ...]}, ...]}``); the images of ``split`` (``test``: COCO 5k images, Flickr30K
1k) under ``image_dir`` (joined with ``filepath`` where given, e.g. ``val2014``), every caption
(``captions_per_image`` keeps the first n).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from mmpo.benchmarks.base import Benchmark, EvalItem

TIE_CONVENTIONS = ("pessimistic", "topk")


def recall_at_k(
    similarity: Tensor,
    text_to_image: Sequence[int] | Tensor,
    ks: Sequence[int] = (1, 5, 10),
    ties: str = "pessimistic",
) -> dict[str, float]:
    """``t2i/R@K`` and ``i2t/R@K`` for a ``[texts, images]`` similarity matrix and each text's image index."""
    if ties not in TIE_CONVENTIONS:
        raise ValueError(f"retrieval ties={ties!r}; allowed: {list(TIE_CONVENTIONS)}")
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
    metrics = {}
    for k in ks:
        hits = _hits(scores, positive, k, ties), _hits(scores.T, positive.T, k, ties)
        metrics[f"t2i/R@{k}"], metrics[f"i2t/R@{k}"] = (float(h.double().mean()) for h in hits)
    return metrics


def _hits(scores: Tensor, positive: Tensor, k: int, ties: str) -> Tensor:
    """Per query (row): is a positive column among the row's K best, under the tie convention."""
    if ties == "topk":
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices
        return positive.gather(1, top).any(dim=1)
    best_positive = scores.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
    rank = ((scores >= best_positive) & ~positive).sum(dim=1)
    return rank < k


class Encoder(Protocol):
    """What the embedding benchmarks call: unit-norm (or any) embeddings, one row per input."""

    def encode_images(self, images: Sequence[Image.Image]) -> Tensor: ...

    def encode_texts(self, texts: Sequence[str]) -> Tensor: ...


def open_image(path: str | Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class EmbeddingBenchmark(Benchmark):
    """Base of the benchmarks scored from an :class:`Encoder`'s embeddings (module docstring).

    Args (besides :class:`~mmpo.benchmarks.base.Benchmark`'s): batch_size: inputs per encoder call.
    """

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size

    kind = "embedding"

    @abc.abstractmethod
    def evaluate(self, encoder: Encoder) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Embed this benchmark's images and texts with ``encoder`` and score them."""

    def run(self, model: Encoder, items: list[EvalItem]) -> tuple[dict[str, float], list[dict[str, Any]]]:
        return self.evaluate(model)

    def score(self, items: list[EvalItem], outputs: dict[str, str]):
        raise TypeError(
            f"{self.name} is scored from embeddings, not generated text: call evaluate(encoder) with an "
            "object that has encode_images and encode_texts"
        )

    def embed(
        self, encode: Callable[[list], Tensor], inputs: Sequence, load: Callable | None = None
    ) -> Tensor:
        """``[len(inputs), D]`` float32 unit-norm rows of ``encode`` over ``inputs`` in batches; ``load``
        maps each input first (e.g. :func:`open_image` for paths)."""
        rows = []
        with torch.no_grad():
            for start in range(0, len(inputs), self.batch_size):
                chunk = list(inputs[start : start + self.batch_size])
                rows.append(encode([load(x) for x in chunk] if load else chunk).float().cpu())
        return F.normalize(torch.cat(rows), dim=-1)

    def embed_images(self, encoder: Encoder, images: Sequence[str | Path | Image.Image]) -> Tensor:
        return self.embed(
            encoder.encode_images, images, lambda x: x if isinstance(x, Image.Image) else open_image(x)
        )

    def embed_texts(self, encoder: Encoder, texts: Sequence[str]) -> Tensor:
        return self.embed(encoder.encode_texts, texts)


class KarpathyRetrieval(EmbeddingBenchmark):
    """COCO / Flickr30K image-text retrieval on a Karpathy split (module docstring); R@K both ways."""

    name = "retrieval"
    source = (
        "the Karpathy split files (dataset_coco.json / dataset_flickr30k.json, e.g. from the "
        "'karpathy splits' archive of NeuralTalk) and the COCO 2014 / Flickr30K images, downloaded beforehand"
    )

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        annotation_file: str = "dataset_coco.json",
        image_dir: str = "images",
        split: str = "test",
        captions_per_image: int | None = None,
        ks: Sequence[int] = (1, 5, 10),
        ties: str = "pessimistic",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        if ties not in TIE_CONVENTIONS:
            raise ValueError(f"{self.name}: ties={ties!r}; allowed: {list(TIE_CONVENTIONS)}")
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        self.split = split
        self.captions_per_image = captions_per_image
        self.ks = tuple(ks)
        self.ties = ties

    def data_files(self) -> list[Path]:
        return self.under_root(self.annotation_file)

    def items(self) -> list[EvalItem]:
        """One item per image of ``split``, its captions in ``meta["captions"]``."""
        root = self.require(self.annotation_file)
        images = json.loads((root / self.annotation_file).read_text(encoding="utf-8"))["images"]
        image_dir = self.resolve(self.image_dir)
        items = []
        for entry in images:
            if entry["split"] != self.split:
                continue
            captions = [sentence["raw"].strip() for sentence in entry["sentences"]][: self.captions_per_image]
            if not captions:
                raise ValueError(f"{root / self.annotation_file}: image {entry['filename']!r} has no caption")
            location = image_dir / entry.get("filepath", "") / entry["filename"]
            items.append(EvalItem(entry["filename"], str(location), "", {"captions": captions}))
        if not items:
            raise ValueError(f"{root / self.annotation_file}: no image has split {self.split!r}")
        return self.truncate(items)

    def evaluate(self, encoder: Encoder) -> tuple[dict[str, float], list[dict[str, Any]]]:
        items = self.items()
        texts = [caption for item in items for caption in item.meta["captions"]]
        text_to_image = [i for i, item in enumerate(items) for _ in item.meta["captions"]]
        similarity = self.embed_texts(encoder, texts) @ self.embed_images(encoder, [i.image for i in items]).T
        metrics = recall_at_k(similarity, text_to_image, self.ks, self.ties)
        best = similarity.argmax(dim=1).tolist()
        records = [
            {"id": f"{items[g].id}#{t}", "text": text, "image": items[g].id, "top1": items[best[t]].id}
            for t, (text, g) in enumerate(zip(texts, text_to_image, strict=True))
        ]
        return metrics, records
