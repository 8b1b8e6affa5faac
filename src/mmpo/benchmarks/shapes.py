"""Hallucination benchmarks on held-out scenes of the shapes world, with exact ground truth, no files needed.

The items come from the scenes of one split (``split``, default ``test``; splits are by scene, so no
test image was trained on). The world (``world: {num_scenes, seed, image_size}``, the options of
``shapes.generate``) is generated under ``path`` when absent.
The object vocabulary is closed: the 18 names ``"<colour> <shape>"``.

``shapes_chair`` (:class:`ShapesCHAIR`): each scene's image with the captioning prompt, followed by the
scene's context sentence in ``context_template`` as the shapes world's caption records are trained
(``context_template: null`` asks without it). Mentions are
extracted exactly: every match of ``<colour> <shape>`` (plural ``s`` allowed) in the lower-cased
output is one mention, duplicates included; its category is the singular name. The ground truth is
the scene's object set. Metrics are those of :func:`~mmpo.benchmarks.chair.chair_metrics`:
``CHAIRi = Σ hallucinated mentions / Σ mentions``, ``CHAIRs = #responses with a hallucinated mention /
#responses``, ``CHAIRs_refine`` (over responses that mention an object), ``recall = Σ |mentioned ∩
present| / Σ |present|``, ``avg_words``.

``shapes_pope`` (:class:`ShapesPOPE`): POPE's protocol on the shapes world. For a scene with present
objects ``P`` and absent objects ``A`` (the rest of the vocabulary), every split asks
"Is there a/an <name> in the image?" once for each ``p ∈ P`` (label yes) and for ``|P|`` negatives from
``A`` (label no), chosen per split:

- ``random``: uniformly without replacement, by a generator seeded with (``sampling_seed``, scene id);
- ``popular``: the absent objects most frequent over the training scenes;
- ``adversarial``: absent objects that share a colour or a shape with a present one, the ones that
  co-occur most often with the present objects over the training scenes first.

Ties are broken by name. Parsing and metrics are POPE's own (:class:`~mmpo.benchmarks.pope.POPE`):
``<split>/{accuracy, precision, recall, f1, yes_ratio}`` and their mean over splits as ``avg/*``.
Items are ordered scene by scene (all splits of a scene together), so a small ``limit`` still
covers every split.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import Benchmark, EvalItem, read_jsonl
from mmpo.benchmarks.chair import chair_metrics
from mmpo.benchmarks.coco_objects import ObjectMention
from mmpo.benchmarks.pope import POPE, SPLITS
from mmpo.config import ConfigError
from mmpo.data import shapes

MENTION = re.compile(rf"\b({'|'.join(shapes.COLORS)})\s+({'|'.join(shapes.SHAPES)})s?\b")


@dataclass(frozen=True)
class HeldOutScene:
    """A scene of a split with its image file and the context sentence of its caption record."""

    scene: shapes.Scene
    image: str
    context: str | None


class ShapesWorld:
    """The generated world under ``path``: created when absent, never overwritten."""

    def __init__(
        self, path: str | Path | None, num_scenes: int = 400, seed: int = 0, image_size: int = 64
    ) -> None:
        if path is None:
            raise ValueError(
                "shapes benchmarks: `path` must name the shapes world directory "
                "(it is generated there when absent)"
            )
        self.path = Path(path).expanduser()
        self.manifest = {
            "format": shapes.FORMAT_VERSION,
            "num_scenes": num_scenes,
            "seed": seed,
            "image_size": image_size,
        }

    def ensure(self) -> Path:
        """Generate the world if ``path`` holds none, or one written by older code; refuse a world of other
        parameters (another run's) or foreign files there."""
        manifest = self.path / "manifest.json"
        if manifest.is_file():
            found = json.loads(manifest.read_text())
            if _parameters(found) != _parameters(self.manifest):
                raise ConfigError(
                    f"shapes benchmarks: {self.path} holds a shapes world built with {found}, but the "
                    f"benchmark asks for {self.manifest}; make its num_scenes, seed and image_size match, or "
                    "point `path` at another directory"
                )
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(
                f"shapes benchmarks: {self.path} is not empty and holds no shapes world "
                "(manifest.json); point `path` at a shapes world or an empty directory"
            )
        return shapes.generate(
            self.path, self.manifest["num_scenes"], self.manifest["seed"], self.manifest["image_size"]
        )

    def data_files(self, *splits: str) -> list[Path]:
        """The world's files that the scenes of ``splits`` are read from."""
        names = ["manifest.json", "scenes.jsonl", *dict.fromkeys(f"{split}.jsonl" for split in splits)]
        return [self.path / name for name in names]

    def scenes(self, split: str) -> list[HeldOutScene]:
        """The scenes of ``split`` (one per caption record of ``<split>.jsonl``), in file order."""
        root = self.ensure()
        by_id = {}
        for row in read_jsonl(root / "scenes.jsonl"):
            objects = tuple(shapes.ShapeObject(**o) for o in row["objects"])
            by_id[row["id"]] = shapes.Scene(row["id"], objects)
        return [
            HeldOutScene(
                by_id[Path(record["images"][0]).stem], str(root / record["images"][0]), record.get("context")
            )
            for record in read_jsonl(root / f"{split}.jsonl")
            if record["meta"]["kind"] == "caption"
        ]


def extract_mentions(text: str) -> list[ObjectMention]:
    """Every ``<colour> <shape>`` occurrence in ``text`` (case-insensitive, plural allowed)."""
    return [ObjectMention(m.group(0), f"{m.group(1)} {m.group(2)}") for m in MENTION.finditer(text.lower())]


class ShapesCHAIR(Benchmark):
    """CHAIR on captions of held-out shapes scenes (module docstring)."""

    name = "shapes_chair"
    source = "generated by mmpo.data.shapes.generate (no download)"

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        world: Mapping[str, int] | None = None,
        split: str = "test",
        prompt: str = shapes.CAPTION_PROMPT,
        context_template: str | None = "{prompt}\nContext:\n{context}",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.world = ShapesWorld(path, **(world or {}))
        self.split = split
        self.prompt = prompt
        self.context_template = context_template

    def data_files(self) -> list[Path]:
        return self.world.data_files(self.split)

    def question(self, held: HeldOutScene) -> str:
        if self.context_template is None or held.context is None:
            return self.with_suffix(self.prompt)
        return self.with_suffix(self.context_template.format(prompt=self.prompt, context=held.context))

    def items(self) -> list[EvalItem]:
        return self.truncate(
            [
                EvalItem(
                    held.scene.id,
                    held.image,
                    self.question(held),
                    {"objects": sorted(held.scene.object_names())},
                )
                for held in self.world.scenes(self.split)
            ]
        )

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        texts = self.outputs_for(items, outputs)
        mentions = [extract_mentions(text) for text in texts]
        metrics, details = chair_metrics(mentions, [set(item.meta["objects"]) for item in items], texts)
        records = [
            {"id": item.id, "prompt": item.prompt, "output": text, **detail}
            for item, text, detail in zip(items, texts, details, strict=True)
        ]
        return metrics, records


def negatives(
    split: str,
    present: set[str],
    count: int,
    frequency: Counter[str],
    cooccurrence: Counter[tuple[str, str]],
    rng: random.Random,
) -> list[str]:
    """``count`` absent objects for one POPE split (module docstring)."""
    absent = sorted(set(shapes.all_object_names()) - present)
    if split == "random":
        return rng.sample(absent, count)
    if split == "popular":
        return sorted(absent, key=lambda name: (-frequency[name], name))[:count]

    def shares_attribute(name: str) -> bool:
        return any(set(name.split(" ")) & set(p.split(" ")) for p in present)

    confusable = [name for name in absent if shares_attribute(name)]
    together = {name: sum(cooccurrence[name, p] for p in present) for name in confusable}
    return sorted(confusable, key=lambda name: (-together[name], name))[:count]


def training_statistics(scenes: Sequence[shapes.Scene]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Object frequency and ordered-pair co-occurrence counts over ``scenes``."""
    frequency: Counter[str] = Counter()
    cooccurrence: Counter[tuple[str, str]] = Counter()
    for scene in scenes:
        names = scene.object_names()
        frequency.update(names)
        cooccurrence.update((a, b) for a in names for b in names if a != b)
    return frequency, cooccurrence


class ShapesPOPE(POPE):
    """POPE (random / popular / adversarial negatives) on held-out shapes scenes (module docstring)."""

    name = "shapes_pope"
    source = ShapesCHAIR.source

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        world: Mapping[str, int] | None = None,
        splits: Sequence[str] = SPLITS,
        split: str = "test",
        train_split: str = "train",
        sampling_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, splits=splits, **kwargs)
        self.world = ShapesWorld(path, **(world or {}))
        self.split = split
        self.train_split = train_split
        self.sampling_seed = sampling_seed

    def data_files(self) -> list[Path]:
        return self.world.data_files(self.train_split, self.split)

    def items(self) -> list[EvalItem]:
        frequency, cooccurrence = training_statistics([h.scene for h in self.world.scenes(self.train_split)])
        items = []
        for held in self.world.scenes(self.split):
            present = held.scene.object_names()
            rng = random.Random(f"{self.sampling_seed}:{held.scene.id}")
            for split in self.splits:
                chosen = negatives(split, present, len(present), frequency, cooccurrence, rng)
                asked = [(name, "yes") for name in sorted(present)] + [(name, "no") for name in chosen]
                items += [
                    EvalItem(
                        f"{split}/{held.scene.id}/{name}",
                        held.image,
                        self.with_suffix(f"Is there {shapes.with_article(name)} in the image?"),
                        {"split": split, "label": label, "object": name, "scene": held.scene.id},
                    )
                    for name, label in asked
                ]
        return self.truncate(items)


def _parameters(manifest: dict) -> dict:
    """A world manifest without its ``format`` (the code version, which a rebuild may change)."""
    return {k: v for k, v in manifest.items() if k != "format"}
