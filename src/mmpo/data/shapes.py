"""The shapes world: a procedurally generated multimodal preference data set (DESIGN.md §5).

A scene holds 1-3 coloured shapes, each in its own cell of a 2x2 grid. From a scene we derive captions,
yes/no questions with exact answers, an alt-text context sentence and preference pairs whose chosen and
rejected texts differ only in one hallucinated object, so that only the image can tell which is right.
Everything is deterministic for a seed and written in the canonical record format
(:mod:`mmpo.data.records`), then read back by the same reader that reads user data.

Files (splits are by scene: no image is in two of them):

- ``train.jsonl`` / ``val.jsonl`` / ``test.jsonl`` (:data:`SPLITS` of ``num_scenes``): per scene a caption
  pair (chosen = the true caption, rejected = one object replaced by an absent one) and a yes/no pair.
  The benchmarks (:mod:`mmpo.benchmarks.shapes`) ask about the test scenes.
- ``sft.jsonl`` (``SFT_SCENES_PER_SCENE * num_scenes`` scenes of their own): the SFT mixture, per scene
  one caption and one yes/no question per present object plus as many about absent ones (alternately
  one sharing a colour or a shape with a present object, and any absent one). No ``rejected``.
- ``alt_text_{train,val,test}.jsonl`` (the scenes and images of ``{train,val,test}.jsonl``): MCM-DPO's
  alt-text task (:data:`ALT_TEXT_PROMPT`), :data:`ALT_TEXT_PER_SCENE` records per scene. The context names
  who posted the picture and which object is its subject (``"Posted by Maya. The subject is the blue
  square."``), which the image alone does not tell; the chosen alt-text mentions both and places the
  subject in the image (``"Maya's photo of a blue square at the top right, next to a red circle at the
  bottom left."``). The rejected one (:data:`ALT_TEXT_REJECTIONS`, uniformly) ignores the context
  (``generic``: the plain caption), hallucinates an object (``hallucinated``) or names another poster
  (``wrong_poster``). ``alt_text_test.jsonl`` is the ``shapes_alt_text`` benchmark (chosen = reference).
- ``alt_text_sft.jsonl`` (the scenes and images of ``sft.jsonl``): one alt-text record per scene, no
  ``rejected``. Its annotator ignores the context in :data:`ALT_TEXT_GENERIC_RATE` of them and writes the
  plain caption, a habit an SFT model repeats and the ``generic`` preference pairs target.

The alt-text files draw from generators of their own, so every other file is as the world's format 3
wrote it.

How the SFT base comes to hallucinate, and why the preference pairs fix it. Real SFT captions are
written by annotators (or models) with habits, and a model trained on them repeats those habits. The
SFT captions here are written by an annotator who calls every object of a :data:`MISLABELS` key by its
value (an orange circle "a red circle") in :data:`MISLABEL_RATE` of the captions, when the value is not
in the scene itself; the yes/no answers stay exact. A model fitted to this mixture names the wrong object
under greedy decoding in most scenes with an orange circle, while it still answers "Is there a red
circle?" correctly: CHAIR goes up, POPE does not. The preference pairs target exactly this: for a scene
that allows the mislabel, the rejected caption is the annotator's (the mislabel), otherwise a random
absent object replaces a present one. DPO / mDPO on ``train.jsonl`` thus push down the habit the SFT
mixture taught.
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
SPLITS: dict[str, float] = {"train": 0.5, "val": 0.1, "test": 0.4}
# The SFT split holds its own scenes, SFT_SCENES_PER_SCENE times num_scenes of them.
SFT_SCENES_PER_SCENE = 10
# The SFT annotator's habit: it calls an object of a key by its value, in MISLABEL_RATE of its captions.
MISLABELS: dict[str, str] = {"orange circle": "red circle"}
MISLABEL_RATE = 0.75
# 2: 'an orange ...'; 3: sft split (annotated captions, more questions), 0.5/0.1/0.4 splits; 4: alt-text files
FORMAT_VERSION = 4
# The alt-text task (MCM-DPO's instruction, methods.md §2.1) and its contexts.
ALT_TEXT_PROMPT = "Given an image and context, generate alt-text for the image."
POSTERS: tuple[str, ...] = ("Maya", "Leo", "Ana", "Sam", "Iris", "Omar")
ALT_TEXT_PER_SCENE = 2
ALT_TEXT_REJECTIONS: tuple[str, ...] = ("generic", "hallucinated", "wrong_poster")
# The SFT alt-text annotator's habit: the plain caption, ignoring the context, in this share of records.
ALT_TEXT_GENERIC_RATE = 0.6


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


def listing(objects: tuple[ShapeObject, ...] | list[ShapeObject]) -> str:
    """'a red circle at the top left, a green square at the top right and a blue square at the bottom right'"""
    parts = [f"{with_article(o.name)} at the {o.cell}" for o in objects]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(objects: tuple[ShapeObject, ...] | list[ShapeObject]) -> str:
    """'A red circle at the top left and a blue square at the bottom right.'"""
    text = listing(objects)
    return text[0].upper() + text[1:] + "."


def hallucinate(scene: Scene, rng: random.Random) -> tuple[list[ShapeObject], str]:
    """Replace one object by one absent from the scene, keeping its cell; returns (objects, absent name).

    The SFT annotator's mislabel (:data:`MISLABELS`) when the scene allows it, else a random object."""
    habits = mislabel_options(scene)
    if habits:
        index, name = rng.choice(habits)
    else:
        index = rng.randrange(len(scene.objects))
        name = rng.choice(sorted(set(all_object_names()) - scene.object_names()))
    objects = list(scene.objects)
    objects[index] = ShapeObject(*name.split(" "), objects[index].cell)
    return objects, name


def mislabel_options(scene: Scene) -> list[tuple[int, str]]:
    """(index, wrong name) of every object the SFT annotator mislabels, if the wrong name is absent."""
    names = scene.object_names()
    return [
        (i, MISLABELS[o.name])
        for i, o in enumerate(scene.objects)
        if o.name in MISLABELS and MISLABELS[o.name] not in names
    ]


def annotate(scene: Scene, rng: random.Random) -> list[ShapeObject]:
    """The SFT annotator's view of the scene: each mislabel applied with probability MISLABEL_RATE."""
    objects = list(scene.objects)
    for index, name in mislabel_options(scene):
        if rng.random() < MISLABEL_RATE:
            objects[index] = ShapeObject(*name.split(" "), objects[index].cell)
    return objects


def question(scene_id: str, kind: str, image_path: str, meta: dict, asked: str, present: bool) -> dict:
    """A yes/no record about ``asked``."""
    return {
        "id": f"{scene_id}-{kind}",
        "images": [image_path],
        "prompt": f"Is there {with_article(asked)} in the image? Answer yes or no.",
        "chosen": "Yes." if present else "No.",
        "rejected": "No." if present else "Yes.",
        "meta": {**meta, "kind": "qa", "asked": asked, "label": "yes" if present else "no"},
    }


def scene_meta(scene: Scene) -> dict:
    return {"objects": [o.name for o in scene.objects], "cells": [o.cell for o in scene.objects]}


def scene_records(scene: Scene, image_path: str, rng: random.Random) -> list[dict]:
    """Preference records of one scene: a caption pair and a yes/no pair about a present or an absent object."""
    wrong_objects, wrong_name = hallucinate(scene, rng)
    meta = scene_meta(scene)
    caption = {
        "id": f"{scene.id}-caption",
        "images": [image_path],
        "prompt": CAPTION_PROMPT,
        "chosen": describe(scene.objects),
        "rejected": describe(wrong_objects),
        "context": rng.choice(CONTEXTS),
        "meta": {**meta, "kind": "caption", "hallucinated": wrong_name},
    }
    asked = rng.choice(meta["objects"]) if rng.random() < 0.5 else wrong_name
    return [caption, question(scene.id, "qa", image_path, meta, asked, asked in meta["objects"])]


def confusable(scene: Scene) -> list[str]:
    """Absent objects that share a colour or a shape with a present one."""
    present = [set(name.split(" ")) for name in scene.object_names()]
    absent = sorted(set(all_object_names()) - scene.object_names())
    return [name for name in absent if any(set(name.split(" ")) & p for p in present)]


def sft_records(scene: Scene, image_path: str, rng: random.Random) -> list[dict]:
    """SFT records of one scene: the annotator's caption, and one yes/no question per present object and
    as many about absent ones (alternately a confusable and a random absent object)."""
    meta = scene_meta(scene)
    annotated = annotate(scene, rng)
    caption = {
        "id": f"{scene.id}-caption",
        "images": [image_path],
        "prompt": CAPTION_PROMPT,
        "chosen": describe(annotated),
        "context": rng.choice(CONTEXTS),
        "meta": {**meta, "kind": "caption", "annotated": [o.name for o in annotated]},
    }
    absent = sorted(set(all_object_names()) - scene.object_names())
    near = confusable(scene)
    negatives: list[str] = []
    for k in range(len(scene.objects)):
        pool = [n for n in (near if k % 2 == 0 and near else absent) if n not in negatives]
        negatives.append(rng.choice(pool))
    asked = [(name, True) for name in meta["objects"]] + [(name, False) for name in negatives]
    questions = [
        question(scene.id, f"qa{k}", image_path, meta, name, present)
        for k, (name, present) in enumerate(asked)
    ]
    return [caption, *questions]


def alt_text_context(poster: str, subject: ShapeObject) -> str:
    """'Posted by Maya. The subject is the blue square.'"""
    return f"Posted by {poster}. The subject is the {subject.name}."


def alt_text(poster: str, subject: ShapeObject, objects: tuple[ShapeObject, ...] | list[ShapeObject]) -> str:
    """'Maya's photo of a blue square at the top right, next to a red circle at the bottom left.'"""
    others = [o for o in objects if o.cell != subject.cell]
    text = f"{poster}'s photo of {with_article(subject.name)} at the {subject.cell}"
    return text + (f", next to {listing(others)}." if others else ".")


def alt_text_records(scene: Scene, image_path: str, rng: random.Random) -> list[dict]:
    """:data:`ALT_TEXT_PER_SCENE` alt-text pairs of one scene, each with its own (poster, subject)."""
    meta = scene_meta(scene)
    pairs = [(poster, index) for poster in POSTERS for index in range(len(scene.objects))]
    records = []
    for k, (poster, index) in enumerate(rng.sample(pairs, ALT_TEXT_PER_SCENE)):
        subject = scene.objects[index]
        rejection = rng.choice(ALT_TEXT_REJECTIONS)
        if rejection == "generic":
            rejected = describe(scene.objects)
        elif rejection == "hallucinated":
            wrong_objects, _ = hallucinate(scene, rng)
            rejected = alt_text(poster, wrong_objects[index], wrong_objects)
        else:
            rejected = alt_text(rng.choice([p for p in POSTERS if p != poster]), subject, scene.objects)
        records.append(
            {
                "id": f"{scene.id}-alt{k}",
                "images": [image_path],
                "prompt": ALT_TEXT_PROMPT,
                "context": alt_text_context(poster, subject),
                "chosen": alt_text(poster, subject, scene.objects),
                "rejected": rejected,
                "meta": {
                    **meta,
                    "kind": "alt_text",
                    "poster": poster,
                    "subject": subject.name,
                    "rejection": rejection,
                },
            }
        )
    return records


def sft_alt_text_records(scene: Scene, image_path: str, rng: random.Random) -> list[dict]:
    """The SFT annotator's alt-text of one scene: the plain caption in :data:`ALT_TEXT_GENERIC_RATE` of
    scenes (the context ignored), else the alt-text the context asks for."""
    poster, subject = rng.choice(POSTERS), rng.choice(scene.objects)
    generic = rng.random() < ALT_TEXT_GENERIC_RATE
    return [
        {
            "id": f"{scene.id}-alt",
            "images": [image_path],
            "prompt": ALT_TEXT_PROMPT,
            "context": alt_text_context(poster, subject),
            "chosen": describe(scene.objects) if generic else alt_text(poster, subject, scene.objects),
            "meta": {
                **scene_meta(scene),
                "kind": "alt_text",
                "poster": poster,
                "subject": subject.name,
                "annotated": "generic" if generic else "alt_text",
            },
        }
    ]


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
    """Write the splits (module docstring) and ``images/`` under ``out_dir``; reuse an identical earlier build.

    Splits are by scene, so held-out images never appear in training. Safe when several processes
    (DDP ranks, parallel sweep jobs) ask for the same world at once: one builds it under a file lock, the
    others wait and reuse it. The manifest is written last, so a matching manifest means complete files.
    A world of older code (another ``format``) or of other parameters is rebuilt in place (the
    benchmarks refuse the latter, :class:`mmpo.benchmarks.shapes.ShapesWorld`).
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
        _write_split(out / f"{split}.jsonl", scenes[lo:hi], scene_records, rng, image_size)
    # the SFT scenes come from a generator of their own: the other splits do not depend on them
    sft_rng = random.Random(f"{seed}:sft")
    sft_scenes = [
        sample_scene(sft_rng, f"s{seed}-sft-{i:05d}") for i in range(SFT_SCENES_PER_SCENE * num_scenes)
    ]
    _write_split(out / "sft.jsonl", sft_scenes, sft_records, sft_rng, image_size)
    with open(out / "scenes.jsonl", "w") as f:
        for scene in scenes + sft_scenes:
            f.write(json.dumps(asdict(scene)) + "\n")
    # the alt-text files show the scenes (and images) above, each drawing from a generator of its own
    for split, (lo, hi) in bounds.items():
        alt_rng = random.Random(f"{seed}:alt_text:{split}")
        _write_split(out / f"alt_text_{split}.jsonl", scenes[lo:hi], alt_text_records, alt_rng)
    sft_alt_rng = random.Random(f"{seed}:alt_text:sft")
    _write_split(out / "alt_text_sft.jsonl", sft_scenes, sft_alt_text_records, sft_alt_rng)


def _write_split(
    path: Path, scenes: list[Scene], make_records, rng: random.Random, image_size: int | None = None
) -> None:
    """The records of ``scenes``; each scene's image is rendered too unless ``image_size`` is None (the
    images of another split)."""
    with open(path, "w") as f:
        for scene in scenes:
            image_path = f"images/{scene.id}.png"
            if image_size is not None:
                render(scene, image_size).save(path.parent / image_path)
            for record in make_records(scene, image_path, rng):
                f.write(json.dumps(record) + "\n")


def fingerprint(out_dir: str | Path) -> str:
    """Stable hash of a generated build (its manifest), for caches keyed by data."""
    return hashlib.blake2b((Path(out_dir) / "manifest.json").read_bytes(), digest_size=8).hexdigest()
