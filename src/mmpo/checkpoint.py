"""A trained run, loaded back for inference, and the fingerprint of exactly what was loaded.

A run directory written by ``train.py`` holds ``config.yaml`` (whose ``model`` section rebuilds the
base: tiny models are deterministic for their seed, real ones load from ``model.path``) and either
``adapter/`` (LoRA, peft format) or ``model/`` (full weights), each with the processor. Loading

- ``adapter/``: base from ``config.yaml`` (with the run's own ``model.init_from`` merged in first, as
  in training), then the adapter applied; ``merge=True`` folds it into the weights;
- ``model/``: the full weights and processor from ``model/`` (the base section gives family and dtype);
- no run: the ``model`` config as it stands (the untrained base, or ``model.init_from`` merged).

The fingerprint is ``blake2b`` (128 bit) over a canonical JSON of: the base model config
(``init_from`` replaced by that run's own fingerprint, recursively), the weight source (``adapter``,
``model`` or ``base``) and the SHA-256 of the weight and config files (``*.safetensors``, ``*.bin``,
``*.json``) in the weights directory. Two evaluations with equal fingerprints ran the same function
of their inputs (up to the decoding settings, which the results file records beside it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from peft import PeftModel
from transformers import PreTrainedModel, ProcessorMixin

from mmpo.models.families import Family
from mmpo.models.loading import load_base, merge_init_weights
from mmpo.provenance import sha256_file

WEIGHT_DIRS = ("adapter", "model")
HASHED_SUFFIXES = (".safetensors", ".bin", ".json")


class RunNotFound(FileNotFoundError):
    """``run=`` does not name a finished training run."""


@dataclass(frozen=True)
class TrainedRun:
    """Where a run's config and weights live; ``weights`` is ``adapter`` or ``model``."""

    directory: Path
    weights: str

    @property
    def config(self) -> DictConfig:
        return OmegaConf.load(self.directory / "config.yaml")

    @property
    def model_config(self) -> DictConfig:
        return self.config.model

    @property
    def weights_dir(self) -> Path:
        return self.directory / self.weights


def find_run(path: str | Path) -> TrainedRun:
    """The run behind ``path``: a run directory, or its ``adapter/`` or ``model/`` subdirectory."""
    given = Path(path).expanduser()
    if not given.exists():
        raise RunNotFound(
            f"run={str(path)!r} does not exist; pass a run directory written by train.py "
            "(outputs/<run_name>/<time>) or its adapter/ or model/ subdirectory"
        )
    if given.name in WEIGHT_DIRS and (given.parent / "config.yaml").is_file():
        return TrainedRun(given.parent.resolve(), given.name)
    if not (given / "config.yaml").is_file():
        raise RunNotFound(
            f"run={str(path)!r} has no config.yaml, so it is not a run directory written by "
            "train.py; pass outputs/<run_name>/<time> (or its adapter/ or model/)"
        )
    for weights in WEIGHT_DIRS:
        if (given / weights).is_dir():
            return TrainedRun(given.resolve(), weights)
    raise RunNotFound(
        f"run={str(path)!r} holds neither adapter/ nor model/: training did not finish "
        "(the weights are saved after fit)"
    )


def load_untrained(model_cfg: DictConfig) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """The base model of ``model_cfg`` with its ``init_from`` run merged in, as training starts from."""
    model, processor, family = load_base(model_cfg)
    if model_cfg.get("init_from"):
        model = merge_init_weights(model, model_cfg.init_from)
    return model, processor, family


def load_run(run: TrainedRun, merge: bool = False) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """The trained policy of ``run`` with its processor and family (module docstring)."""
    model_cfg = run.model_config
    if run.weights == "model":
        full = OmegaConf.merge(model_cfg, {"path": str(run.weights_dir), "init_from": None})
        return load_base(full)
    model, processor, family = load_untrained(model_cfg)
    model = PeftModel.from_pretrained(model, run.weights_dir)
    return (model.merge_and_unload() if merge else model), processor, family


def file_digests(directory: Path) -> dict[str, str]:
    """SHA-256 of the weight and config files under ``directory`` (:data:`HASHED_SUFFIXES`), keyed by
    relative path; model cards and other prose are left out."""
    return {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.suffix in HASHED_SUFFIXES
    }


def fingerprint(model_cfg: DictConfig, run: TrainedRun | None) -> dict[str, Any]:
    """``{"id", "source", "base", "files"}`` identifying the evaluated weights (module docstring)."""
    base = OmegaConf.to_container(model_cfg, resolve=True)
    if base.get("init_from"):
        parent = find_run(base["init_from"])
        base["init_from"] = fingerprint(parent.model_config, parent)["id"]
    files = file_digests(run.weights_dir) if run else {}
    parts = {"source": run.weights if run else "base", "base": base, "files": files}
    digest = hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()
    return {"id": digest, **parts}
