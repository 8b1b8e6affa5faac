"""The reference precompute stage: one no-grad pass that fills the reference cache before training reads it.

For every split and the epoch about to run, the records whose cache entries are missing (some branch has
no entry for that epoch, :mod:`mmpo.engine.cache`) are scored by ``score`` (the reference's own forward:
the same engine, adapters off or the initial weights) and added; records the collator dropped for length
are stored as NaN, so they are never looked up and never scored again. The stage reads the data only
through the data module's interface (``record_ids``, ``branches_of``, ``batches``).

Under ``torch.distributed`` with world size W > 1 (every rank must call it), rank r scores the missing
records ``[r::W]`` of each split, then the ranks exchange their new entries, so every rank ends with the
full cache. A sharded (FSDP2) model scores every record on every rank instead: each of its forwards is a
collective of all ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import distributed as dist

from mmpo.branches import LogProbs
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.cache import EntryKey, ReferenceCache

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


def missing_records(cache: ReferenceCache, datamodule, epoch: int) -> dict[str, list[int]]:
    """Per split, the indices of the records that lack an entry for some branch of ``epoch``."""
    return {
        split: cache.missing(split, datamodule.record_ids(split), datamodule.branches_of(split), epoch)
        for split in SPLITS
    }


def precompute(
    cache: ReferenceCache,
    score: Callable[[PreferenceBatch], LogProbs],
    datamodule,
    epoch: int,
    todo: dict[str, list[int]],
    device: torch.device,
    share: bool = True,
) -> None:
    """Score the records ``todo[split]`` (this rank's share of them, or all of them without ``share``: a
    sharded model's forward needs every rank) and add them to ``cache``."""
    rank, world = rank_and_world() if share else (0, 1)
    known = set(cache.entries)
    for split in SPLITS:
        mine = todo[split][rank::world]
        if not mine:
            continue
        branches = datamodule.branches_of(split)
        log.info("reference cache: scoring %d %s records for epoch %d", len(mine), split, epoch)
        for asked, batch in datamodule.batches(split, mine, epoch):
            kept = set(batch.ids)
            cache.drop(split, [rid for rid in asked if rid not in kept], branches, epoch)
            if not len(batch):
                continue
            needed = [
                b
                for b in branches
                if any(cache.key(split, rid, b, epoch) not in cache.entries for rid in batch.ids)
            ]
            batch = batch.with_rows({b: batch.rows[b] for b in needed}).to(device)
            with torch.no_grad():
                cache.add(split, batch.ids, score(batch), epoch)
    if world > 1:
        cache.entries.update(_gather({k: v for k, v in cache.entries.items() if k not in known}))


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(entries: dict[EntryKey, float]) -> dict[EntryKey, float]:
    """Every rank's ``entries`` merged (values and NaN drop markers alike); a collective."""
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, entries)
    return {key: value for part in parts for key, value in part.items()}
