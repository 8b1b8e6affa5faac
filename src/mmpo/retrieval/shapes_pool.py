"""MISP-DPO's candidate pool for the shapes world, built offline in about a minute on a CPU.

The paper retrieves COCO images in CLIP space (methods.md §4.3). Here every part is made from the world:

1. **Gallery**: the world's SFT scenes (:data:`mmpo.data.shapes.SFT_SCENES_PER_SCENE` x ``num_scenes`` of
   them, which no preference record shows), without the scenes that repeat a preference scene (the same
   objects in the same cells render to the same pixels: a copy of the positive is no negative) and
   without repeats among themselves; copied to ``<out>/gallery/``.
2. **CLIP**: the tiny CLIP of :mod:`mmpo.retrieval.tiny_clip`, trained contrastively on the gallery's
   (image, true caption) pairs with transformers' own CLIP loss (``CLIPModel(..., return_loss=True)``,
   learnable temperature). A random tiny CLIP would embed scenes by arbitrary pixel features; trained, it
   puts scenes with the same objects close, as a real CLIP does for COCO. Saved in ``<out>/clip/``.
3. **Pool**: :func:`mmpo.retrieval.pool.build_pool` of the gallery against the records of ``train.jsonl``
   (``<out>/``: manifest, embeddings, candidates).
4. **SAE**: :func:`mmpo.retrieval.sae.fit_sae` on the pool, ``<out>/sae/sae.pt`` (where
   ``negative_sampler=sae`` looks by default).

``scripts/build_shapes_pool.py`` (``make misp-shapes-pool``) runs it for ``experiment=misp_dpo_shapes``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from PIL import Image

from mmpo.data import shapes
from mmpo.retrieval.clip import ClipEmbedder
from mmpo.retrieval.pool import CandidatePool, build_pool
from mmpo.retrieval.sae import fit_sae
from mmpo.retrieval.tiny_clip import build_tiny_clip

SFT_MARK = "-sft-"


def gallery_scenes(world: Path) -> list[tuple[str, str]]:
    """``(scene id, true caption)`` of the SFT scenes that repeat neither a preference scene nor an
    earlier SFT scene (step 1 of the module docstring)."""
    seen, gallery = set(), []
    rows = [json.loads(line) for line in (world / "scenes.jsonl").read_text().splitlines() if line]
    for row in sorted(rows, key=lambda r: SFT_MARK in r["id"]):  # preference scenes first
        objects = tuple(shapes.ShapeObject(**o) for o in row["objects"])
        if objects in seen:
            continue
        seen.add(objects)
        if SFT_MARK in row["id"]:
            gallery.append((row["id"], shapes.describe(objects)))
    return gallery


def train_clip(
    pairs: list[tuple[Path, str]],
    out: Path,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
) -> Path:
    """The tiny CLIP trained on ``(image path, caption)`` pairs with AdamW, saved to ``out``."""
    model, processor = build_tiny_clip(seed)
    pixels = processor.image_processor(
        images=[Image.open(path).convert("RGB") for path, _ in pairs], return_tensors="pt"
    )["pixel_values"]
    tokens = processor.tokenizer([caption for _, caption in pairs], padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(pairs), generator=generator).split(batch_size):
            loss = model(
                input_ids=tokens["input_ids"][batch],
                attention_mask=tokens["attention_mask"][batch],
                pixel_values=pixels[batch],
                return_loss=True,
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_shapes_pool(
    world: str | Path,
    out: str | Path,
    top_m: int = 32,
    clip_epochs: int = 30,
    sae_epochs: int = 20,
    latent_dim: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> CandidatePool:
    """Steps 1-4 of the module docstring for the shapes world at ``world`` (generated already); returns the
    pool, whose SAE is ``<out>/sae/sae.pt``."""
    world, out = Path(world), Path(out)
    if not (world / "scenes.jsonl").is_file():
        raise FileNotFoundError(f"{str(world)!r} holds no shapes world (scenes.jsonl)")
    shutil.rmtree(out, ignore_errors=True)
    (out / "gallery").mkdir(parents=True)
    pairs = []
    for scene_id, caption in gallery_scenes(world):
        target = out / "gallery" / f"{scene_id}.png"
        shutil.copyfile(world / "images" / f"{scene_id}.png", target)
        pairs.append((target, caption))
    clip = train_clip(pairs, out / "clip", epochs=clip_epochs, seed=seed)
    pool = build_pool(
        ClipEmbedder.from_path(clip),
        clip,
        out / "gallery",
        world / "train.jsonl",
        out,
        top_m=top_m,
        progress=progress,
    )
    sae, _ = fit_sae(pool, latent_dim=latent_dim, epochs=sae_epochs, seed=seed, progress=progress)
    (out / "sae").mkdir()
    sae.save(out / "sae" / "sae.pt", pool_fingerprint=pool.fingerprint, pool_dir=str(out.resolve()))
    return pool
