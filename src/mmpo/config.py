"""Structured configs (registered in Hydra's ConfigStore) and the start-up checks across groups.

The schemas type-check the ``model``, ``data``, ``reference``, ``engine`` and ``optim`` nodes when Hydra
composes them (an unknown key or a wrong type fails there, naming the key). :func:`check_config` then
checks allowed values and combinations across groups, before any model loads, and raises one
:class:`ConfigError` that lists every problem with the offending key and the allowed values.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: ``train.py``, ``conf/``, ``src/``."""
CONF_DIR = ROOT / "conf"


class ConfigError(ValueError):
    """An invalid configuration, detected at start-up: one problem, or a list reported together."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        message = "invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(problems if isinstance(problems, str) else message)


@dataclass
class LoraSchema:
    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: Any = "all-llm-linear"  # or a list of module-name suffixes / full names


@dataclass
class QuantizationSchema:
    load_in_4bit: bool = False
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "bfloat16"


@dataclass
class FreezeSchema:
    vision_tower: bool = True
    projector: bool = True


@dataclass
class ModelSchema:
    name: str = "tiny_llava"
    family: str = "llava"
    path: str | None = None  # local HF directory; null builds the tiny model from `tiny`
    tiny: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    lora: LoraSchema = field(default_factory=LoraSchema)
    quantization: QuantizationSchema = field(default_factory=QuantizationSchema)
    freeze: FreezeSchema = field(default_factory=FreezeSchema)
    gradient_checkpointing: bool = False
    init_from: str | None = None  # an earlier run directory (its adapter is merged, or its model loaded)
    disable_dropout: bool = True


@dataclass
class ShapesSchema:
    num_scenes: int = 400
    seed: int = 0
    image_size: int = 64


@dataclass
class DataSchema:
    name: str = "shapes"
    source: str = "shapes"  # shapes (generated under `path`) | files (JSONL records under `path`)
    path: str = MISSING
    train_file: str = "train.jsonl"
    val_file: str = "val.jsonl"
    batch_size: int = 4
    shuffle: bool = True
    num_workers: int = 0
    max_length: int = 512
    truncation: str = "delete"
    on_error: str = "raise"
    image: str = "original"  # original | none (the "DPO (No Image)" ablation)
    context_template: str = "{prompt}\nContext:\n{context}"
    limit_train: int | None = None
    limit_val: int | None = None
    shapes: ShapesSchema = field(default_factory=ShapesSchema)


@dataclass
class ReferenceSchema:
    strategy: str = "adapter_off"
    on_missing: str = "fill"  # reference=precomputed: fill (compute missing entries before fit) | fail


@dataclass
class EngineSchema:
    mode: str = "batched"


@dataclass
class OptimSchema:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"


def register_configs() -> None:
    """The schemas are root-level configs (not options of the groups they type, so ``--help`` does not list
    them); a group's file puts its schema first (``defaults: [/model_schema@_here_, _self_]``)."""
    cs = ConfigStore.instance()
    for name, node in (
        ("model_schema", ModelSchema),
        ("data_schema", DataSchema),
        ("reference_schema", ReferenceSchema),
        ("engine_schema", EngineSchema),
        ("optim_schema", OptimSchema),
    ):
        cs.store(name=name, node=node)


RUN_TAG_EXCLUDED = ("hydra.*", "paths.*", "logger", "logger.*", "trainer.enable_*", "experiment", "run_name")
"""Overrides that do not define what a run computes, left out of its directory name (:func:`run_tag`)."""
RUN_TAG_LENGTH = 96


def run_tag(prefix: str = "") -> str:
    """The command-line overrides that define a run, as a file name that can be passed back on the command
    line (``ckpt_path=<run dir>``, ``model.init_from=<run dir>``): ``data.image:none+seed:1`` after
    ``prefix``; empty (no prefix either) without such overrides.

    ``key=value`` becomes ``key:value`` and overrides are joined by ``+`` (``=`` and ``,`` are Hydra
    syntax); path values keep their last two components (``model.init_from:sft_shapes-base``), list
    brackets are dropped, other characters outside ``[A-Za-z0-9._:+-]`` become ``-``, and a tag longer than
    :data:`RUN_TAG_LENGTH` is cut and ended by 8 hex digits of its full text's hash."""
    from fnmatch import fnmatch

    from hydra.core.hydra_config import HydraConfig

    parts = []
    for override in HydraConfig.get().overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        if any(fnmatch(key, pattern) for pattern in RUN_TAG_EXCLUDED):
            continue
        if "/" in value:
            value = "-".join(Path(value).parts[-2:])
        text = f"{key}:{value.strip('[]').replace(',', '+')}" if value else key
        parts.append(re.sub(r"[^A-Za-z0-9._:+-]", "-", text))
    tag = "+".join(parts)
    if len(tag) > RUN_TAG_LENGTH:
        digest = hashlib.blake2b(tag.encode(), digest_size=4).hexdigest()
        tag = f"{tag[: RUN_TAG_LENGTH - 9]}-{digest}"
    return f"{prefix}{tag}" if tag else ""


SHARED_RUN_IDS = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")
"""Launchers that start every rank as its own process and tell them one id (``torchrun --rdzv-id``, SLURM)."""


def unique_id() -> str:
    """6 hex digits that tell two runs started in the same second apart. The ranks of one job that a
    launcher starts as separate processes share theirs (derived from the launcher's job id), so they
    agree on one run directory."""
    shared = next((os.environ[k] for k in SHARED_RUN_IDS if os.environ.get(k, "none") != "none"), None)
    if shared is None:
        return secrets.token_hex(3)
    return hashlib.blake2b(shared.encode(), digest_size=3).hexdigest()


def register_resolvers() -> None:
    """``${cwd:}`` (the working directory), ``${unique:}`` (:func:`unique_id`, fixed for the process's
    config) and ``${run_tag:}``."""
    OmegaConf.register_new_resolver("cwd", os.getcwd, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("unique", unique_id, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_tag", run_tag, replace=True)


register_configs()
register_resolvers()

NEGATIVE_SAMPLERS: tuple[str, ...] = (
    "crop",
    "crop_20_50",
    "diffusion",
    "random_image",
    "blank",
    "rotate",
    "mocov2",
)
"""The options of ``conf/negative_sampler`` besides ``none``."""

SAMPLER_KEYS = ("negative_sampler", "val_negative_sampler")
"""The config nodes that hold a sampler: training's corruption and the optional validation one."""

ALLOWED: dict[str, tuple[str, ...]] = {
    "data.source": ("shapes", "files"),
    "data.truncation": ("delete", "truncate_response", "raise"),
    "data.on_error": ("raise", "skip"),
    "data.image": ("original", "none"),
    "reference.strategy": ("adapter_off", "copy", "precomputed", "none"),
    "reference.on_missing": ("fill", "fail"),
    "engine.mode": ("naive", "batched", "shared_prefix", "auto"),
    "optim.scheduler": ("cosine", "linear", "constant_with_warmup"),
}


def check_config(cfg: DictConfig) -> None:
    """Raise one :class:`ConfigError` listing every invalid value or combination."""
    from mmpo.losses import LOSSES, build_loss
    from mmpo.models.loading import model_problems

    problems: list[str] = [
        f"{key} must be set (it is ??? in conf/): add {key}=... to the command line"
        for key in missing_keys(cfg)
    ]
    if problems:  # every other check may read them
        raise ConfigError(problems)
    for key, values in ALLOWED.items():
        value = OmegaConf.select(cfg, key)
        if value not in values:
            problems.append(f"{key}={value!r}; allowed: {list(values)}")

    loss_name = cfg.loss.get("name")
    if loss_name not in LOSSES:
        problems.append(f"loss.name={loss_name!r}; allowed: {sorted(LOSSES)}")
        raise ConfigError(problems)
    try:
        loss = build_loss(cfg.loss)
    except Exception as error:  # noqa: BLE001 - reported with the key, then re-raised as ConfigError
        problems.append(f"loss={loss_name}: {getattr(error, '__cause__', None) or error}")
        raise ConfigError(problems) from None

    model = cfg.model
    problems += model_problems(model)

    strategy = cfg.reference.strategy
    if loss.needs_reference and strategy == "none":
        problems.append(
            f"loss={loss_name} needs a reference; reference.strategy allowed: "
            "['adapter_off', 'copy', 'precomputed']"
        )
    if loss.needs_reference and strategy == "adapter_off" and not model.lora.enabled:
        problems.append(
            "reference=adapter_off needs model.lora.enabled=true; use reference=copy for full fine-tuning"
        )
    if loss.needs_reference and strategy == "precomputed":
        problems += _precomputed_problems(cfg, loss)
    if cfg.engine.mode == "shared_prefix":
        problems += _shared_prefix_problems(model)

    needs_corrupted = any(b.image == "corrupted" for b in loss.branches)
    has_sampler = bool(cfg.get("negative_sampler"))
    if needs_corrupted and cfg.data.image == "none":
        problems.append(
            f"loss={loss_name} contrasts the image with a corrupted one; it cannot run with data.image=none"
        )
    elif needs_corrupted and not has_sampler:
        problems.append(
            f"loss={loss_name} needs a corrupted image; negative_sampler allowed: {list(NEGATIVE_SAMPLERS)}"
        )
    for key in SAMPLER_KEYS:
        if cfg.get(key):
            from mmpo.negatives import build_negative_sampler

            try:
                build_negative_sampler(cfg[key])
            except ValueError as error:
                problems.append(f"{key}: {error}")
    if cfg.data.source == "files" and not (Path(cfg.data.path) / cfg.data.train_file).is_file():
        problems.append(
            f"data.path={cfg.data.path!r} has no {cfg.data.train_file}; data.source=files reads "
            "JSONL records (README, 'Record format') from there"
        )
    if problems:
        raise ConfigError(problems)


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys of the mandatory values (``???``) that are still unset."""

    def walk(node: Any, prefix: str) -> list[str]:
        if node == "???":
            return [prefix[:-1]]
        if isinstance(node, dict):
            return [key for k, v in node.items() for key in walk(v, f"{prefix}{k}.")]
        return []

    return walk(OmegaConf.to_container(cfg, resolve=False), "")


def _precomputed_problems(cfg: DictConfig, loss) -> list[str]:
    from mmpo.branches import CHOSEN_CORRUPTED
    from mmpo.engine.cache import epoch_dependent

    problems = []
    if any((cfg.get(key) or {}).get("resample_per_forward") for key in SAMPLER_KEYS):
        problems.append(
            "reference=precomputed cannot hold negative_sampler.resample_per_forward=true (a fresh "
            "corruption on every forward); set it to false or use reference=adapter_off|copy"
        )
    # validation adds chosen@corrupted (image-reliance diagnostics) whenever a sampler is configured
    has_sampler = any(cfg.get(key) for key in SAMPLER_KEYS)
    branches = [*loss.branches, *([CHOSEN_CORRUPTED] if has_sampler else [])]
    seeded = sorted({str(b) for b in branches if epoch_dependent(b)})
    if seeded and not cfg.model.lora.enabled and cfg.trainer.get("max_epochs") != 1:
        problems.append(
            f"reference=precomputed with full fine-tuning and the epoch-seeded branches {seeded} needs "
            "trainer.max_epochs=1 (each epoch's corruption is scored by the initial weights, which are "
            "gone after the first step); use model.lora.enabled=true or reference=copy"
        )
    return problems


def _shared_prefix_problems(model: DictConfig) -> list[str]:
    from mmpo.engine.adapters import SHARED_PREFIX_FAMILIES
    from mmpo.engine.layout import ATTENTION_IMPLEMENTATIONS

    problems = []
    if model.family not in SHARED_PREFIX_FAMILIES:
        problems.append(
            f"engine.mode=shared_prefix does not support model.family={model.family!r}; allowed "
            f"families: {list(SHARED_PREFIX_FAMILIES)} (use engine.mode=batched)"
        )
    if model.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        problems.append(
            f"engine.mode=shared_prefix needs a 4-D attention mask; model.attn_implementation="
            f"{model.attn_implementation!r}, allowed: {list(ATTENTION_IMPLEMENTATIONS)}"
        )
    return problems


def wandb_mode() -> str:
    """wandb runs offline unless ``WANDB_MODE`` says otherwise, and keeps its own terminal output to
    itself unless ``WANDB_SILENT=false`` (train.py logs where the run's files are)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    return os.environ.setdefault("WANDB_MODE", "offline")
