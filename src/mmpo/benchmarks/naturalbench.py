"""NaturalBench-Retrieval (Li et al., NeurIPS 2024): natural adversarial image-caption pairs.

NaturalBench pairs two images with two captions that a CLIP model confuses, "after removing pairs where
one caption can describe both images"; its retrieval version is scored with Winoground's protocol
(:mod:`mmpo.benchmarks.winoground`: ``text``, ``image``, ``group``, strict ``>``), as the official
``NaturalBench_Retrieval.evaluate_scores`` (Baiqi-Li/NaturalBench, integrated in t2v_metrics) does.
MAPLE reports its T and I scores (methods.md §3.6).

Data layout under ``benchmark.path``: the unzipped ``NaturalBench-Retrieval.zip`` of the Hugging Face
dataset ``BaiqiL/NaturalBench``: ``metadata.json`` (a list of ``{"index", "image_0", "image_1",
"caption_0", "caption_1"}``) and ``images/<image_0>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import EvalItem
from mmpo.benchmarks.winoground import PairedBenchmark, paired_item


class NaturalBenchRetrieval(PairedBenchmark):
    """NaturalBench-Retrieval text / image / group scores from embeddings (module docstring)."""

    name = "naturalbench"
    source = "NaturalBench-Retrieval.zip of the Hugging Face dataset BaiqiL/NaturalBench, unzipped beforehand"

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        annotation_file: str = "metadata.json",
        image_dir: str = "images",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.annotation_file = annotation_file
        self.image_dir = image_dir

    def data_files(self) -> list[Path]:
        return self.under_root(self.annotation_file)

    def items(self) -> list[EvalItem]:
        root = self.require(self.annotation_file)
        image_dir = self.resolve(self.image_dir)
        rows = json.loads((root / self.annotation_file).read_text(encoding="utf-8"))
        return self.truncate(
            [
                paired_item(
                    str(row.get("index", n)),
                    [str(image_dir / row[key]) for key in ("image_0", "image_1")],
                    [row["caption_0"], row["caption_1"]],
                )
                for n, row in enumerate(rows)
            ]
        )
