"""Retrieval on held-out shapes scenes, with fine-grained distractors known exactly; no files needed.

The scenes of one split (``split``, default ``test``) of the shapes world (``world``, generated under
``path`` when absent, as for :mod:`mmpo.benchmarks.shapes`) give two measurements:

- **general**: Recall@K both ways (:func:`~mmpo.benchmarks.retrieval.recall_at_k`, ``ties``) between
  the scenes' images and their captions (:func:`~mmpo.data.shapes.describe`);
- **fine-grained**: for every scene and attribute in :data:`~mmpo.data.shapes_variants.ATTRIBUTES`
  (colour, shape, position) one variant that differs in that attribute of one object
  (:func:`~mmpo.data.shapes_variants.sample_variant`, seeded by ``sampling_seed``), rendered at the
  world's image size. Scene and variant form a Winoground item (caption/image 0 = the scene, 1 = the
  variant) scored by :func:`~mmpo.benchmarks.winoground.winoground_correct`: ``text`` (each image
  prefers its caption), ``image`` (each caption prefers its image), ``group``, pooled as ``text``,
  ``image``, ``group`` and per attribute as ``color/text``, .... A scene without a variant of an
  attribute (three shapes of one colour have no shape variant) has no item for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import EvalItem
from mmpo.benchmarks.retrieval import TIE_CONVENTIONS, Encoder, recall_at_k
from mmpo.benchmarks.shapes import ShapesCHAIR, ShapesWorld
from mmpo.benchmarks.winoground import PairedBenchmark, paired_item
from mmpo.data import shapes
from mmpo.data.shapes_variants import ATTRIBUTES, sample_variant


class ShapesRetrieval(PairedBenchmark):
    """General and fine-grained retrieval on held-out shapes scenes (module docstring)."""

    name = "shapes_retrieval"
    source = ShapesCHAIR.source

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        world: Mapping[str, int] | None = None,
        split: str = "test",
        attributes: Sequence[str] = ATTRIBUTES,
        sampling_seed: int = 0,
        ks: Sequence[int] = (1, 5, 10),
        ties: str = "pessimistic",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        unknown = sorted(set(attributes) - set(ATTRIBUTES))
        if unknown:
            raise ValueError(f"{self.name}: attributes {unknown} unknown; allowed: {list(ATTRIBUTES)}")
        if ties not in TIE_CONVENTIONS:
            raise ValueError(f"{self.name}: ties={ties!r}; allowed: {list(TIE_CONVENTIONS)}")
        self.world = ShapesWorld(path, **(world or {}))
        self.split = split
        self.attributes = tuple(attributes)
        self.sampling_seed = sampling_seed
        self.ks = tuple(ks)
        self.ties = ties

    def data_files(self) -> list[Path]:
        return self.world.data_files(self.split)

    def items(self) -> list[EvalItem]:
        """One fine-grained item per (scene, attribute), scene by scene; variant images in memory."""
        size = self.world.manifest["image_size"]
        items = []
        for held in self.world.scenes(self.split):
            for attribute in self.attributes:
                variant = sample_variant(held.scene, attribute, self.sampling_seed)
                if variant is None:
                    continue
                item = paired_item(
                    f"{held.scene.id}/{attribute}",
                    [held.image, shapes.render(variant, size)],
                    [shapes.describe(held.scene.objects), shapes.describe(variant.objects)],
                    attribute,
                )
                item.meta["scene"] = held.scene.id
                items.append(item)
        return self.truncate(items)

    def evaluate(self, encoder: Encoder) -> tuple[dict[str, float], list[dict[str, Any]]]:
        items = self.items()
        metrics, records = self.evaluate_items(encoder, items)
        scenes = {held.scene.id: held for held in self.world.scenes(self.split)}
        kept = [scenes[scene] for scene in dict.fromkeys(item.meta["scene"] for item in items)]
        images = self.embed_images(encoder, [held.image for held in kept])
        texts = self.embed_texts(encoder, [shapes.describe(held.scene.objects) for held in kept])
        metrics.update(recall_at_k(texts @ images.T, list(range(len(kept))), self.ks, self.ties))
        return metrics, records
