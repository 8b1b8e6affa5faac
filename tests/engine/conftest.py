"""Shared fixtures of the engine tests: tiny LoRA policies of both families and real collated batches.

Policies are built like ``load_model`` does (gradient checkpointing, then LoRA on all LLM linears) and
their LoRA ``B`` matrices are randomised, so the adapters-on policy differs from the adapters-off
reference and every LoRA parameter gets a non-zero gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from omegaconf import OmegaConf
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, Branch, negatives_needed
from mmpo.data.collator import PreferenceCollator
from mmpo.data.examples import PreferenceDataset
from mmpo.data.records import Record, read_records
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.reference import build_reference
from mmpo.models.families import Family, get_family
from mmpo.models.loading import attach_lora
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl
from mmpo.negatives import CropSampler, NegativeSampler

BRANCH_SETS: dict[str, tuple[Branch, ...]] = {
    "dpo": (CHOSEN, REJECTED),
    "mdpo": (CHOSEN, REJECTED, CHOSEN_NEGATIVE),
}


def build_tiny_qwen25vl(seed: int = 0):
    """A tiny Qwen2.5-VL (windowed ViT, M-RoPE LM) sharing the tiny Qwen2-VL tokenizer and processor."""
    qwen2, processor = build_tiny_qwen2vl(seed)
    base = qwen2.config.to_dict()
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    ids = {
        k: base[k]
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    }
    config = Qwen2_5_VLConfig(
        text_config=base["text_config"], vision_config=vision, tie_word_embeddings=False, **ids
    )
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config), processor


BUILDERS: dict[str, Callable] = {
    "llava": build_tiny_llava,
    "qwen2_vl": build_tiny_qwen2vl,
    "qwen2_5_vl": build_tiny_qwen25vl,
}


def make_policy(
    family_name: str,
    gradient_checkpointing: bool = True,
    train_projector: bool = False,
    attn_implementation: str = "sdpa",
):
    """``(LoRA policy in train mode, processor, family)``, deterministic."""
    model, processor = BUILDERS[family_name]()
    model.set_attn_implementation(attn_implementation)
    family = get_family(family_name)
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    cfg = OmegaConf.create(
        {
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-llm-linear"},
            "freeze": {"projector": not train_projector},
        }
    )
    policy = attach_lora(model, family, cfg)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return policy.train(), processor, family


@pytest.fixture(scope="session")
def records(shapes_dir) -> list[Record]:
    """Train records with variable response lengths: long captions and short yes/no answers."""
    return read_records(shapes_dir / "train.jsonl")


def collate(
    processor,
    family: Family,
    records: Sequence[Record],
    branches: Sequence[Branch],
    epoch: int = 0,
    seed: int = 0,
    sampler: NegativeSampler | None = None,
    context_swap: str = "per_epoch",
) -> PreferenceBatch:
    """The batch the data module builds for ``records``: draws made by the data set (``sampler``, default
    a crop sampler, for negative branches), rows by the collator."""
    dataset = PreferenceDataset(
        records,
        sampler or CropSampler(),
        negatives_needed(branches),
        swap_context=any(b.context == "swapped" for b in branches),
        seed=seed,
        context_swap=context_swap,
    )
    dataset.epoch = epoch
    return PreferenceCollator(processor, family, branches)([dataset[i] for i in range(len(dataset))])


def Reference(strategy: str, policy, mode: str, **options):
    """The reference strategy ``strategy`` as a run builds it from ``conf/reference/<strategy>.yaml``."""
    return build_reference({"strategy": strategy, **options}, policy, mode)


def mixed_records(records: Sequence[Record], n: int = 3) -> list[Record]:
    """``n`` records alternating long captions and short answers (variable lengths, so padding)."""
    captions = [r for r in records if r.id.endswith("caption")]
    others = [r for r in records if not r.id.endswith("caption")]
    return [captions[i // 2] if i % 2 == 0 else others[i // 2] for i in range(n)]


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every engine test on one torch thread (``single_thread``, tests/conftest.py)."""
