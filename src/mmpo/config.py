"""Structured configs (registered in Hydra's ConfigStore), the resolvers of the run directory, and the
generic start-up check runner.

The schemas type-check the ``model``, ``data``, ``reference``, ``engine`` and ``optim`` nodes when Hydra
composes them (an unknown key or a wrong type fails there, naming the key). :func:`check` then runs the
checks of the run's module kind (each allowed-values list and each rule lives with the component it is
about: the model loader, the data module, the engine, the reference strategies, the loss's requirements),
before any model loads, and raises one :class:`ConfigError` that lists every problem.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable
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
    # auto: FlexAttention for the language model on a GPU where transformers supports it (LLaVA), else
    # sdpa (models.loading.set_attention); or any transformers value (sdpa, eager, flex_attention, ...)
    attn_implementation: str = "auto"
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
    source: str = "shapes"  # shapes (generated under `path`) | files (records under `path`)
    format: str = "jsonl"  # jsonl (train.jsonl, val.jsonl) | arrow (datasets folders train/, val/)
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
    # engine.mode=shared_prefix: pack the (image, context) groups of different records into rows of at most
    # this many tokens (no padding); null: one group per row
    token_budget: int | None = None
    context_swap: str = "per_epoch"  # per_epoch | per_record (MCM-DPO's official rule): mmpo.data.examples
    limit_train: int | None = None
    limit_val: int | None = None
    shapes: ShapesSchema = field(default_factory=ShapesSchema)


@dataclass
class ReferenceSchema:
    strategy: str = "adapter_off"
    on_missing: str = "fill"  # reference=precomputed: fill (compute missing entries before fit) | fail


@dataclass
class EngineSchema:
    mode: str = "auto"


@dataclass
class OptimSchema:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    on_nonfinite: str = "stop"  # a non-finite loss or gradient: stop | skip (the step, counted)


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


def choice(group: str, *, _root_: DictConfig) -> str:
    """The option a config group was given (``${choice:loss}`` -> ``dpo``): from Hydra's runtime config
    in a job, from the config's own ``hydra`` node where that is not set yet (a multirun's sweep
    directory resolves before any job starts)."""
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else _root_.hydra.runtime.choices
    return choices[group]


def unused_parameters(*, _root_: DictConfig) -> bool:
    """DDP's ``find_unused_parameters``, from the freeze policy rather than by trial: a trainable vision
    tower or projector gets no gradient in a step without images (``data.image=none``); LoRA on the
    language model and the language model itself are used by every step."""
    model, data = _root_.model, _root_.data
    trainable_vision = not (model.freeze.vision_tower and model.freeze.projector)
    return bool(trainable_vision and data.image == "none")


def world_size(*, _root_: DictConfig) -> int:
    """The processes of the run, ``trainer.num_nodes`` x ``trainer.devices`` (``-1`` / ``auto`` on GPUs:
    every visible one): ModelParallelStrategy's ``data_parallel_size`` when FSDP2 shards over all of them."""
    import torch

    from mmpo.sweeps import processes_per_node

    trainer = _root_.trainer
    per_node = processes_per_node(trainer)
    return int(trainer.get("num_nodes", 1)) * (torch.cuda.device_count() if per_node is None else per_node)


def register_resolvers() -> None:
    """``${cwd:}`` (the working directory), ``${unique:}`` (:func:`unique_id`, fixed for the process's
    config), ``${run_tag:}``, ``${choice:<group>}``, ``${unused_parameters:}`` and ``${world_size:}``."""
    OmegaConf.register_new_resolver("choice", choice, replace=True)
    OmegaConf.register_new_resolver("unused_parameters", unused_parameters, replace=True)
    OmegaConf.register_new_resolver("world_size", world_size, replace=True)
    OmegaConf.register_new_resolver("cwd", os.getcwd, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("unique", unique_id, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_tag", run_tag, replace=True)


register_configs()
register_resolvers()


def compose_job(overrides: list[str]) -> DictConfig:
    """The job config ``python train.py <overrides>`` runs, composed from ``conf/`` outside a Hydra run:
    the hydra node is read (``${hydra:...}`` values such as ``choices`` resolve) and removed, as in a run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    OmegaConf.set_struct(cfg, True)
    return cfg


def check(cfg: DictConfig, *checks: Callable[[DictConfig], list[str]]) -> None:
    """Run every check on ``cfg`` and raise one :class:`ConfigError` listing every problem; unset
    mandatory values (``???``) are reported first, since every other check may read them."""
    if problems := [
        f"{key} must be set (it is ??? in conf/): add {key}=... to the command line"
        for key in missing_keys(cfg)
    ]:
        raise ConfigError(problems)
    problems = [problem for check_ in checks for problem in check_(cfg)]
    if problems:
        raise ConfigError(problems)


def module_class(cfg: DictConfig) -> type:
    """The LightningModule class that ``module._target_`` names (``conf/module/<kind>.yaml``)."""
    from hydra.utils import get_class

    target = OmegaConf.select(cfg, "module._target_")
    try:
        return get_class(target)
    except Exception as error:  # noqa: BLE001 - reported with the key and the reason
        options = sorted(p.stem for p in (CONF_DIR / "module").glob("*.yaml"))
        raise ConfigError(
            f"module._target_={target!r} is not an importable class ({error}); module allowed: {options}"
        ) from None


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys of the mandatory values (``???``) that are still unset."""

    def walk(node: Any, prefix: str) -> list[str]:
        if node == "???":
            return [prefix[:-1]]
        if isinstance(node, dict):
            return [key for k, v in node.items() for key in walk(v, f"{prefix}{k}.")]
        return []

    return walk(OmegaConf.to_container(cfg, resolve=False), "")
