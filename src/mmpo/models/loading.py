"""Build the policy: load (local HF directory or tiny config), freeze, quantize, attach LoRA.

``model.path`` points at a local directory in HF layout (e.g. a downloaded ``llava-hf/llava-1.5-7b-hf``);
with ``model.path: null`` a tiny random model is built from ``model.tiny``. Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig, PreTrainedModel, ProcessorMixin

from mmpo.bases import SCHEME, is_base_spec
from mmpo.config import CONF_DIR
from mmpo.models import weight_files
from mmpo.models.families import Family, family_error, get_family
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl

log = logging.getLogger(__name__)

TINY_BUILDERS = {"llava": build_tiny_llava, "qwen2_vl": build_tiny_qwen2vl}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALL_LLM_LINEAR = "all-llm-linear"


class ModelPathError(FileNotFoundError):
    """A model config that cannot load: its directory is missing, incomplete or broken, or a setting is
    invalid (:func:`model_problems`)."""


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", *WEIGHT_INDEXES)
DOWNLOAD_HINT = (
    "Download the checkpoint once (e.g. `huggingface-cli download llava-hf/llava-1.5-7b-hf --local-dir "
    "<dir>`) and point {key} at it; mmpo never downloads at run time."
)


MODEL_PARTS = {"processor": PROCESSOR_FILES, "tokenizer": TOKENIZER_FILES, "weights": WEIGHT_FILES}


def model_dir_problems(
    path: str | Path, key: str = "model.path", parts: tuple[str, ...] = tuple(MODEL_PARTS)
) -> list[str]:
    """What is missing or broken in a model directory in Hugging Face layout: ``config.json`` (valid
    JSON) and the files of each of ``parts`` (a vision-only model has no tokenizer), the weights with
    every shard an index names."""
    directory = Path(path).expanduser()
    where = f"{key}={str(path)!r}"
    if not (directory / "config.json").is_file():
        return [
            f"{where} is not a model directory in Hugging Face layout (no config.json). "
            + DOWNLOAD_HINT.format(key=key)
        ]
    problems = []
    for name in ("config.json", *PROCESSOR_FILES, "tokenizer_config.json", *WEIGHT_INDEXES):
        if (directory / name).is_file():
            try:
                json.loads((directory / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                problems.append(f"{where}: {name} is not valid JSON ({error}); download it again")
    for kind, names in ((part, MODEL_PARTS[part]) for part in parts):
        if not any((directory / name).is_file() for name in names):
            problems.append(
                f"{where} has no {kind} file (expected one of {list(names)}); "
                + DOWNLOAD_HINT.format(key=key)
            )
    for index in WEIGHT_INDEXES:
        if (directory / index).is_file() and not problems:
            shards = set(json.loads((directory / index).read_text()).get("weight_map", {}).values())
            if missing := sorted(s for s in shards if not (directory / s).is_file()):
                problems.append(f"{where}: {index} names weight shards that are missing: {missing}")
    return problems


QUANT_TYPES = ("nf4", "fp4")


def model_problems(cfg: DictConfig, key: str = "model") -> list[str]:
    """Every problem of a model config node (at ``key``: ``model``, ``reward_model``) that shows before
    loading: allowed values, the family, the local directory (or a tiny builder when there is none),
    ``init_from``, QLoRA without LoRA."""
    problems = [
        f"{key}.{name}={value!r}; allowed: {list(allowed)}"
        for name, value, allowed in (
            ("dtype", cfg.dtype, DTYPES),
            ("quantization.quant_type", cfg.quantization.quant_type, QUANT_TYPES),
        )
        if value not in allowed
    ]
    if error := family_error(cfg.family, key=f"{key}.family"):
        problems.append(error)
    if cfg.path is None and cfg.family not in TINY_BUILDERS:
        problems.append(
            f"{key}.path is null, but only {sorted(TINY_BUILDERS)} have tiny builders; "
            f"set {key}.path to the local checkpoint of {cfg.name}"
        )
    if cfg.path is not None:
        problems += model_dir_problems(cfg.path, key=f"{key}.path")
    if is_base_spec(cfg.init_from):
        experiment = cfg.init_from[len(SCHEME) :]
        if not (CONF_DIR / "experiment" / f"{experiment}.yaml").is_file():
            problems.append(
                f"{key}.init_from={cfg.init_from!r}: there is no conf/experiment/{experiment}.yaml"
            )
    elif cfg.init_from and not Path(cfg.init_from).expanduser().is_dir():
        problems.append(
            f"{key}.init_from={cfg.init_from!r} does not exist; point it at an earlier run directory "
            "or at a cached base (base:<experiment>, e.g. base:sft_shapes)"
        )
    if cfg.quantization.load_in_4bit and not cfg.lora.enabled:
        problems.append(f"{key}.quantization.load_in_4bit=true needs {key}.lora.enabled=true (QLoRA)")
    return problems


def check_model_dir(
    path: str | Path, key: str = "model.path", parts: tuple[str, ...] = tuple(MODEL_PARTS)
) -> Path:
    if problems := model_dir_problems(path, key, parts):
        raise ModelPathError("\n".join(problems))
    return Path(path).expanduser()


def set_attention(model: PreTrainedModel, requested: str, flex_attention: bool = True) -> None:
    """Apply ``model.attn_implementation``. ``auto``: the language model on FlexAttention where it trains
    and transformers supports it for the family (a CUDA device: on CPU FlexAttention has no backward;
    Llama-based LLaVA, not Qwen2-VL's text model in transformers 5.24) and ``flex_attention`` is allowed
    (the shared-prefix engine's block mask; the embedding module's masks are dense), the vision tower
    on sdpa; sdpa everywhere else. Any other value applies to the whole model."""
    if requested == "auto":
        flex = flex_attention and torch.cuda.is_available() and model.get_decoder()._supports_flex_attn
        requested = {"text_config": "flex_attention"} if flex else "sdpa"
    model.set_attn_implementation(requested)


def load_base(cfg: DictConfig, flex_attention: bool = True) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """The pretrained model and its processor, before freezing and adapters (``flex_attention``:
    :func:`set_attention`)."""
    if problems := model_problems(cfg):
        raise ModelPathError("\n".join(problems))
    family = get_family(cfg.family)
    if cfg.path is None:
        model, processor = TINY_BUILDERS[cfg.family](**OmegaConf.to_container(cfg.tiny))
        model = model.to(DTYPES[cfg.dtype])
    else:
        directory = check_model_dir(cfg.path)
        kwargs = {"dtype": DTYPES[cfg.dtype], "attn_implementation": "sdpa"}
        if cfg.quantization.load_in_4bit:
            kwargs["quantization_config"] = quantization_config(cfg, family)
        try:
            processor = family.processor_class.from_pretrained(directory)
            model = family.model_class.from_pretrained(directory, **kwargs)
        except (OSError, ValueError, KeyError) as error:  # a file transformers cannot read: say which run
            raise ModelPathError(f"model.path={str(cfg.path)!r} could not be loaded: {error}") from None
    if cfg.quantization.load_in_4bit and cfg.path is None:
        model = _quantize_via_roundtrip(model, processor, cfg, family)
    set_attention(model, cfg.attn_implementation, flex_attention)
    return model, processor, family


def quantization_config(cfg: DictConfig, family: Family) -> BitsAndBytesConfig:
    """QLoRA: NF4 4-bit language model; vision tower, projector and lm_head stay in full precision."""
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quantization.quant_type,
        bnb_4bit_use_double_quant=cfg.quantization.double_quant,
        bnb_4bit_compute_dtype=DTYPES[cfg.quantization.compute_dtype],
        # module-path prefixes (transformers matches them from the start of each module name)
        llm_int8_skip_modules=[family.vision_module, family.projector_module, "lm_head"],
    )


def _quantize_via_roundtrip(model, processor, cfg, family) -> PreTrainedModel:
    """bitsandbytes quantizes while loading; a tiny in-memory model goes through a temporary directory."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return family.model_class.from_pretrained(
            tmp, dtype=DTYPES[cfg.dtype], quantization_config=quantization_config(cfg, family)
        )


def llm_linear_pattern(model: PreTrainedModel, family: Family) -> str:
    """Regex over module names matching every nn.Linear of the language model (not the vision tower,
    projector or lm_head): the 'all LLM linear layers' LoRA target of mDPO and LLaVA."""
    excluded = (family.vision_module, family.projector_module)
    suffixes = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if _is_linear(module) and "lm_head" not in name and not any(name.startswith(e) for e in excluded)
        }
    )
    vision = "|".join(re.escape(e.rsplit(".", 1)[-1]) for e in excluded)
    return rf"^(?!.*(?:{vision}|lm_head)).*\.(?:{'|'.join(suffixes)})$"


def _is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt")


def apply_freeze_policy(model: PreTrainedModel, family: Family, freeze: DictConfig) -> None:
    """Freeze the vision tower and/or the projector (full fine-tuning; under LoRA every base weight is
    frozen anyway and ``freeze.projector: false`` makes the projector fully trainable)."""
    for key, path in (("vision_tower", family.vision_module), ("projector", family.projector_module)):
        module = model.get_submodule(path)
        for parameter in module.parameters():
            parameter.requires_grad_(not freeze[key])


def attach_lora(model: PreTrainedModel, family: Family, cfg: DictConfig) -> PeftModel:
    lora = cfg.lora
    targets = lora.target_modules
    if targets == ALL_LLM_LINEAR:
        targets = llm_linear_pattern(model, family)
    else:
        targets = list(targets)
    modules_to_save = [] if cfg.freeze.projector else [family.projector_module.rsplit(".", 1)[-1]]
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=modules_to_save or None,
        bias="none",
    )
    with warnings.catch_warnings():  # peft reads the deprecated `is_gradient_checkpointing` alias itself
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return get_peft_model(model, config)


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: the policy and reference must see the same function of the inputs, and
    shared-prefix layouts would otherwise share dropout masks across branches."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def merge_init_weights(model: PreTrainedModel, init_from: str) -> PreTrainedModel:
    """Start from an earlier run: merge its LoRA adapter into the base, or load its full weights."""
    run = Path(init_from).expanduser()
    if (run / "adapter" / "adapter_config.json").is_file():
        log.info("model.init_from: merging the LoRA adapter of %s", run)
        return PeftModel.from_pretrained(model, run / "adapter").merge_and_unload()
    if (run / "model" / "config.json").is_file():
        log.info("model.init_from: loading the full weights of %s", run)
        return type(model).from_pretrained(run / "model", dtype=model.dtype)
    raise ModelPathError(
        f"model.init_from={init_from!r} holds neither adapter/adapter_config.json nor model/config.json; "
        "point it at a run directory written by `python train.py` (e.g. outputs/sft_tiny_llava/<time>)."
    )


def load_model(
    cfg: DictConfig, flex_attention: bool = True
) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """The trainable policy described by the ``model`` config group (``flex_attention``:
    :func:`set_attention`)."""
    model, processor, family = load_base(cfg, flex_attention)
    if cfg.init_from:
        model = merge_init_weights(model, cfg.init_from)
    weight_files.remember(model, weight_files.weight_files_identity(cfg))
    if cfg.disable_dropout:
        disable_dropout(model)
    apply_freeze_policy(model, family, cfg.freeze)
    if cfg.quantization.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        model = attach_lora(model, family, cfg)
    return model, processor, family
