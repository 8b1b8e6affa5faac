"""Build the policy: load (local HF directory or tiny config), freeze, quantize, attach LoRA.

``model.path`` points at a local directory in HF layout (e.g. a downloaded ``llava-hf/llava-1.5-7b-hf``);
with ``model.path: null`` a tiny random model is built from ``model.tiny``. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig, PreTrainedModel, ProcessorMixin

from mmpo.models.families import Family, get_family
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl

log = logging.getLogger(__name__)

TINY_BUILDERS = {"llava": build_tiny_llava, "qwen2_vl": build_tiny_qwen2vl}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALL_LLM_LINEAR = "all-llm-linear"


class ModelPathError(FileNotFoundError):
    """A configured model directory is missing or not in HF layout."""


def check_model_dir(path: str | Path, key: str = "model.path") -> Path:
    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise ModelPathError(
            f"{key}={str(path)!r} is not a model directory in Hugging Face layout (no config.json there). "
            "Download the checkpoint once (e.g. `huggingface-cli download llava-hf/llava-1.5-7b-hf "
            f"--local-dir {path}`) and point {key} at it; mmpo never downloads at run time."
        )
    return directory


def load_base(cfg: DictConfig) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """The pretrained model and its processor, before freezing and adapters."""
    family = get_family(cfg.family)
    if cfg.path is None:
        if cfg.family not in TINY_BUILDERS:
            raise ValueError(
                f"model.path is null but family {cfg.family!r} has no tiny builder; "
                f"tiny families: {sorted(TINY_BUILDERS)}"
            )
        model, processor = TINY_BUILDERS[cfg.family](**OmegaConf.to_container(cfg.tiny))
        model = model.to(DTYPES[cfg.dtype])
    else:
        directory = check_model_dir(cfg.path)
        processor = family.processor_class.from_pretrained(directory)
        kwargs = {"dtype": DTYPES[cfg.dtype], "attn_implementation": cfg.attn_implementation}
        if cfg.quantization.load_in_4bit:
            kwargs["quantization_config"] = quantization_config(cfg, family)
        model = family.model_class.from_pretrained(directory, **kwargs)
    if cfg.quantization.load_in_4bit and cfg.path is None:
        model = _quantize_via_roundtrip(model, processor, cfg, family)
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


def load_model(cfg: DictConfig) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """The trainable policy described by the ``model`` config group."""
    model, processor, family = load_base(cfg)
    if cfg.init_from:
        model = merge_init_weights(model, cfg.init_from)
    if cfg.disable_dropout:
        disable_dropout(model)
    apply_freeze_policy(model, family, cfg.freeze)
    if cfg.quantization.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        model = attach_lora(model, family, cfg)
    elif cfg.quantization.load_in_4bit:
        raise ValueError("model.quantization.load_in_4bit=true needs model.lora.enabled=true (QLoRA)")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "policy %s: %d / %d parameters trainable (%.2f%%)",
        cfg.name,
        trainable,
        total,
        100 * trainable / total,
    )
    return model, processor, family
