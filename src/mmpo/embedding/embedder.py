"""MAPLE's retriever: one VLM encodes images and texts separately into one space (methods.md §3.1).

For a prompt of tokens ``x_1..x_T`` with padding mask ``m`` the embedding is the L2-normalised mean of the
language model's final hidden states (after its last norm) over the non-padding positions::

    z = normalize( sum_t m_t h_t / sum_t m_t )

with bidirectional attention among the non-padding tokens by default ([N]: MAPLE replaces the causal
mask) or the pretrained causal pattern (``bidirectional=False``); both come from
:mod:`mmpo.embedding.attention`, so a row's embedding does not depend on what it is batched with.

Prompts ([?]: MAPLE's wording is not public): an image is encoded as the family's chat prompt with the
image and ``image_prompt``; a text as the chat prompt with ``text_template.format(text=...)`` and no
image (``chat_template=False``: the bare text). Mean pooling covers every non-padding token, template
included. Rows are right-padded. No Lightning here: :meth:`encode_images` / :meth:`encode_texts` run
with whatever grad mode the caller is in (LoRA training or ``torch.no_grad`` evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from transformers import BatchFeature, ProcessorMixin

from mmpo.embedding.attention import attention_implementation, attention_mask_4d, check_family, position_ids
from mmpo.models.families import base_model, get_family

DEFAULT_IMAGE_PROMPT = "Describe the image."
DEFAULT_TEXT_TEMPLATE = "{text}"


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """``[B, T, H]`` hidden states averaged over the positions where ``mask`` [B, T] is 1, in float32."""
    weights = mask.to(torch.float32)[..., None]
    return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class Embedder(nn.Module):
    """Image and text encoder over a (peft-wrapped or bare) HF VLM of a family in
    :data:`~mmpo.embedding.attention.FAMILIES`.

    Args:
        model: the VLM; its LoRA layers, gradient checkpointing and dtype apply.
        processor: its processor.
        bidirectional: attention among non-padding tokens in both directions (default, as MAPLE).
        image_prompt: the text beside the image of an image prompt [?].
        text_template: ``{text}`` is replaced by the text to encode [?].
        chat_template: wrap both prompts in the family's chat template (user turn + generation prompt).
    """

    def __init__(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        bidirectional: bool = True,
        image_prompt: str = DEFAULT_IMAGE_PROMPT,
        text_template: str = DEFAULT_TEXT_TEMPLATE,
        chat_template: bool = True,
    ) -> None:
        super().__init__()
        if "{text}" not in text_template:
            raise ValueError(f"embedder text_template must contain '{{text}}', got {text_template!r}")
        self.model = model
        self.processor = processor
        self.family = get_family(check_family(model))
        self.implementation = attention_implementation(model)
        self.bidirectional = bidirectional
        self.image_prompt = image_prompt
        self.text_template = text_template
        self.chat_template = chat_template

    def prompt(self, text: str, num_images: int) -> str:
        if self.chat_template:
            return self.family.chat_prompt(self.processor, text, num_images)
        if num_images:
            raise ValueError("embedder chat_template=false encodes texts only; images need the chat template")
        return text

    def encode_images(self, images: Sequence[Image.Image]) -> Tensor:
        """``[N, D]`` unit-norm embeddings of ``images``."""
        prompt = self.prompt(self.image_prompt, 1)
        inputs = self.processor(
            text=[prompt] * len(images),
            images=list(images),
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        return self.encode(inputs)

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """``[M, D]`` unit-norm embeddings of ``texts``."""
        prompts = [self.prompt(self.text_template.format(text=text), 0) for text in texts]
        return self.encode(
            self.processor(text=prompts, padding=True, padding_side="right", return_tensors="pt")
        )

    def encode(self, inputs: BatchFeature) -> Tensor:
        """Embeddings of a processed batch (module docstring)."""
        device = next(self.model.parameters()).device
        inputs = inputs.to(device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        mask = inputs["attention_mask"]
        dtype = self.model.get_input_embeddings().weight.dtype
        model_inputs = {key: value for key, value in inputs.items() if key != "attention_mask"}
        hidden = (
            base_model(self.model)
            .model(
                **model_inputs,
                attention_mask=attention_mask_4d(mask, self.bidirectional, self.implementation, dtype),
                position_ids=position_ids(self.model, inputs),
                use_cache=False,
            )
            .last_hidden_state
        )
        return F.normalize(mean_pool(hidden, mask), dim=-1)
