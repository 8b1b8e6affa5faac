"""Batched generation for benchmark items: the one place where mmpo decodes text.

Each item becomes ``family.chat_prompt(processor, item.prompt, n_images)`` (the same template the
collator trains on) plus its image, and the model continues it with the decoding a benchmark config
pins (``max_new_tokens``, ``num_beams``, ``do_sample``; greedy by default). Prompts of a batch are
**left**-padded, so that every row's last prompt token sits at the end of the batch and the new tokens
follow it directly; training pads on the right, so the tokenizer's padding side is switched for the
call and restored afterwards. Used by ``evaluate.py`` and by the in-training benchmark callback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from mmpo.benchmarks.base import EvalItem
from mmpo.images import load_image
from mmpo.models.families import Family

DECODING_DEFAULTS: dict[str, Any] = {"max_new_tokens": 64, "num_beams": 1, "do_sample": False}


def decoding_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """:data:`DECODING_DEFAULTS` updated by a benchmark's ``generation`` config."""
    return {**DECODING_DEFAULTS, **(overrides or {})}


@contextmanager
def left_padding(processor: ProcessorMixin) -> Iterator[None]:
    """Pad on the left inside the block; the tokenizer's own side is restored on exit."""
    tokenizer = processor.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model.eval()`` and no autograd inside the block; a training model goes back to training.

    ``no_grad`` rather than ``inference_mode``: tensors a model caches while generating in the middle of
    training must stay usable by the next backward pass."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)


def batches(items: Sequence[EvalItem], batch_size: int) -> Iterator[list[EvalItem]]:
    """Consecutive batches in which every item has the same number of images (0 or 1), since a processor
    call takes either images for every prompt or none."""
    for with_image in (True, False):
        group = [item for item in items if (item.image is not None) == with_image]
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def generate_batch(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    family: Family,
    items: Sequence[EvalItem],
    decoding: dict[str, Any],
) -> list[str]:
    """Decoded continuations (special tokens removed, stripped) of one batch, in item order."""
    images = [load_image(item.image) for item in items if item.image is not None]
    prompts = [family.chat_prompt(processor, item.prompt, int(item.image is not None)) for item in items]
    with left_padding(processor):
        inputs = processor(text=prompts, images=images or None, return_tensors="pt", padding=True)
    inputs = inputs.to(model.device)
    tokenizer = processor.tokenizer
    output = model.generate(
        **inputs,
        **decoding,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    family: Family,
    items: Sequence[EvalItem],
    decoding: dict[str, Any] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    description: str = "generate",
) -> dict[str, str]:
    """``{item.id: generated text}`` for every item, in batches of ``batch_size``.

    ``decoding`` overrides :data:`DECODING_DEFAULTS` (a benchmark's ``generation`` config); sampling
    draws from torch's global generator, so seed it beforehand when ``do_sample`` is true.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    settings = decoding_settings(decoding)
    outputs: dict[str, str] = {}
    with eval_mode(model), tqdm(total=len(items), desc=description, disable=not progress, unit="item") as bar:
        for batch in batches(items, batch_size):
            texts = generate_batch(model, processor, family, batch, settings)
            outputs.update(zip((item.id for item in batch), texts, strict=True))
            bar.update(len(batch))
    return outputs


@dataclass
class Generator:
    """A generative model as benchmarks evaluate it (``evaluate.py``, the benchmark callback): a
    ``generate`` over items with a benchmark's pinned decoding."""

    model: PreTrainedModel
    processor: ProcessorMixin
    family: Family
    batch_size: int = 16
    progress: bool = True

    def generate(
        self, items: Sequence[EvalItem], decoding: dict[str, Any] | None = None, description: str = "generate"
    ) -> dict[str, str]:
        return generate(
            self.model,
            self.processor,
            self.family,
            items,
            decoding,
            self.batch_size,
            self.progress,
            description,
        )
