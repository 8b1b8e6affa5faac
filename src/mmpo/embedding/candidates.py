"""Offline candidate sets for MAPLE: hard-negative images and texts per anchor (methods.md §3.3).

**From data** (:func:`build_from_pairs`), for (image, caption) pairs:

1. embed every distinct image with a local vision model (DINOv2 in the paper; any Hugging Face vision
   model directory through ``AutoModel`` / ``AutoImageProcessor``, PIL backend): its
   ``pooler_output`` where it has one (DINOv2: the normalised CLS token), else the mean of
   ``last_hidden_state``; L2-normalised, so inner product = cosine;
2. near-duplicate removal, SemDeDup-style: walking the images in data order, an image whose cosine
   with an earlier *kept* image exceeds ``dedup_threshold`` is dropped, with all its pairs
   (SemDeDup proper first clusters with k-means and keeps, per group, the item farthest from its
   centroid; the threshold rule is the same). ``None`` keeps everything;
3. for every kept image, its ``k`` nearest kept images (exact inner-product search, faiss
   ``IndexFlatIP``), itself excluded: the image candidates; their captions are the text candidates
   (MAPLE generates comparative texts with a 72B MLLM instead, which is not available offline).

**From the shapes world** (:func:`build_from_shapes`): the candidates of each scene's caption record
(the row's id) are the scene's one-attribute variants (:mod:`mmpo.data.shapes_variants`), ``k`` of them
taken round-robin over colour, shape and position (seeded), rendered to ``<out dir>/candidate_images/``
and described.

Output: one JSON line per anchor, paths relative to the output file::

    {"id", "image", "text", "image_candidates": [k paths], "text_candidates": [k texts],
     "similarities": [k cosines] (data mode) | "attributes": [k attributes] (shapes mode)}
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mmpo.data import shapes
from mmpo.data.shapes_variants import ATTRIBUTES, variants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    id: str
    image: str
    text: str


def load_vision_model(directory: str | Path):
    """``(model, image processor)`` of a local Hugging Face vision model directory (no download)."""
    from transformers import AutoImageProcessor, AutoModel

    from mmpo.models.loading import check_model_dir

    directory = check_model_dir(directory, key="--vision-model", parts=("processor", "weights"))
    return AutoModel.from_pretrained(directory).eval(), AutoImageProcessor.from_pretrained(
        directory, backend="pil"
    )


@torch.no_grad()
def image_embeddings(model, processor, paths: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """``[N, D]`` float32 unit-norm embeddings of the image files (module docstring, step 1)."""
    rows = []
    for start in tqdm(range(0, len(paths), batch_size), desc="embedding images", unit="batch"):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + batch_size]]
        out = model(**processor(images=images, return_tensors="pt"))
        pooled = getattr(out, "pooler_output", None)
        features = pooled if pooled is not None else out.last_hidden_state.mean(1)
        rows.append(torch.nn.functional.normalize(features.float(), dim=-1))
    return torch.cat(rows).numpy()


def _index(embeddings: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def near_duplicate_keep(embeddings: np.ndarray, threshold: float | None) -> np.ndarray:
    """Boolean mask of the images kept by greedy near-duplicate removal (module docstring, step 2)."""
    keep = np.ones(len(embeddings), dtype=bool)
    if threshold is None:
        return keep
    limits, _, neighbours = _index(embeddings).range_search(
        np.ascontiguousarray(embeddings, dtype=np.float32), threshold
    )
    for i in range(len(embeddings)):
        if keep[i]:
            close = neighbours[limits[i] : limits[i + 1]]
            keep[close[close > i]] = False
    return keep


def nearest_neighbours(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [N, k], cosines [N, k])`` of each row's k nearest other rows, best first."""
    if k >= len(embeddings):
        raise ValueError(f"k={k} nearest neighbours need more than {k} images, got {len(embeddings)}")
    queries = np.ascontiguousarray(embeddings, dtype=np.float32)
    similarities, indices = _index(embeddings).search(queries, k + 1)
    rows_i, rows_s = [], []
    for row, (found, sims) in enumerate(zip(indices, similarities, strict=True)):
        others = found != row
        rows_i.append(found[others][:k])
        rows_s.append(sims[others][:k])
    return np.stack(rows_i), np.stack(rows_s)


def build_from_pairs(
    pairs: Sequence[Pair],
    embeddings: np.ndarray,
    k: int,
    dedup_threshold: float | None = 0.95,
) -> list[dict]:
    """Candidate rows for ``pairs`` given the embedding of each distinct image (in first-seen order)."""
    images = list(dict.fromkeys(p.image for p in pairs))
    if len(images) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings for {len(images)} distinct images")
    keep = near_duplicate_keep(embeddings, dedup_threshold)
    log.info("near-duplicate removal kept %d of %d images", keep.sum(), len(keep))
    kept = [image for image, kept in zip(images, keep, strict=True) if kept]
    neighbours, similarities = nearest_neighbours(embeddings[keep], k)
    position = {image: i for i, image in enumerate(kept)}
    caption = {}
    for pair in pairs:
        caption.setdefault(pair.image, pair.text)
    rows = []
    for pair in pairs:
        if pair.image not in position:
            continue
        i = position[pair.image]
        found = [kept[j] for j in neighbours[i]]
        rows.append(
            {
                "id": pair.id,
                "image": pair.image,
                "text": pair.text,
                "image_candidates": found,
                "text_candidates": [caption[image] for image in found],
                "similarities": [round(float(s), 6) for s in similarities[i]],
            }
        )
    return rows


def round_robin_variants(scene: shapes.Scene, k: int, seed: int) -> list[tuple[str, shapes.Scene]]:
    """Up to ``k`` (attribute, variant) of ``scene``, one attribute after another, each list shuffled by
    a generator seeded with ``(seed, scene id)``."""
    rng = random.Random(f"{seed}:{scene.id}")
    pools = {}
    for attribute in ATTRIBUTES:
        options = variants(scene, attribute)
        pools[attribute] = rng.sample(options, len(options))
    chosen: list[tuple[str, shapes.Scene]] = []
    while len(chosen) < k and any(pools.values()):
        for attribute in ATTRIBUTES:
            if pools[attribute] and len(chosen) < k:
                chosen.append((attribute, pools[attribute].pop()))
    return chosen


def build_from_shapes(
    scenes: Iterable[tuple[shapes.Scene, str]], out_dir: Path, k: int, seed: int = 0, image_size: int = 64
) -> list[dict]:
    """Candidate rows for ``(scene, image path)``; variant images are written under ``out_dir``."""
    image_dir = out_dir / "candidate_images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for scene, image in tqdm(list(scenes), desc="shapes candidates", unit="scene"):
        chosen = round_robin_variants(scene, k, seed)
        paths = []
        for _, variant in chosen:
            paths.append(image_dir / f"{variant.id}.png")
            shapes.render(variant, image_size).save(paths[-1])
        rows.append(
            {
                "id": f"{scene.id}-caption",  # the scene's caption record (mmpo.data.shapes.scene_records)
                "image": image,
                "text": shapes.describe(scene.objects),
                "image_candidates": [str(p) for p in paths],
                "text_candidates": [shapes.describe(v.objects) for _, v in chosen],
                "attributes": [attribute for attribute, _ in chosen],
            }
        )
    return rows


def write_rows(rows: Sequence[dict], out_file: Path) -> None:
    """JSON lines with every path made relative to ``out_file``'s directory."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    base = out_file.parent.resolve()

    def relative(path: str) -> str:
        return os.path.relpath(Path(path).resolve(), base)

    with out_file.open("w", encoding="utf-8") as handle:
        for row in rows:
            moved = {**row, "image": relative(row["image"])}
            moved["image_candidates"] = [relative(p) for p in row["image_candidates"]]
            handle.write(json.dumps(moved) + "\n")
