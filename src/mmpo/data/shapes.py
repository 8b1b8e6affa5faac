"""The shapes world: a procedurally generated multimodal preference data set (DESIGN.md §5).

A scene holds 1-3 coloured shapes, each in its own cell of a 2x2 grid. From a scene we derive an SFT
caption, yes/no questions with exact answers, an alt-text context sentence and preference pairs whose
chosen and rejected texts differ only in one hallucinated object, so that only the image can tell which
is right. Everything is deterministic for a seed and written in the canonical record format
(:mod:`mmpo.data.records`), then read back by the same reader that reads user data.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
CELLS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
CAPTION_PROMPT = "Describe the image."
CONTEXTS: tuple[str, ...] = (
    "Shared by the geometry club.",
    "Today's puzzle from the art class.",
    "A sticker sheet for the children.",
    "Homework for the shapes lesson.",
)
SPLITS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
FORMAT_VERSION = 2  # 2: 'an orange ...'


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str
    cell: str

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    id: str
    objects: tuple[ShapeObject, ...]

    def object_names(self) -> set[str]:
        return {o.name for o in self.objects}


def all_object_names() -> list[str]:
    return [f"{c} {s}" for c in COLORS for s in SHAPES]


def sample_scene(rng: random.Random, scene_id: str) -> Scene:
    count = rng.randint(1, 3)
    cells = rng.sample(CELLS, count)
    names = rng.sample(all_object_names(), count)
    objects = tuple(ShapeObject(*name.split(" "), cell) for name, cell in zip(names, cells, strict=True))
    return Scene(scene_id, tuple(sorted(objects, key=lambda o: CELLS.index(o.cell))))


def render(scene: Scene, size: int = 64) -> Image.Image:
    """Draw the scene: white background, each shape filling ~60% of its grid cell."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    half = size // 2
    margin = size // 10
    for obj in scene.objects:
        row, col = (0 if obj.cell.startswith("top") else 1), (0 if obj.cell.endswith("left") else 1)
        x0, y0 = col * half + margin, row * half + margin
        x1, y1 = (col + 1) * half - margin, (row + 1) * half - margin
        fill = COLORS[obj.color]
        if obj.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return image


def with_article(name: str) -> str:
    """'a red circle', 'an orange square'."""
    return ("an " if name[0] in "aeiou" else "a ") + name


def describe(objects: tuple[ShapeObject, ...] | list[ShapeObject]) -> str:
    """'A red circle at the top left and a blue square at the bottom right.'"""
    parts = [f"{with_article(o.name)} at the {o.cell}" for o in objects]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


def hallucinate(scene: Scene, rng: random.Random) -> tuple[list[ShapeObject], str]:
    """Replace one object by one absent from the scene, keeping its cell; returns (objects, absent name)."""
    index = rng.randrange(len(scene.objects))
    absent = sorted(set(all_object_names()) - scene.object_names())
    name = rng.choice(absent)
    objects = list(scene.objects)
    objects[index] = ShapeObject(*name.split(" "), objects[index].cell)
    return objects, name


def scene_records(scene: Scene, image_path: str, rng: random.Random) -> list[dict]:
    """Records of one scene: a caption pair and a yes/no pair about a present or an absent object."""
    wrong_objects, wrong_name = hallucinate(scene, rng)
    truth = [o.name for o in scene.objects]
    meta = {"objects": truth, "cells": [o.cell for o in scene.objects]}
    caption = {
        "id": f"{scene.id}-caption",
        "images": [image_path],
        "prompt": CAPTION_PROMPT,
        "chosen": describe(scene.objects),
        "rejected": describe(wrong_objects),
        "context": rng.choice(CONTEXTS),
        "meta": {**meta, "kind": "caption", "hallucinated": wrong_name},
    }
    asked = rng.choice(truth) if rng.random() < 0.5 else wrong_name
    present = asked in truth
    question = {
        "id": f"{scene.id}-qa",
        "images": [image_path],
        "prompt": f"Is there {with_article(asked)} in the image? Answer yes or no.",
        "chosen": "Yes." if present else "No.",
        "rejected": "No." if present else "Yes.",
        "meta": {**meta, "kind": "qa", "asked": asked, "label": "yes" if present else "no"},
    }
    return [caption, question]


def vocabulary_corpus() -> Iterator[str]:
    """Every word the shapes world uses, for training the tiny models' tokenizers."""
    rng = random.Random(0)
    for i in range(300):
        scene = sample_scene(rng, f"v{i}")
        for record in scene_records(scene, "", rng):
            yield " ".join(
                [record["prompt"], record["chosen"], record["rejected"], record.get("context", "")]
            )
    yield "USER: ASSISTANT: user assistant system Context: Answer yes or no. Yes No"


def generate(out_dir: str | Path, num_scenes: int = 400, seed: int = 0, image_size: int = 64) -> Path:
    """Write ``{train,val,test}.jsonl`` and ``images/`` under ``out_dir``; reuse an identical earlier build.

    Splits are by scene, so held-out images never appear in training. Safe when several processes
    (DDP ranks, parallel sweep jobs) ask for the same world at once: one builds it under a file lock, the
    others wait and reuse it. The manifest is written last, so a matching manifest means complete files.
    """
    out = Path(out_dir)
    manifest = {"format": FORMAT_VERSION, "num_scenes": num_scenes, "seed": seed, "image_size": image_size}
    manifest_path = out / "manifest.json"

    def built() -> bool:
        return manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest

    if built():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(out / ".generate.lock"):
        if not built():
            manifest_path.unlink(missing_ok=True)
            _write_world(out, num_scenes, seed, image_size)
            manifest_path.write_text(json.dumps(manifest))
    return out


def _write_world(out: Path, num_scenes: int, seed: int, image_size: int) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    scenes = [sample_scene(rng, f"s{seed}-{i:05d}") for i in range(num_scenes)]
    bounds, start = {}, 0
    for split, share in SPLITS.items():
        bounds[split] = (start, start + round(share * num_scenes))
        start = bounds[split][1]
    for split, (lo, hi) in bounds.items():
        with open(out / f"{split}.jsonl", "w") as f:
            for scene in scenes[lo:hi]:
                image_path = f"images/{scene.id}.png"
                render(scene, image_size).save(out / image_path)
                for record in scene_records(scene, image_path, rng):
                    f.write(json.dumps(record) + "\n")
    with open(out / "scenes.jsonl", "w") as f:
        for scene in scenes:
            f.write(json.dumps(asdict(scene)) + "\n")


def fingerprint(out_dir: str | Path) -> str:
    """Stable hash of a generated build (its manifest), for caches keyed by data."""
    return hashlib.blake2b((Path(out_dir) / "manifest.json").read_bytes(), digest_size=8).hexdigest()
