"""Padded model-input rows and the batch the forward engine consumes.

A :class:`Rows` holds model inputs for some sequences: per-token tensors ([rows, seq], right padded) and
per-image tensors (concatenated along dim 0 in placeholder order). Every key the processor returns is
passed to the model except ``labels``; only the per-token keys below need a padding value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from mmpo.branches import Branch

IGNORE_INDEX = -100
TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids")


@dataclass
class Rows:
    """Model inputs of ``num_rows`` sequences; ``labels`` is -100 outside the response."""

    tensors: dict[str, Tensor]

    @property
    def num_rows(self) -> int:
        return self.tensors["input_ids"].shape[0]

    @property
    def labels(self) -> Tensor:
        return self.tensors["labels"]

    def model_inputs(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.tensors.items() if k != "labels"}

    def to(self, device: torch.device | str) -> Rows:
        return Rows({k: v.to(device) for k, v in self.tensors.items()})


def concat_rows(parts: list[Rows], pad_token_id: int) -> Rows:
    """Stack rows of different lengths: token keys right padded to the longest, image keys concatenated."""
    length = max(p.tensors["input_ids"].shape[1] for p in parts)
    pad_values = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
    keys = dict.fromkeys(k for p in parts for k in p.tensors)
    out = {}
    for key in keys:
        present = [p.tensors[key] for p in parts if key in p.tensors]
        if key in TOKEN_KEYS:
            if len(present) != len(parts):
                raise ValueError(f"token key {key!r} is missing from some rows")
            value = pad_values.get(key, 0)
            present = [torch.nn.functional.pad(t, (0, length - t.shape[1]), value=value) for t in present]
        out[key] = torch.cat(present)
    return Rows(out)


@dataclass
class PreferenceBatch:
    """Rows per branch for the same records, in the same order.

    ``reference_rows`` holds branches whose reference inputs differ from the policy's (only with a
    sampler's ``resample_per_forward``, which reproduces the official mDPO code).
    """

    ids: list[str]
    rows: dict[Branch, Rows]
    pad_token_id: int
    reference_rows: dict[Branch, Rows] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Record ids per length outcome of this batch (``too_long``, ``prompt_too_long``: dropped, counted in
    ``dropped`` too; ``response_truncated``: kept, cut), for the data report."""
    epoch: int = 0
    """The data epoch that seeded the inputs (negatives, swapped contexts); keys precomputed references."""
    negative_log_q: Tensor | None = None
    """``[records, K]`` log q of each record's negatives when the sampler weights its draws."""
    token_budget: int | None = None
    """``data.token_budget``: longest row the shared-prefix engine packs groups of several records into;
    None: one (record, image, context) group per row (:mod:`mmpo.engine.layout`)."""

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> PreferenceBatch:
        return replace(
            self,
            rows={b: r.to(device) for b, r in self.rows.items()},
            reference_rows={b: r.to(device) for b, r in self.reference_rows.items()},
            negative_log_q=None if self.negative_log_q is None else self.negative_log_q.to(device),
        )

    def with_rows(self, rows: dict[Branch, Rows]) -> PreferenceBatch:
        """The same records with other rows (and no reference rows of their own)."""
        return replace(self, rows=rows, reference_rows={})

    def for_reference(self) -> PreferenceBatch:
        """The batch the reference model scores."""
        if not self.reference_rows:
            return self
        return self.with_rows({**self.rows, **self.reference_rows})
