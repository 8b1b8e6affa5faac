"""Reference strategies: where the reference log-probs of a batch come from, one small class each.

- ``adapter_off``: the policy with its LoRA adapters disabled (no extra memory; the mDPO/TRL default).
- ``copy``: a frozen copy of the initial policy (full fine-tuning); sharded like the policy under FSDP2.
- ``precomputed``: read from a cache that one no-grad pass of the same engine wrote before fit
  (:mod:`mmpo.engine.precompute`, :mod:`mmpo.engine.cache`); no reference forward during training. The pass
  scores the train and val data with the policy's adapters off (LoRA) or with the initial weights (full
  fine-tuning). Inputs must be seeded: ``resample_per_forward`` draws a fresh negative on every forward,
  which no cache can hold.
- ``none``: reference-free losses (SFT).

All run the same engine as the policy, under ``no_grad``, in the same dtype, so at step 0 with
policy == reference every DPO-style term equals log 2. Each class states its own start-up problems.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from mmpo.branches import Branch, LogProbs, TokenTables
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.cache import CACHE_DIR, ReferenceCache, ReferenceCacheError, fingerprint, model_fields
from mmpo.engine.forward import branch_logps, branch_token_logps
from mmpo.engine.precompute import missing_records, precompute
from mmpo.engine.vision import ImageFeatures
from mmpo.models.sharding import is_sharded, shard

log = logging.getLogger(__name__)

ON_MISSING = ("fill", "fail")
"""``reference.on_missing`` (precomputed): compute missing entries before fit, or stop naming what changed."""


class ReferenceStrategy:
    """Base: a live reference, the same engine under ``no_grad``. ``problems`` is the start-up check."""

    name: ClassVar[str]

    def __init__(self, policy: nn.Module, mode: str, options: DictConfig | dict):
        self.mode = mode

    @classmethod
    def problems(cls, cfg: DictConfig, plan) -> list[str]:
        """Why this strategy cannot serve the run of ``cfg`` (``plan``: the loss's requirements and the
        data's branches and samplers per split, :class:`~mmpo.modules.preference.DataPlan`)."""
        return []

    def model(self, policy: nn.Module) -> nn.Module:
        return policy

    def adapters_off(self, policy: nn.Module):
        return nullcontext()

    def score(
        self, policy: nn.Module, batch: PreferenceBatch, features: ImageFeatures | None = None
    ) -> LogProbs:
        with self.adapters_off(policy):
            logps, _ = branch_logps(self.model(policy), batch, self.mode, features)
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
        return self.score(policy, batch.for_reference(), features)

    @torch.no_grad()
    def token_logps(
        self,
        policy: nn.Module,
        batch: PreferenceBatch,
        features: ImageFeatures | None,
        split: str,
        tokens: tuple[Branch, ...],
        distributions: tuple[Branch, ...] = (),
    ) -> tuple[LogProbs | None, TokenTables]:
        """Reference log-probs per branch and the per-token tables of ``tokens`` (token-level losses)."""
        with self.adapters_off(policy):
            logps, _, tables = branch_token_logps(
                self.model(policy), batch.for_reference(), self.mode, features, tokens, distributions
            )
        return logps, tables

    def prepare(
        self, policy: nn.Module, datamodule, epoch: int, write: bool = True, resumed: bool = False
    ) -> None:
        """Called at the start of fit and of every epoch (``datamodule`` set up)."""

    def to(self, device) -> ReferenceStrategy:
        return self

    def shard(self, mesh, precision: str) -> None:
        """Under FSDP2 (:mod:`mmpo.models.sharding`): shard the reference's own model, if it has one."""


class NoReference(ReferenceStrategy):
    name = "none"

    @classmethod
    def problems(cls, cfg: DictConfig, plan) -> list[str]:
        if not plan.requirements.reference:
            return []
        allowed = [n for n in REFERENCE_STRATEGIES if n != cls.name]
        return [f"loss={plan.loss_name} needs a reference; reference.strategy allowed: {allowed}"]

    @torch.no_grad()
    def logps(self, policy, batch, features=None, split="train") -> LogProbs | None:
        return None

    @torch.no_grad()
    def token_logps(self, policy, batch, features, split, tokens, distributions=()):
        return None, {}


class AdapterOff(ReferenceStrategy):
    name = "adapter_off"

    @classmethod
    def problems(cls, cfg: DictConfig, plan) -> list[str]:
        if cfg.model.lora.enabled:
            return []
        return [
            "reference=adapter_off needs model.lora.enabled=true; use reference=copy for full fine-tuning"
        ]

    def adapters_off(self, policy: nn.Module):
        return policy.disable_adapter()


class FrozenCopy(ReferenceStrategy):
    name = "copy"

    def __init__(self, policy: nn.Module, mode: str, options: DictConfig | dict):
        super().__init__(policy, mode, options)
        self.frozen = copy.deepcopy(policy).eval().requires_grad_(False)

    def model(self, policy: nn.Module) -> nn.Module:
        return self.frozen

    def to(self, device) -> FrozenCopy:
        self.frozen.to(device)
        return self

    def shard(self, mesh, precision: str) -> None:
        """Inference-only FSDP2: the copy's weights stay sharded except inside a unit's forward (FSDP's
        counterpart of MCM-DPO's ZeRO-3 inference engine for its reference)."""
        shard(self.frozen, mesh, precision)


class Precomputed(ReferenceStrategy):
    name = "precomputed"

    def __init__(self, policy: nn.Module, mode: str, options: DictConfig | dict):
        super().__init__(policy, mode, options)
        self.on_missing = options.get("on_missing", "fill")
        if self.on_missing not in ON_MISSING:
            raise ValueError(f"reference.on_missing={self.on_missing!r}; allowed: {list(ON_MISSING)}")
        self.cache: ReferenceCache | None = None
        self._prepared = False

    @classmethod
    def problems(cls, cfg: DictConfig, plan) -> list[str]:
        problems = []
        if cfg.reference.get("on_missing") not in ON_MISSING:
            problems.append(
                f"reference.on_missing={cfg.reference.get('on_missing')!r}; allowed: {list(ON_MISSING)}"
            )
        if any(s is not None and s.resample_per_forward for s in plan.samplers.values()):
            problems.append(
                "reference=precomputed cannot hold negative_sampler.resample_per_forward=true (a fresh "
                "negative on every forward); set it to false or use reference=adapter_off|copy"
            )
        token_level = plan.requirements.token_logps
        if token_level:
            problems.append(
                f"reference=precomputed stores sequence log-probs only; loss={plan.loss_name} reads the "
                f"per-token log-probs of {sorted(map(str, token_level))}: use reference=adapter_off or copy"
            )
        per_epoch = sorted(
            {str(b) for split, bs in plan.branches.items() for b in bs if plan.epoch_dependent(split, b)}
        )
        if per_epoch and not cfg.model.lora.enabled and cfg.trainer.get("max_epochs") != 1:
            problems.append(
                f"reference=precomputed with full fine-tuning and the epoch-seeded branches {per_epoch} needs "
                "trainer.max_epochs=1 (each epoch's negatives are scored by the initial weights, which are "
                "gone after the first step); use model.lora.enabled=true or reference=copy"
            )
        return problems

    def adapters_off(self, policy: nn.Module):
        return policy.disable_adapter() if hasattr(policy, "disable_adapter") else nullcontext()

    @torch.no_grad()
    def logps(self, policy, batch, features=None, split="train") -> LogProbs | None:
        if self.cache is None:
            raise ReferenceCacheError(
                "reference=precomputed: the cache is not open; call prepare(policy, datamodule, epoch) "
                "before the first step"
            )
        if batch.reference_rows:
            raise ReferenceCacheError(
                "reference=precomputed cannot serve negative_sampler.resample_per_forward=true (a fresh "
                "negative per forward); set it to false"
            )
        device = batch.rows[next(iter(batch.rows))].tensors["input_ids"].device
        return self.cache.lookup(split, batch.ids, list(batch.rows), batch.epoch, device)

    def token_logps(self, policy, batch, features, split, tokens, distributions=()):
        raise ReferenceCacheError(
            "reference=precomputed stores sequence log-probs only; a loss with per-token terms needs "
            "reference=adapter_off or copy"
        )

    def prepare(
        self, policy: nn.Module, datamodule, epoch: int, write: bool = True, resumed: bool = False
    ) -> None:
        """Make sure the cache holds every train and val entry of ``epoch``, running the precompute stage
        for the missing ones (``on_missing=fill``) or failing with what changed (``fail``). ``write`` saves
        the cache (global rank zero only); ``resumed``: the policy's weights came from a checkpoint, so a
        full fine-tuning run cannot recompute."""
        if self.cache is None:
            components = {**datamodule.fingerprint_fields(), "model": model_fields(policy)}
            directory = Path(datamodule.directory) / CACHE_DIR
            self.cache = ReferenceCache(directory, fingerprint(components), datamodule.epoch_dependent)
        todo = missing_records(self.cache, datamodule, epoch)
        count = sum(map(len, todo.values()))
        if not count:
            self._prepared = True
            return
        if self.on_missing == "fail":
            detail = (
                self.cache.explain_missing()
                if not self.cache.entries
                else f"reference cache {self.cache.path} lacks {count} record(s) for epoch {epoch}"
            )
            raise ReferenceCacheError(
                f"{detail}\nreference.on_missing=fill computes the missing entries before fit."
            )
        if not hasattr(policy, "disable_adapter") and (resumed or self._prepared):
            raise ReferenceCacheError(
                f"reference=precomputed with full fine-tuning: {count} entries for epoch {epoch} are missing, "
                "but the initial weights are gone (the policy has trained or was resumed). Precompute from the "
                "initial model first, use LoRA (the reference is then the adapters-off base), or use "
                "reference=copy"
            )
        device = next(policy.parameters()).device
        precompute(
            self.cache,
            lambda batch: self.score(policy, batch),
            datamodule,
            epoch,
            todo,
            device,
            share=not is_sharded(policy),
        )
        self._prepared = True
        if write:
            self.cache.save()
            log.info("reference cache written: %s (%d entries)", self.cache.path, len(self.cache.entries))


REFERENCE_STRATEGIES: dict[str, type[ReferenceStrategy]] = {
    cls.name: cls for cls in (AdapterOff, FrozenCopy, Precomputed, NoReference)
}


def reference_problems(cfg: DictConfig, plan) -> list[str]:
    """The start-up problems of ``reference.strategy`` for this run (see :class:`ReferenceStrategy`)."""
    strategy = REFERENCE_STRATEGIES.get(cfg.reference.strategy)
    if strategy is None:
        return [f"reference.strategy={cfg.reference.strategy!r}; allowed: {list(REFERENCE_STRATEGIES)}"]
    return strategy.problems(cfg, plan) if plan.requirements.reference else []


def build_reference(
    options: DictConfig | dict, policy: nn.Module, mode: str, needed: bool = True
) -> ReferenceStrategy:
    """The strategy ``options.strategy`` (``none`` when the loss needs no reference)."""
    name = options["strategy"] if needed else NoReference.name
    if name not in REFERENCE_STRATEGIES:
        raise ValueError(f"reference.strategy={name!r}; allowed: {list(REFERENCE_STRATEGIES)}")
    return REFERENCE_STRATEGIES[name](policy, mode, options)
