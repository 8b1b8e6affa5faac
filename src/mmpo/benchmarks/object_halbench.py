"""Object HalBench (RLHF-V / RLAIF-V / mDPO): 300 COCO val2014 images, detailed-description prompts, CHAIR.

Data layout under ``benchmark.path``:

- ``obj_halbench_300_with_image.jsonl``: one row per image with ``image_id`` (COCO id), ``question``
  (or ``prompt``) and, in the released file, ``image`` (base64 JPEG). Rows without ``image`` read
  ``<image_dir>/COCO_val2014_<image_id:012d>.jpg`` instead.
- ``annotations/instances_val2014.json`` and ``annotations/captions_val2014.json`` (COCO 2014).

Embedded images are decoded once into ``image_dir`` (default ``images/`` under the data root).

Scoring is :mod:`mmpo.benchmarks.chair` with the rule-based extractor of one official CHAIR code
(:mod:`mmpo.benchmarks.coco_objects`, option ``variant``: ``rlhf_v``, the default, is RLHF-V's
``eval_gpt_obj_halbench.py`` without ``--use_gpt``; ``original`` is Rohrbach et al.'s ``chair.py``),
labelled ``extractor = "rules/<variant>"`` in every record. Remaining differences from the official
scorer: RLHF-V's published numbers extract objects with gpt-3.5 first (``--use_gpt``); rule-based
numbers are not comparable to those (benchmarks.md §1.2), and no offline LLM route is offered here.
Responses are cleaned as RLHF-V does: ``"Assistant:"`` removed, then stripped.

``coco_splits``: the reference merges the train2014 and val2014 annotation files. An image's
annotations live only in its own split's files, so for the 300 val2014 images ``("val2014",)`` gives
the same ground truth while skipping the 0.5 GB train files; add ``"train2014"`` for train images.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import Benchmark, EvalItem, read_jsonl
from mmpo.benchmarks.chair import chair_metrics, coco_ground_truth
from mmpo.benchmarks.coco_objects import CocoObjectExtractor


class ObjectHalBench(Benchmark):
    """Object HalBench with rule-based CHAIR (CHAIRs, CHAIRs_refine, CHAIRi, recall) of one ``variant``."""

    name = "object_halbench"
    source = (
        "RLHF-V/RLAIF-V GitHub repository, eval/data/obj_halbench_300_with_image.jsonl; COCO 2014 "
        "annotations from cocodataset.org (annotations_trainval2014.zip)"
    )

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        question_file: str = "obj_halbench_300_with_image.jsonl",
        annotation_dir: str = "annotations",
        coco_splits: Sequence[str] = ("val2014",),
        image_dir: str = "images",
        variant: str = "rlhf_v",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.question_file = question_file
        self.annotation_dir = annotation_dir
        self.coco_splits = tuple(coco_splits)
        self.image_dir = image_dir
        self.extractor = CocoObjectExtractor(variant)
        self.extractor_label = f"rules/{variant}"

    def _annotation_files(self) -> list[str]:
        return [
            f"{self.annotation_dir}/{kind}_{split}.json"
            for kind in ("instances", "captions")
            for split in self.coco_splits
        ]

    def data_files(self) -> list[Path]:
        return self.under_root(self.question_file, *self._annotation_files())

    def items(self) -> list[EvalItem]:
        root = self.require(self.question_file, *self._annotation_files())
        image_dir = self.resolve(self.image_dir)
        items = []
        for index, row in enumerate(read_jsonl(root / self.question_file)):
            image_id = int(row["image_id"])
            question = row.get("question", row.get("prompt"))
            if question is None:
                raise ValueError(
                    f"{root / self.question_file}: row {index} has neither 'question' nor 'prompt'"
                )
            if "image" in row:
                image = image_dir / f"{image_id}.jpg"
                if not image.exists():
                    image_dir.mkdir(parents=True, exist_ok=True)
                    image.write_bytes(base64.b64decode(row["image"]))
            else:
                image = image_dir / f"COCO_val2014_{image_id:012d}.jpg"
            items.append(
                EvalItem(
                    id=str(index),
                    image=str(image),
                    prompt=self.with_suffix(question),
                    meta={"image_id": image_id},
                )
            )
        return self.truncate(items)

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        root = self.require(*self._annotation_files())
        responses = [text.replace("Assistant:", "").strip() for text in self.outputs_for(items, outputs)]
        image_ids = [item.meta["image_id"] for item in items]
        files = [root / name for name in self._annotation_files()]
        truth = coco_ground_truth(
            [f for f in files if f.name.startswith("instances_")],
            [f for f in files if f.name.startswith("captions_")],
            image_ids,
            self.extractor,
        )
        mentions = [self.extractor.mentions(response) for response in responses]
        metrics, details = chair_metrics(mentions, [truth[i] for i in image_ids], responses)
        records = [
            {"id": item.id, "image_id": item.meta["image_id"], "prompt": item.prompt, "output": response,
             "extractor": self.extractor_label, **detail}
            for item, response, detail in zip(items, responses, details, strict=True)
        ]  # fmt: skip
        return metrics, records
