"""The order of the records: a function of (seed, epoch), sharded over ranks, resumable mid-epoch.

    order(e)  = randperm(n, generator = seeded(seed, "order", e))   (shuffle)   or   0 .. n-1
    rank r of W takes order(e) padded to a multiple of W by repeating its head, then [r::W]
                (the rule of torch's DistributedSampler, so DDP sees every record once per epoch)

A run resumed from a checkpoint saved after the b-th batch of epoch e (``resume_at(e, b)``) starts that epoch
at its rank's index ``b * batch_size``: it trains the batches an uninterrupted run would have trained next,
in the same order (the negatives are seeded by record and epoch, so they are the same too). The order does
not depend on torch's global generator, so nothing else a run draws shifts it.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import distributed as dist
from torch.utils.data import Sampler


def _generator(seed: int, epoch: int) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}|order|{epoch}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order of ``length`` records, this rank's share of it (module docstring)."""

    def __init__(self, length: int, shuffle: bool, seed: int) -> None:
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world = 0, 1

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start."""
        self.epoch = epoch

    def resume_at(self, epoch: int, skip: int) -> None:
        """Start ``epoch`` at this rank's index ``skip`` (the next iteration of that epoch only)."""
        self._resume = (epoch, skip)

    def order(self, epoch: int) -> list[int]:
        if self.shuffle:
            indices = torch.randperm(self.length, generator=_generator(self.seed, epoch)).tolist()
        else:
            indices = list(range(self.length))
        total = math.ceil(self.length / self.world) * self.world
        indices += indices[: total - len(indices)]
        return indices[self.rank :: self.world]

    def __iter__(self):
        mine = self.order(self.epoch)
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip, self._resume = self._resume[1], None
        return iter(mine[skip:])

    def __len__(self) -> int:
        return math.ceil(self.length / self.world)


def epoch_sampler(
    length: int, shuffle: bool, seed: int, batch_size: int, resume: tuple[int, int] | None = None
) -> EpochSampler:
    """The sampler of a data loader; ``resume = (epoch, batches)``: :func:`resume_after`."""
    sampler = EpochSampler(length, shuffle, seed)
    if resume is not None:
        resume_after(sampler, resume, batch_size)
    return sampler


def resume_after(sampler: EpochSampler, resume: tuple[int, int], batch_size: int) -> None:
    """``resume = (epoch, batches)``: that epoch continues after its first ``batches`` batches (a checkpoint
    saved mid-epoch; one saved at an epoch's end starts the next)."""
    if resume[1] * batch_size < len(sampler):
        sampler.resume_at(resume[0], resume[1] * batch_size)


class ResumableTrainOrder:
    """A data module's training order that resumes mid-epoch: ``resume_at`` (called from the checkpoint
    by :class:`mmpo.modules.base.TrainingModule`) makes the training loader start where the checkpoint
    stopped. The module provides ``datasets``, ``seed`` and ``cfg.batch_size``."""

    _resume: tuple[int, int] | None = None
    _train_sampler: EpochSampler | None = None

    def resume_at(self, epoch: int, batches: int) -> None:
        """Continue training after the first ``batches`` batches of ``epoch`` (a checkpoint saved mid-epoch;
        a checkpoint of a finished epoch starts the next one from its first batch, as Lightning does). A
        training loader made before the checkpoint was read (ModelParallelStrategy restores it after
        ``configure_optimizers`` has counted the training batches) resumes too."""
        self._resume = (epoch, batches)
        if self._train_sampler is not None:
            resume_after(self._train_sampler, self._resume, self.cfg.batch_size)

    def sampler_of(self, split: str, shuffle: bool) -> EpochSampler:
        resume = self._resume if split == "train" else None
        sampler = epoch_sampler(len(self.datasets[split]), shuffle, self.seed, self.cfg.batch_size, resume)
        if split == "train":
            self._train_sampler = sampler
        return sampler
