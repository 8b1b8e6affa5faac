"""Winoground (Thrush et al., CVPR 2022): 400 items of two images and two captions with the same words.

With ``s[n, c, i]`` the similarity of caption ``c`` and image ``i`` of item ``n`` (benchmarks.md §7)::

    text  = s00 > s10  and  s11 > s01      (each image prefers its own caption)
    image = s00 > s01  and  s11 > s10      (each caption prefers its own image)
    group = text and image

Strict ``>``: ties are wrong. The same protocol scores NaturalBench-Retrieval and the shapes world's
fine-grained pairs (:func:`winoground_scores`).

Data layout under ``benchmark.path`` (the Hugging Face ``facebook/winoground`` repository, gated):
``data/examples.jsonl`` (``id``, ``caption_0``, ``caption_1``, ``image_0``, ``image_1`` as file stems,
``collapsed_tag``) and the images ``data/images/<stem>.png`` (unzipped ``data/images.zip``). Metrics:
``text``, ``image``, ``group`` and the same per ``collapsed_tag`` (``Object/text``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmpo.benchmarks.base import EvalItem, read_jsonl
from mmpo.benchmarks.retrieval import EmbeddingBenchmark, Encoder


def winoground_correct(scores: Tensor) -> dict[str, Tensor]:
    """Per item booleans ``text``, ``image``, ``group`` of ``scores[n, caption, image]`` ([N, 2, 2])."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"scores must have shape [N, 2, 2], got {tuple(s.shape)}")
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def winoground_scores(scores: Tensor) -> dict[str, float]:
    """Text, image and group score (the share of items right) over ``scores[n, caption, image]``."""
    return {name: float(right.double().mean()) for name, right in winoground_correct(scores).items()}


def pair_scores(images: Tensor, texts: Tensor) -> Tensor:
    """``[N, 2, 2]`` scores ``s[n, c, i]`` from image rows ``[2N, D]`` (item n: rows 2n, 2n+1) and text
    rows ``[2N, D]`` in the same layout."""
    dim = images.shape[-1]
    return torch.einsum("ncd,nid->nci", texts.reshape(-1, 2, dim), images.reshape(-1, 2, dim))


class PairedBenchmark(EmbeddingBenchmark):
    """Base of the two-image, two-caption benchmarks. Items carry ``meta["images"]`` and
    ``meta["captions"]`` (two each, caption c belongs to image c) and ``meta["tag"]`` (or None);
    :meth:`correct` judges each item from its scores ``s[caption, image]`` (Winoground's rules here).
    Metrics: the share of items right per judgement, overall and per tag (``<tag>/<judgement>``)."""

    def correct(self, scores: Tensor, items: list[EvalItem]) -> dict[str, Tensor]:
        return winoground_correct(scores)

    def evaluate(self, encoder: Encoder) -> tuple[dict[str, float], list[dict[str, Any]]]:
        return self.evaluate_items(encoder, self.items())

    def evaluate_items(
        self, encoder: Encoder, items: list[EvalItem]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        images = self.embed_images(encoder, [p for item in items for p in item.meta["images"]])
        texts = self.embed_texts(encoder, [c for item in items for c in item.meta["captions"]])
        scores = pair_scores(images, texts)
        correct = self.correct(scores, items)
        metrics = {name: float(right.double().mean()) for name, right in correct.items()}
        for tag in dict.fromkeys(item.meta["tag"] for item in items if item.meta["tag"]):
            rows = torch.tensor([item.meta["tag"] == tag for item in items])
            metrics.update(
                {f"{tag}/{name}": float(right[rows].double().mean()) for name, right in correct.items()}
            )
        records = [
            {"id": item.id, "captions": item.meta["captions"], "tag": item.meta["tag"], "scores": scores[n].tolist(),
             **{name: bool(right[n]) for name, right in correct.items()}}
            for n, item in enumerate(items)
        ]  # fmt: skip
        return metrics, records


def paired_item(
    item_id: str, images: Sequence[str], captions: Sequence[str], tag: str | None = None
) -> EvalItem:
    return EvalItem(item_id, images[0], "", {"images": list(images), "captions": list(captions), "tag": tag})


class Winoground(PairedBenchmark):
    """Winoground text / image / group scores from embeddings (module docstring)."""

    name = "winoground"
    source = "the Hugging Face dataset facebook/winoground (gated: accept its terms), downloaded beforehand"

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        annotation_file: str = "data/examples.jsonl",
        image_dir: str = "data/images",
        image_extension: str = ".png",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        self.image_extension = image_extension

    def data_files(self) -> list[Path]:
        return self.under_root(self.annotation_file)

    def items(self) -> list[EvalItem]:
        root = self.require(self.annotation_file)
        image_dir = self.resolve(self.image_dir)
        return self.truncate(
            [
                paired_item(
                    str(row["id"]),
                    [str(image_dir / f"{row[key]}{self.image_extension}") for key in ("image_0", "image_1")],
                    [row["caption_0"], row["caption_1"]],
                    row.get("collapsed_tag"),
                )
                for row in read_jsonl(root / self.annotation_file)
            ]
        )
