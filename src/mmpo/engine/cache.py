"""Precomputed reference log-probs: one no-grad pass writes them, training reads them.

A cache file lives under the data directory and is named by a **fingerprint** of everything that
determines the reference inputs and model, and nothing else (not the engine mode, batch size or chunk
size, which change numbers only by kernel rounding)::

    <data dir>/reference_cache/<fingerprint[:16]>.pt
    fingerprint = BLAKE2b( the fields of each component that shapes the inputs | model config | weights )

Each component states its own fields (``fingerprint_fields()``): the data module (record files, images,
processor, tokenizer and chat template), each split's draws (seed, negative sampler and its parameters,
pools) and rows (length and truncation settings, template), and the model (:func:`model_fields`).

``weights`` identifies the reference weights (the base weights with LoRA adapters off, or the full initial
weights): by the checkpoint files they were loaded from (:mod:`mmpo.models.weight_files`), else by their
content, so a changed sampler seed, data file or checkpoint names another file; a run that finds no
entry fails with an error that lists what differs from the caches that do exist (``on_missing=fail``)
or computes the missing entries first (``on_missing=fill``).

Entries are keyed ``(split, record id, branch, epoch)``. Inputs drawn per epoch (negatives of a random
sampler, swapped contexts: the data says which, ``epoch_dependent(split, branch)``) differ per epoch, so
their key holds the epoch and the pass runs again for each new epoch; every other branch is keyed with
epoch ``-1`` (any epoch) and computed once. A record the collator dropped for length is stored as NaN so it
is not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from mmpo.branches import Branch, LogProbs
from mmpo.models import weight_files

log = logging.getLogger(__name__)

CACHE_DIR = "reference_cache"
FORMAT_VERSION = 2
ANY_EPOCH = -1

EntryKey = tuple[str, str, str, int]


class ReferenceCacheError(RuntimeError):
    """A precomputed reference that is missing, stale or impossible for the configuration."""


EpochDependent = Callable[[str, Branch], bool]
"""Whether the inputs of a branch of a split are drawn per epoch."""


def entry_key(split: str, record_id: str, branch: Branch, epoch: int, per_epoch: bool) -> EntryKey:
    return split, record_id, str(branch), epoch if per_epoch else ANY_EPOCH


# ---- fingerprint -----------------------------------------------------------------------------------
def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _base_name(name: str) -> str:
    """A parameter's name without peft's wrapping, so LoRA and full fine-tuning runs on the same base
    weights share one digest."""
    for wrap in ("base_model.model.", ".base_layer", ".original_module"):
        name = name.replace(wrap, "")
    return name


def weights_digest(model: nn.Module) -> str:
    """Hash of every parameter and buffer of ``model`` (name, dtype, shape, bytes), LoRA and peft
    ``modules_to_save`` copies excluded: the weights the reference sees with adapters off. A sharded
    (FSDP2) weight is hashed whole (gathered: every rank calls this)."""
    h = hashlib.blake2b(digest_size=16)
    state = {
        _base_name(n): t
        for n, t in model.state_dict().items()
        if "lora_" not in n and "modules_to_save." not in n
    }
    for name, tensor in sorted(state.items()):
        whole = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        flat = whole.detach().reshape(-1).contiguous().cpu()
        h.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """Named components, each a JSON-able dict of fields; the digest covers them all."""

    components: dict[str, dict[str, Any]]

    @property
    def digest(self) -> str:
        return _digest(_json(self.components))

    def differences(self, other: Fingerprint) -> list[str]:
        """``component.field: theirs -> mine`` for every field that differs (values cut to 80 characters)."""

        def short(value) -> str:
            text = "absent" if value is _ABSENT else _json(value)
            return text if len(text) <= 80 else text[:77] + "..."

        out = []
        for name in sorted(set(self.components) | set(other.components)):
            mine, theirs = self.components.get(name, {}), other.components.get(name, {})
            for key in sorted(set(mine) | set(theirs)):
                before, now = theirs.get(key, _ABSENT), mine.get(key, _ABSENT)
                if before != now:
                    out.append(f"{name}.{key}: {short(before)} -> {short(now)}")
        return out


_ABSENT = object()


def model_fields(model: nn.Module) -> dict[str, str]:
    """The model's part of the fingerprint: its config and the reference weights, identified by the
    checkpoint files they were loaded from (``weights.<role>/<file>``, :mod:`mmpo.models.weight_files`;
    reading headers takes milliseconds) or else by their content (``weights``, :func:`weights_digest`)."""
    files = weight_files.remembered(model)
    weights = (
        {"weights": weights_digest(model)} if files is None else {f"weights.{k}": v for k, v in files.items()}
    )
    return {
        "type": model.config.model_type,
        "config": _digest(model.config.to_json_string(use_diff=False)),
        **weights,
    }


def fingerprint(components: dict[str, dict[str, Any]]) -> Fingerprint:
    """The fingerprint of named components, each a JSON-able dict of fields."""
    return Fingerprint(json.loads(_json(components)))


# ---- the cache file --------------------------------------------------------------------------------
class ReferenceCache:
    """Per-(split, record, branch, epoch) reference log-probs for one fingerprint (see module docstring)."""

    def __init__(self, directory: Path, fingerprint: Fingerprint, epoch_dependent: EpochDependent):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.epoch_dependent = epoch_dependent
        self.path = self.directory / f"{fingerprint.digest[:16]}.pt"
        self.entries: dict[EntryKey, float] = {}
        if self.path.is_file():
            stored = torch.load(self.path, weights_only=True)
            if stored["fingerprint"] != fingerprint.digest or stored["version"] != FORMAT_VERSION:
                raise ReferenceCacheError(
                    f"reference cache {self.path} belongs to another fingerprint or format; delete it"
                )
            self.entries = stored["entries"]

    def explain_missing(self) -> str:
        """Why this run has no entries: what differs from each other cache in the directory."""
        lines = [
            f"no precomputed reference for this run in {self.directory} (fingerprint "
            f"{self.fingerprint.digest[:16]})."
        ]
        for other in sorted(self.directory.glob("*.pt")) if self.directory.is_dir() else []:
            if other == self.path:
                continue
            stored = torch.load(other, weights_only=True)
            theirs = Fingerprint(stored["components"])
            lines.append(
                f"  {other.name} is stale for this run; it differs in: "
                + "; ".join(self.fingerprint.differences(theirs))
            )
        return "\n".join(lines)

    def missing(self, split: str, record_ids: list[str], branches: list[Branch], epoch: int) -> list[int]:
        """Indices of the records that lack an entry for some branch."""
        return [
            i
            for i, rid in enumerate(record_ids)
            if any(self.key(split, rid, b, epoch) not in self.entries for b in branches)
        ]

    def key(self, split: str, record_id: str, branch: Branch, epoch: int) -> EntryKey:
        return entry_key(split, record_id, branch, epoch, self.epoch_dependent(split, branch))

    def add(self, split: str, record_ids: list[str], logps: LogProbs, epoch: int) -> None:
        for branch, values in logps.items():
            for rid, value in zip(record_ids, values.tolist(), strict=True):
                self.entries[self.key(split, rid, branch, epoch)] = value

    def drop(self, split: str, record_ids: list[str], branches: list[Branch], epoch: int) -> None:
        """Mark records the collator dropped for length (never looked up, never recomputed)."""
        for rid in record_ids:
            for branch in branches:
                self.entries[self.key(split, rid, branch, epoch)] = math.nan

    def lookup(
        self,
        split: str,
        record_ids: list[str],
        branches: list[Branch],
        epoch: int,
        device: torch.device | str,
    ) -> LogProbs:
        out: LogProbs = {}
        for branch in branches:
            values = []
            for rid in record_ids:
                key = self.key(split, rid, branch, epoch)
                value = self.entries.get(key)
                if value is None or math.isnan(value):
                    raise ReferenceCacheError(
                        f"reference cache {self.path} has no entry for record {rid!r} ({split}), branch {branch}, "
                        f"epoch {key[3]}; the cache is stale for this data or the precompute pass did not run "
                        "(reference.on_missing=fill computes it before fit)"
                    )
                values.append(value)
            out[branch] = torch.tensor(values, dtype=torch.float32, device=device)
        return out

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save(
            {
                "version": FORMAT_VERSION,
                "fingerprint": self.fingerprint.digest,
                "components": self.fingerprint.components,
                "entries": self.entries,
            },
            tmp,
        )
        os.replace(tmp, self.path)
