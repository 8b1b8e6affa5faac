"""POPE: polling-based object probing (Li et al., 2023), yes/no questions on COCO val2014 images.

Data layout under ``benchmark.path``: ``coco_pope_random.json``, ``coco_pope_popular.json``,
``coco_pope_adversarial.json`` -- JSON lines ``{"question_id": 1, "image": "COCO_val2014_....jpg",
"text": "Is there a snowboard in the image?", "label": "yes"}`` (3000 per split) -- and the images in
``val2014/`` (option ``image_dir``).

Answer parsing is the official one (RUCAIBox/POPE ``evaluate.py``, identical in LLaVA's
``eval_pope.py``): keep the text before the first ``.``; delete commas; split on single spaces; the
answer is "no" if a token is exactly ``No``, ``no`` or ``not``, else "yes". So an empty or garbled
answer counts as **yes**, and "NO" or "Nope" are yes too.

Metrics per split, positive class = yes (:func:`~mmpo.benchmarks.yes_no.binary_metrics`):
``accuracy = (TP+TN)/N``, ``precision = TP/(TP+FP)``, ``recall = TP/(TP+FN)``, ``f1 = 2PR/(P+R)``,
``yes_ratio = #predicted yes / N``; reported as ``<split>/<metric>`` and their mean over the scored
splits as ``avg/<metric>`` (LLaVA-1.5's POPE number is ``avg/f1``). Answers are matched to labels by
question id (``<split>/<question_id>``), never by order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import Benchmark, EvalItem, read_jsonl
from mmpo.benchmarks.yes_no import binary_metrics

SPLITS = ("random", "popular", "adversarial")
_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def parse_pope_answer(text: str) -> str:
    """The official POPE rule (module docstring): ``"no"`` or ``"yes"``."""
    first_sentence = text.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if any(word in ("No", "no", "not") for word in words) else "yes"


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (positive = yes) and yes-ratio."""
    metrics = binary_metrics(predictions, labels, positive="yes")
    metrics["yes_ratio"] = metrics.pop("positive_ratio")
    return metrics


class POPE(Benchmark):
    """POPE over the chosen splits (default all three)."""

    name = "pope"
    source = (
        "RUCAIBox/POPE GitHub repository, output/coco/coco_pope_*.json; COCO val2014 images (cocodataset.org)"
    )

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        splits: Sequence[str] = SPLITS,
        question_file: str = "coco_pope_{split}.json",
        image_dir: str = "val2014",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown or not splits:
            raise ValueError(f"pope: splits must be a non-empty subset of {list(SPLITS)}, got {list(splits)}")
        self.splits = tuple(splits)
        self.question_file = question_file
        self.image_dir = image_dir

    def question_files(self) -> list[str]:
        """The question file of each split, relative to the data root."""
        return [self.question_file.format(split=split) for split in self.splits]

    def data_files(self) -> list[Path]:
        return self.under_root(*self.question_files())

    def items(self) -> list[EvalItem]:
        files = self.question_files()
        root = self.require(*files)
        image_dir = self.resolve(self.image_dir)
        items = []
        for split, name in zip(self.splits, files, strict=True):
            for row in read_jsonl(root / name):
                items.append(
                    EvalItem(
                        id=f"{split}/{row['question_id']}",
                        image=str(image_dir / row["image"]),
                        prompt=self.with_suffix(row["text"]),
                        meta={"split": split, "label": row["label"].strip().lower()},
                    )
                )
        return self.truncate(items)

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        texts = self.outputs_for(items, outputs)
        records = []
        for item, text in zip(items, texts, strict=True):
            parsed = parse_pope_answer(text)
            label = item.meta["label"]
            records.append(
                {"id": item.id, "split": item.meta["split"], "prompt": item.prompt, "output": text,
                 "parsed": parsed, "label": label, "correct": parsed == label}
            )  # fmt: skip
        metrics: dict[str, float] = {}
        scored = [split for split in self.splits if any(r["split"] == split for r in records)]
        for split in scored:
            rows = [r for r in records if r["split"] == split]
            for key, value in pope_metrics([r["parsed"] for r in rows], [r["label"] for r in rows]).items():
                metrics[f"{split}/{key}"] = value
        for key in _METRICS:
            metrics[f"avg/{key}"] = sum(metrics[f"{split}/{key}"] for split in scored) / max(len(scored), 1)
        return metrics, records
