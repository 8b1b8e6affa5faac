"""Attention masks and position ids of a padded batch, for forwards that read hidden states or last logits.

Padding must change nothing for the real tokens of a row, whichever side it is on and whatever the
attention pattern. Two things make that hold:

- **positions** count a row's own tokens: ``pos = cumsum(mask) - 1`` (padding at 0). LLaVA's Llama
  would otherwise number a left-padded row from its first pad token (RoPE sees only relative
  positions, so that differs by rounding alone; explicit positions make the padded row compute what
  the unpadded one does). Qwen2-VL / Qwen2.5-VL with images take M-RoPE positions from the model's
  own ``get_rope_index`` given the 2-D mask; they are required with a 4-D mask, from which the model
  cannot derive them. Without images the three axes equal the 1-D count, which the text model expands.
- **the 4-D mask** ``[B, 1, T, T]`` (True / 0 = attend), for query ``q`` and key ``k``::

      attend(q, k) = (valid[k] and (bidirectional or k <= q))  or  q == k

  ``bidirectional`` gives MAPLE's all-ones block over the non-padding tokens (methods.md §3.1), the
  causal form the pretrained pattern. The diagonal term only reaches padding queries, whose rows would
  otherwise be empty (NaN in sdpa's softmax); their outputs are never read.

transformers (5.24) passes a 4-D mask through its mask builders unchanged, for sdpa and eager alike
(boolean for sdpa, additive ``0 / finfo.min`` for eager). Setting ``text_config.is_causal = False``
gives the same numbers with a 2-D mask (tests/embedding/test_embedder.py checks both agree), but it is
a switch on a shared config; the explicit mask leaves the model untouched. flash-attention takes no
4-D mask, hence :data:`ATTENTION_IMPLEMENTATIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmpo.models.families import base_model

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
MROPE_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
FAMILIES = ("llava", *MROPE_FAMILIES)
"""Model families (``config.model_type``) whose hidden states and positions this module knows."""


def check_family(model: nn.Module) -> str:
    """``model``'s family, or a clear error naming the allowed ones."""
    family = model.config.model_type
    if family not in FAMILIES:
        raise ValueError(
            f"model family {family!r} is not supported for embeddings; allowed: {list(FAMILIES)}"
        )
    return family


def attention_implementation(model: nn.Module) -> str:
    """The language model's attention implementation, checked to take a 4-D mask."""
    implementation = model.get_decoder().config._attn_implementation
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"model.attn_implementation={implementation!r} takes no 4-D attention mask; "
            f"allowed: {list(ATTENTION_IMPLEMENTATIONS)}"
        )
    return implementation


def attention_mask_4d(mask: Tensor, bidirectional: bool, implementation: str, dtype: torch.dtype) -> Tensor:
    """The ``[B, 1, T, T]`` mask of a padded batch with 2-D ``mask`` [B, T] (module docstring)."""
    valid = mask.bool()
    length = mask.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    keys = valid[:, None, :].expand(-1, length, -1)
    if not bidirectional:
        keys = keys & torch.ones_like(eye).tril()
    allowed = (keys | eye)[:, None]
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    raise ValueError(
        f"attention implementation {implementation!r} takes no 4-D mask; allowed: {list(ATTENTION_IMPLEMENTATIONS)}"
    )


def position_ids(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """Position ids of the processed batch ``inputs`` counted over each row's own tokens (module
    docstring): ``[B, T]``, or ``[3, B, T]`` for an M-RoPE family with images."""
    mask = inputs["attention_mask"]
    if check_family(model) in MROPE_FAMILIES and "image_grid_thw" in inputs:
        positions, _ = base_model(model).model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=mask,
        )
        return positions
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
