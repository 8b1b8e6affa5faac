"""Precomputed reference log-probs: one no-grad pass writes them, training reads them.

A cache file lives under the data directory and is named by a **fingerprint** of everything that
determines the reference inputs and model, and nothing else (not the engine mode, batch size or chunk
size, which change numbers only by kernel rounding)::

    <data dir>/reference_cache/<fingerprint[:16]>.pt
    fingerprint = BLAKE2b( data files | processor + tokenizer + chat template | collator settings and
                           pools | negative sampler name + parameters | seed | model config | weights )

``weights`` hashes the reference weights (the base weights with LoRA adapters off, or the full initial
weights), so a changed sampler seed, data file or checkpoint names another file; a run that finds no
entry fails with an error that lists what differs from the caches that do exist (``on_missing=fail``)
or computes the missing entries first (``on_missing=fill``).

Entries are keyed ``(split, record id, branch, epoch)``. Inputs seeded by the epoch (corrupted images,
swapped contexts: :func:`epoch_dependent`) differ per epoch, so their key holds the epoch and the pass
runs again for each new epoch; every other branch is keyed with epoch ``-1`` (any epoch) and computed
once. A record the collator dropped for length is stored as NaN so it is not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmpo.branches import Branch, LogProbs

log = logging.getLogger(__name__)

CACHE_DIR = "reference_cache"
FORMAT_VERSION = 1
ANY_EPOCH = -1

EntryKey = tuple[str, str, str, int]


class ReferenceCacheError(RuntimeError):
    """A precomputed reference that is missing, stale or impossible for the configuration."""


def epoch_dependent(branch: Branch) -> bool:
    """True when the collator draws the branch's inputs from a generator seeded by the epoch."""
    return branch.image == "corrupted" or branch.context == "swapped"


def entry_key(split: str, record_id: str, branch: Branch, epoch: int) -> EntryKey:
    return split, record_id, str(branch), epoch if epoch_dependent(branch) else ANY_EPOCH


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
    ``modules_to_save`` copies excluded: the weights the reference sees with adapters off."""
    h = hashlib.blake2b(digest_size=16)
    state = {
        _base_name(n): t
        for n, t in model.state_dict().items()
        if "lora_" not in n and "modules_to_save." not in n
    }
    for name, tensor in sorted(state.items()):
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        h.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """Named components, each ``(digest, short human-readable summary)``."""

    components: dict[str, tuple[str, str]]

    @property
    def digest(self) -> str:
        return _digest(_json({k: v[0] for k, v in self.components.items()}))

    def differences(self, other: Fingerprint) -> list[str]:
        names = sorted(set(self.components) | set(other.components))
        out = []
        for name in names:
            mine, theirs = self.components.get(name), other.components.get(name)
            if mine is None or theirs is None or mine[0] != theirs[0]:
                before = theirs[1] if theirs else "absent"
                now = mine[1] if mine else "absent"
                out.append(f"{name}: {before} -> {now}")
        return out


def _files_component(paths: list[Path], images: list[str]) -> tuple[str, str]:
    """Record files by content, image files by (path, size, mtime) (hashing every image would take
    minutes on large sets; a copied data set is then rebuilt, never silently reused)."""
    parts = [_digest(p.name, p.read_bytes()) for p in paths]
    for image in sorted(set(images)):
        stat = os.stat(image)
        parts.append(f"{image}|{stat.st_size}|{stat.st_mtime_ns}")
    digest = _digest(*parts)
    return digest, f"{', '.join(p.name for p in paths)} + {len(set(images))} images ({digest[:12]})"


def _collator_settings(collator) -> dict:
    return {
        "max_length": collator.max_length,
        "truncation": collator.truncation,
        "image": collator.image,
        "context_template": collator.context_template,
        "response_separator": collator.family.response_separator,
    }


def fingerprint(datamodule, model: nn.Module) -> Fingerprint:
    """The fingerprint of a run's reference inputs and weights (``datamodule`` after ``setup``, with one
    collator per split in ``datamodule.collators``)."""
    from mmpo.data.datamodule import resolve_data_dir

    cfg, processor = datamodule.cfg, datamodule.processor
    collators = {split: datamodule.collators[split] for split in sorted(datamodule.collators)}
    directory = resolve_data_dir(cfg)
    records = [r for dataset in datamodule.datasets.values() for r in dataset.records]
    images = [p for r in records for p in (*r.images, *r.negative_images)]
    tokenizer = processor.tokenizer
    tokenizer_state = (
        tokenizer.backend_tokenizer.to_str()
        if hasattr(tokenizer, "backend_tokenizer")
        else _json(tokenizer.get_vocab())
    )
    settings = {split: _collator_settings(c) for split, c in collators.items()}
    pools = _digest(*(_json([c.image_pool, c.context_pool]) for c in collators.values()))
    samplers = {split: c.sampler for split, c in collators.items()}
    sampler_settings = {
        split: None if s is None else {"name": s.name, **vars(s)} for split, s in samplers.items()
    }
    seeds = sorted({c.seed for c in collators.values()})
    config = model.config.to_json_string(use_diff=False)
    processed = _digest(processor.to_json_string(), tokenizer_state, str(processor.chat_template))
    weights = weights_digest(model)
    components = {
        "data": _files_component([directory / cfg.train_file, directory / cfg.val_file], images),
        "processor": (processed, f"{type(processor).__name__} ({processed[:12]})"),
        "collator": (_digest(_json(settings), pools), _json(settings)),
        "negative_sampler": (_digest(_json(sampler_settings)), _json(sampler_settings)),
        "seed": (_digest(_json(seeds)), ",".join(map(str, seeds))),
        "model_config": (_digest(config), model.config.model_type),
        "model_weights": (weights, f"hash {weights[:12]}"),
    }
    return Fingerprint({k: (v[0], v[1][:300]) for k, v in components.items()})


# ---- the cache file --------------------------------------------------------------------------------
class ReferenceCache:
    """Per-(split, record, branch, epoch) reference log-probs for one fingerprint (see module docstring)."""

    def __init__(self, directory: Path, fingerprint: Fingerprint):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
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
            theirs = Fingerprint({k: tuple(v) for k, v in stored["components"].items()})
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
            if any(entry_key(split, rid, b, epoch) not in self.entries for b in branches)
        ]

    def add(self, split: str, record_ids: list[str], logps: LogProbs, epoch: int) -> None:
        for branch, values in logps.items():
            for rid, value in zip(record_ids, values.tolist(), strict=True):
                self.entries[entry_key(split, rid, branch, epoch)] = value

    def drop(self, split: str, record_ids: list[str], branches: list[Branch], epoch: int) -> None:
        """Mark records the collator dropped for length (never looked up, never recomputed)."""
        for rid in record_ids:
            for branch in branches:
                self.entries[entry_key(split, rid, branch, epoch)] = math.nan

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
                key = entry_key(split, rid, branch, epoch)
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
                "components": {k: list(v) for k, v in self.fingerprint.components.items()},
                "entries": self.entries,
            },
            tmp,
        )
        os.replace(tmp, self.path)
