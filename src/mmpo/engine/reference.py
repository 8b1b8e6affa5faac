"""Reference strategies: where the reference log-probs of a batch come from.

- ``adapter_off``: the policy with its LoRA adapters disabled (no extra memory; the mDPO/TRL default).
- ``copy``: a frozen copy of the initial policy (full fine-tuning).
- ``precomputed``: read from a cache that one no-grad pass of the same engine wrote before fit
  (:mod:`mmpo.engine.cache`); no reference forward during training. The pass scores the train and val
  data with the policy's adapters off (LoRA) or with the initial weights (full fine-tuning). Inputs must
  be seeded: ``resample_per_forward`` draws a fresh corruption on every forward, which no cache can hold.
- ``none``: reference-free losses (SFT).

All run the same engine as the policy, under ``no_grad``, in the same dtype, so at step 0 with
policy == reference every DPO-style term equals log 2.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import distributed as dist
from torch import nn

from mmpo.branches import Branch, LogProbs
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.cache import CACHE_DIR, EntryKey, ReferenceCache, ReferenceCacheError, entry_key, fingerprint
from mmpo.engine.forward import branch_logps
from mmpo.engine.vision import ImageFeatures

log = logging.getLogger(__name__)

STRATEGIES = ("adapter_off", "copy", "precomputed", "none")
ON_MISSING = ("fill", "fail")
SPLITS = ("train", "val")


class Reference:
    def __init__(self, strategy: str, policy: nn.Module, mode: str = "batched", on_missing: str = "fill"):
        if strategy not in STRATEGIES:
            raise ValueError(f"reference.strategy={strategy!r}; allowed: {list(STRATEGIES)}")
        if strategy == "adapter_off" and not hasattr(policy, "disable_adapter"):
            raise ValueError(
                "reference=adapter_off needs a LoRA policy (model.lora.enabled=true); "
                "use reference=copy for full fine-tuning"
            )
        if on_missing not in ON_MISSING:
            raise ValueError(f"reference.on_missing={on_missing!r}; allowed: {list(ON_MISSING)}")
        self.strategy = strategy
        self.mode = mode
        self.on_missing = on_missing
        self.frozen = None
        self.cache: ReferenceCache | None = None
        self._prepared = False
        if strategy == "copy":
            self.frozen = copy.deepcopy(policy).eval().requires_grad_(False)

    def _live(self, policy: nn.Module, batch: PreferenceBatch, features: ImageFeatures | None) -> LogProbs:
        model = self.frozen if self.frozen is not None else policy
        adapters_off = self.strategy in ("adapter_off", "precomputed") and hasattr(policy, "disable_adapter")
        with policy.disable_adapter() if adapters_off else nullcontext():
            logps, _ = branch_logps(model, batch, self.mode, features)
        return logps

    @torch.no_grad()
    def logps(
        self,
        policy: nn.Module,
        batch: PreferenceBatch,
        features: ImageFeatures | None = None,
        split: str = "train",
    ) -> LogProbs | None:
        """Reference log-probs per branch; ``features`` is the step's shared image-feature cache."""
        if self.strategy == "none":
            return None
        if self.strategy == "precomputed":
            if self.cache is None:
                raise ReferenceCacheError(
                    "reference=precomputed: the cache is not open; call "
                    "Reference.prepare(policy, datamodule, epoch) before the first step"
                )
            if batch.reference_rows:
                raise ReferenceCacheError(
                    "reference=precomputed cannot serve negative_sampler.resample_per_forward"
                    "=true (a fresh corruption per forward); set it to false"
                )
            device = batch.rows[next(iter(batch.rows))].tensors["input_ids"].device
            return self.cache.lookup(split, batch.ids, list(batch.rows), batch.epoch, device)
        return self._live(policy, batch.for_reference(), features)

    # ---- precomputed: the one pass -----------------------------------------------------------------
    def prepare(
        self, policy: nn.Module, datamodule, epoch: int, write: bool = True, resumed: bool = False
    ) -> None:
        """``reference=precomputed``: make sure the cache holds every train and val entry of ``epoch``,
        computing the missing ones (``on_missing=fill``) or failing with what changed (``fail``).

        ``datamodule`` must be set up; ``write`` saves the cache (global rank zero only); ``resumed``
        says the policy's weights came from a checkpoint (then a full fine-tuning run cannot recompute).
        Under ``torch.distributed`` with world size W > 1 (every rank must call it), rank r scores the
        missing records ``[r::W]`` of each split, then the ranks exchange their new entries, so every
        rank ends with the full cache.
        """
        if self.strategy != "precomputed":
            return
        if self.cache is None:
            self.cache = ReferenceCache(_cache_dir(datamodule), fingerprint(datamodule, policy))
        branches = {split: list(datamodule.collators[split].branches) for split in SPLITS}
        records = {split: [r.id for r in datamodule.datasets[split].records] for split in SPLITS}
        todo = {split: self.cache.missing(split, records[split], branches[split], epoch) for split in SPLITS}
        if not any(todo.values()):
            self._prepared = True
            return
        if self.on_missing == "fail":
            detail = (
                self.cache.explain_missing()
                if not self.cache.entries
                else (
                    f"reference cache {self.cache.path} lacks {sum(map(len, todo.values()))} record(s) for epoch {epoch}"
                )
            )
            raise ReferenceCacheError(
                f"{detail}\nreference.on_missing=fill computes the missing entries before fit."
            )
        if not hasattr(policy, "disable_adapter") and (resumed or self._prepared):
            raise ReferenceCacheError(
                f"reference=precomputed with full fine-tuning: {sum(map(len, todo.values()))} entries for epoch "
                f"{epoch} are missing, but the initial weights are gone (the policy has trained or was resumed). "
                "Precompute from the initial model first, use LoRA (the reference is then the adapters-off base), "
                "or use reference=copy"
            )
        rank, world = _rank_and_world()
        known = set(self.cache.entries)
        for split in SPLITS:
            if todo[split][rank::world]:
                self._fill(policy, datamodule, split, todo[split][rank::world], epoch, branches[split])
        if world > 1:
            mine = {k: v for k, v in self.cache.entries.items() if k not in known}
            self.cache.entries.update(_gather(mine))
        self._prepared = True
        if write:
            self.cache.save()
            log.info("reference cache written: %s (%d entries)", self.cache.path, len(self.cache.entries))

    def _fill(
        self,
        policy: nn.Module,
        datamodule,
        split: str,
        indices: list[int],
        epoch: int,
        branches: list[Branch],
    ) -> None:
        dataset, collator = datamodule.datasets[split], datamodule.collators[split]
        batch_size = datamodule.cfg.batch_size
        device = next(policy.parameters()).device
        log.info("reference cache: scoring %d %s records for epoch %d", len(indices), split, epoch)
        saved_epoch, dataset.epoch = dataset.epoch, epoch
        try:
            for start in range(0, len(indices), batch_size):
                examples = [dataset[i] for i in indices[start : start + batch_size]]
                batch = collator(examples)
                kept = set(batch.ids)
                self.cache.drop(
                    split, [e.record.id for e in examples if e.record.id not in kept], branches, epoch
                )
                if not len(batch):
                    continue
                needed = [
                    b
                    for b in branches
                    if any(entry_key(split, rid, b, epoch) not in self.cache.entries for rid in batch.ids)
                ]
                batch = PreferenceBatch(
                    batch.ids, {b: batch.rows[b] for b in needed}, batch.pad_token_id, epoch=batch.epoch
                ).to(device)
                with torch.no_grad():
                    self.cache.add(split, batch.ids, self._live(policy, batch, None), epoch)
        finally:
            dataset.epoch = saved_epoch

    def to(self, device) -> Reference:
        if self.frozen is not None:
            self.frozen.to(device)
        return self


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(entries: dict[EntryKey, float]) -> dict[EntryKey, float]:
    """Every rank's ``entries`` merged (values and NaN drop markers alike); a collective."""
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, entries)
    return {key: value for part in parts for key, value in part.items()}


def _cache_dir(datamodule) -> Path:
    from mmpo.data.datamodule import resolve_data_dir

    return resolve_data_dir(datamodule.cfg) / CACHE_DIR
