"""MMVP-VLM (Tong et al., CVPR 2024): 9 visual patterns x 15 pairs of images that CLIP confuses.

Official protocol (``tsb0601/MMVP`` ``scripts/evaluate_vlm.py``, benchmarks.md §5.2): ``Questions.csv``
rows ``(qid, pattern, statement)`` after a header; consecutive rows (qid 1-2, 3-4, ...) form a pair whose
images are ``<image_dir>/<pattern of the first row>/<qid>.jpg``. Each statement is encoded as
``"a photo of " + statement`` (``text_prefix``). For statement ``t`` and the pair's images ``a`` (first
qid) and ``b``::

    prediction(t) = a  if  s(t, a) > s(t, b)  else  b         (official: softmax(logits)[a] > 0.5)
    ground truth  = a  for an odd qid, b for an even one

A pair is right iff both statements predict their ground truth. Note the official asymmetry kept here:
on a tie the prediction is ``b``, so a tied first statement is wrong and a tied second one right.

Metrics: ``pair_accuracy`` over all pairs and ``<pattern>/pair_accuracy`` per pattern. The official
script assigns patterns by position (pair index // 15 in a fixed list); we take each pair's pattern from
its first row, which is the same on the released file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmpo.benchmarks.base import EvalItem
from mmpo.benchmarks.winoground import PairedBenchmark, paired_item


def mmvp_vlm_correct(scores: Tensor, first_qids: Tensor) -> Tensor:
    """Per pair: both statements right, for ``scores[p, statement, image]`` ([P, 2, 2]; statement and
    image 0 belong to the pair's first qid) and the first qid of each pair (module docstring)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"scores must have shape [P, 2, 2], got {tuple(s.shape)}")
    predicts_first = s[:, :, 0] > s[:, :, 1]  # [P, statement]
    qids = torch.as_tensor(first_qids)[:, None] + torch.arange(2)[None, :]
    truth_first = qids % 2 == 1
    return (predicts_first == truth_first).all(dim=1)


class MMVPVLM(PairedBenchmark):
    """MMVP-VLM pair accuracy from embeddings (module docstring)."""

    name = "mmvp_vlm"
    source = (
        "the Hugging Face dataset MMVP/MMVP_VLM (Questions.csv and the image folder), downloaded beforehand"
    )

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        question_file: str = "Questions.csv",
        image_dir: str = "MLLM_VLM Images",
        text_prefix: str = "a photo of ",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.question_file = question_file
        self.image_dir = image_dir
        self.text_prefix = text_prefix

    def data_files(self) -> list[Path]:
        return self.under_root(self.question_file)

    def items(self) -> list[EvalItem]:
        """One item per pair: both images, both statements (prefixed), the pattern as tag, the qids."""
        root = self.require(self.question_file)
        image_dir = self.resolve(self.image_dir)
        with (root / self.question_file).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        if len(rows) % 2:
            raise ValueError(
                f"{root / self.question_file}: {len(rows)} statements, not an even number (pairs)"
            )
        items = []
        for first, second in zip(rows[::2], rows[1::2], strict=True):
            (qid_a, pattern, statement_a), (qid_b, _, statement_b) = first[:3], second[:3]
            images = [str(image_dir / pattern / f"{int(qid)}.jpg") for qid in (qid_a, qid_b)]
            captions = [self.text_prefix + statement_a, self.text_prefix + statement_b]
            item = paired_item(f"{int(qid_a)}-{int(qid_b)}", images, captions, pattern)
            item.meta["qids"] = [int(qid_a), int(qid_b)]
            items.append(item)
        return self.truncate(items)

    def correct(self, scores: Tensor, items: list[EvalItem]) -> dict[str, Tensor]:
        return {
            "pair_accuracy": mmvp_vlm_correct(scores, torch.tensor([item.meta["qids"][0] for item in items]))
        }
