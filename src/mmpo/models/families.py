"""Per-family quirks, one adapter each: model/processor classes, chat prompt, image-token arithmetic.

Everything else in mmpo is family-agnostic. Model inputs are passed through by exclusion (every key
the processor returns reaches the model), so family-specific keys such as Qwen2-VL's ``image_grid_thw``
and ``mm_token_type_ids`` are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    LlavaProcessor,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)

from mmpo.models.processors import ImageOnlyQwen2VLProcessor


@dataclass(frozen=True)
class Family:
    """What differs between VLM families, and nothing else."""

    name: str
    model_class: type[PreTrainedModel]
    processor_class: type[ProcessorMixin]
    response_separator: str
    """Text between the generation prompt and the response (LLaVA-1.5: 'ASSISTANT: answer')."""
    vision_module: str
    """Attribute path of the vision tower under the HF model."""
    projector_module: str

    def chat_prompt(self, processor: ProcessorMixin, text: str, num_images: int) -> str:
        """The templated user turn followed by the generation prompt."""
        content = [{"type": "image"}] * num_images + [{"type": "text", "text": text}]
        messages = [{"role": "user", "content": content}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def image_token_id(self, processor: ProcessorMixin) -> int:
        return processor.tokenizer.convert_tokens_to_ids(processor.image_token)

    def expected_image_tokens(self, processor: ProcessorMixin, image_inputs: dict) -> int | None:
        """Placeholder tokens the model expects for the processed images, computed independently of the
        processor's text expansion; None when the family has no closed form (AnyRes tiling)."""
        if self.name == "llava":
            height, width = image_inputs["pixel_values"].shape[-2:]
            per_image = (height // processor.patch_size) * (width // processor.patch_size)
            per_image += processor.num_additional_image_tokens
            if processor.vision_feature_select_strategy == "default":
                per_image -= 1
            return per_image * image_inputs["pixel_values"].shape[0]
        if self.name in ("qwen2_vl", "qwen2_5_vl"):
            merge = processor.image_processor.merge_size
            return int(image_inputs["image_grid_thw"].prod(-1).sum()) // merge**2
        return None

    def image_tensors(self, processor: ProcessorMixin, image_inputs: dict) -> list[torch.Tensor]:
        """Processed pixels of each image as [C, H, W] (for corruptions applied to the processed tensor)."""
        if self.name == "llava":
            return list(image_inputs["pixel_values"])
        if self.name in ("qwen2_vl", "qwen2_5_vl"):
            return [_unpatchify(processor, p, g) for p, g in zip(*_split_patches(image_inputs), strict=True)]
        raise ValueError(
            f"negative_sampler.apply_to=pixels is not supported for family {self.name!r}; use pil"
        )

    def with_image_tensors(
        self, processor: ProcessorMixin, image_inputs: dict, images: list[torch.Tensor]
    ) -> dict:
        """Inverse of :meth:`image_tensors`: image inputs whose pixels are replaced by ``images``."""
        if self.name == "llava":
            return {**image_inputs, "pixel_values": torch.stack(images)}
        _, grids = _split_patches(image_inputs)
        patches = [_patchify(processor, image, grid) for image, grid in zip(images, grids, strict=True)]
        return {**image_inputs, "pixel_values": torch.cat(patches)}


def _split_patches(image_inputs: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    grids = list(image_inputs["image_grid_thw"])
    sizes = [int(g.prod()) for g in grids]
    return list(image_inputs["pixel_values"].split(sizes)), grids


def _patch_layout(processor: ProcessorMixin, grid: torch.Tensor) -> tuple[int, ...]:
    ip = processor.image_processor
    t, h, w = (int(x) for x in grid)
    m, p, tp = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    return t, h // m, w // m, m, m, 3, tp, p, p


def _unpatchify(processor: ProcessorMixin, patches: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Qwen2-VL flattened patches [t*h*w, C*T*P*P] back to the first frame [C, H, W]."""
    t, hm, wm, m, _, c, tp, p, _ = layout = _patch_layout(processor, grid)
    frames = patches.reshape(layout).permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
    return frames.reshape(t * tp, c, hm * m * p, wm * m * p)[0]


def _patchify(processor: ProcessorMixin, image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """[C, H, W] repeated over the temporal patch, flattened the way the Qwen2-VL processor does."""
    t, hm, wm, m, _, c, tp, p, _ = _patch_layout(processor, grid)
    frames = image.unsqueeze(0).expand(t * tp, -1, -1, -1)
    blocks = frames.reshape(t, tp, c, hm, m, p, wm, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return blocks.reshape(t * hm * wm * m * m, c * tp * p * p)


FAMILIES: dict[str, Family] = {
    "llava": Family(
        "llava",
        LlavaForConditionalGeneration,
        LlavaProcessor,
        " ",
        "model.vision_tower",
        "model.multi_modal_projector",
    ),
    "llava_next": Family(
        "llava_next",
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
        " ",
        "model.vision_tower",
        "model.multi_modal_projector",
    ),
    "qwen2_vl": Family(
        "qwen2_vl",
        Qwen2VLForConditionalGeneration,
        ImageOnlyQwen2VLProcessor,
        "",
        "model.visual",
        "model.visual.merger",
    ),
    "qwen2_5_vl": Family(
        "qwen2_5_vl",
        Qwen2_5_VLForConditionalGeneration,
        ImageOnlyQwen2VLProcessor,
        "",
        "model.visual",
        "model.visual.merger",
    ),
}


UNSUPPORTED: dict[str, str] = {
    "bunny": "Bunny-v1.0-3B ships its own modeling code (trust_remote_code) written for transformers 4.x; "
    "no built-in class of the installed transformers 5.x loads it, so mmpo has no adapter for it yet",
}


def family_error(name: str) -> str | None:
    """Why ``model.family=name`` cannot be used, or None when it can."""
    if name in FAMILIES:
        return None
    reason = f" ({UNSUPPORTED[name]})" if name in UNSUPPORTED else ""
    return f"model.family={name!r} is not supported{reason}; allowed: {sorted(FAMILIES)}"


def get_family(name: str) -> Family:
    if error := family_error(name):
        raise ValueError(error)
    return FAMILIES[name]
