"""Examples: a record with everything that shapes its inputs drawn, before collation.

The data set of a split turns a record into an :class:`Example`: its images loaded, its K negatives drawn by
the ``negative_sampler`` (and, with ``resample_per_forward``, the reference's own K), and the other record's
context of a swapped-context branch. Every draw comes from a generator seeded by (seed, record id, epoch,
stream), so the policy, the reference and the reference cache see identical inputs and a data loader
worker draws what the main process would. The collator then only builds rows.

The records may be a lazy view (:class:`~mmpo.data.records.Records`): a record is parsed and its images
decoded only when its example is asked for, in the dataloader worker that asks. The epoch lives in shared
memory, so persistent workers see the epoch the module sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from mmpo.branches import Branch
from mmpo.data.records import Record, RecordError, record_error
from mmpo.images import load_image
from mmpo.negatives.base import Negative, NegativeSampler, Pool, seeded_generator

CONTEXT_STREAM = "context"


@dataclass
class Example:
    """A record with its images loaded and its draws made, as the data set yields it."""

    record: Record
    images: list[Image.Image]
    negatives: list[Negative] = field(default_factory=list)
    reference_negatives: list[Negative] = field(default_factory=list)
    """The reference's own negatives (``resample_per_forward``); empty when it sees the policy's."""
    swapped_context: str | None = None
    epoch: int = 0


class PreferenceDataset(Dataset):
    """Records of one split; ``epoch`` (set by the module) seeds the draws of :meth:`__getitem__`.

    ``negatives``: how many negatives each example gets from ``sampler``; ``swap_context``: whether
    examples draw another record's context (from ``context_pool``). The pool of images that draws of
    other images pick from is gathered from the records the first time a sampler reads it."""

    def __init__(
        self,
        records: Sequence[Record],
        sampler: NegativeSampler | None = None,
        negatives: int = 0,
        swap_context: bool = False,
        seed: int = 0,
    ):
        if negatives and sampler is None:
            raise ValueError(f"{negatives} negative image(s) per record need a negative_sampler")
        self.records = records
        self.sampler = sampler if negatives else None
        self.negatives = negatives
        self.swap_context = swap_context
        self.seed = seed
        self.pool = Pool(ImagesOf(records))
        self.context_pool = sorted({r.context for r in records if r.context}) if swap_context else []
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(value)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example:
        return self.example(self.records[index], self.epoch)

    def example(
        self, record: Record, epoch: int, images: list[Image.Image] | None = None, draw: bool = True
    ) -> Example:
        """The example of ``record`` in ``epoch`` (``images``: its images if already decoded; ``draw``:
        whether to draw its negatives)."""
        images = [load_image(p) for p in record.images] if images is None else images
        example = Example(record, images, epoch=epoch)
        if self.sampler is not None and draw:
            args = (record, images, self.negatives, self.seed, epoch, self.pool)
            try:
                example.negatives = self.sampler.negatives(*args)
                if self.sampler.resample_per_forward:
                    example.reference_negatives = self.sampler.negatives(*args, reference=True)
            except ValueError as error:
                raise record_error(record.location, record.id, "negative_images",
                                   "negatives", str(error)) from None  # fmt: skip
        if self.swap_context:
            example.swapped_context = self._other_context(record, epoch)
        return example

    def _other_context(self, record: Record, epoch: int) -> str:
        others = [c for c in self.context_pool if c != record.context]
        if not others:
            raise RecordError("swapped-context branches need at least two distinct contexts in the data")
        generator = seeded_generator(self.seed, record.id, epoch, CONTEXT_STREAM)
        return others[int(torch.randint(len(others), (1,), generator=generator))]

    def fingerprint_fields(self) -> dict[str, Any]:
        """What determines the draws, for the reference-cache fingerprint."""
        return {
            "seed": self.seed,
            "negatives": self.negatives,
            "sampler": None if self.sampler is None else self.sampler.fingerprint_fields(),
            "pool": _digest(list(self.pool.images)),
            "context_pool": _digest(self.context_pool) if self.swap_context else None,
        }

    def epoch_dependent(self, branch: Branch) -> bool:
        """Whether the inputs of ``branch`` change with the epoch (its cache entries are then per epoch)."""
        return draws_per_epoch(branch, self.sampler)


class ImagesOf(Sequence[str]):
    """The distinct image references of ``records``, sorted; gathered on first use."""

    def __init__(self, records: Sequence[Record]):
        self.records = records
        self._images: list[str] | None = None

    def _all(self) -> list[str]:
        if self._images is None:
            self._images = sorted({p for r in self.records for p in r.images})
        return self._images

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index):
        return self._all()[index]


def draws_per_epoch(branch: Branch, sampler: NegativeSampler | None) -> bool:
    """Whether the inputs of ``branch`` are drawn anew each epoch: a negative of an epoch-dependent
    sampler, or a swapped context."""
    negative = branch.image == "negative" and sampler is not None and sampler.epoch_dependent
    return negative or branch.context == "swapped"


def _digest(values: list[str]) -> str:
    return hashlib.blake2b("\n".join(values).encode(), digest_size=16).hexdigest()
