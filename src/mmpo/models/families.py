"""Per-family quirks, one class each: model/processor classes, chat prompt, image tokens, pixel layout,
and what the shared-prefix engine needs once the language model is called on ``inputs_embeds`` directly.

Everything else in mmpo is family-agnostic. Model inputs are passed through by exclusion (every key the
processor returns reaches the model), so family-specific keys such as Qwen2-VL's ``image_grid_thw`` and
``mm_token_type_ids`` are never dropped.

The engine side of a family answers three questions:

- how the per-image tensors of a batch split into single images and how many placeholder tokens each
  image fills (:meth:`Family.split_images`);
- how a batch of images becomes projected features (vision tower + projector, :meth:`Family.encode_images`);
- the position ids of a prompt (:meth:`Family.prompt_positions`): LLaVA counts tokens (1 axis, ``0..P-1``,
  image tokens included); Qwen2-VL uses M-RoPE (3 axes: temporal, height, width), where text after an
  image continues at ``max(image grid position) + 1`` rather than at the token count. Either way the
  response continues at ``max(prompt positions) + 1`` on every axis.

The engine methods work on the peft wrapper or the bare HF model alike: LoRA layers sit inside the
modules, so ``get_image_features`` / ``get_decoder()`` run them (and ``disable_adapter`` turns them off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
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

ImageInputs = dict[str, Tensor]
"""The tensors of one or more images, in the layout the processor returns (e.g. ``pixel_values``)."""


def base_model(model: nn.Module) -> nn.Module:
    """The HF model under a peft wrapper (the same modules, with LoRA layers injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass(frozen=True)
class Family:
    """What differs between VLM families, and nothing else (the base: LLaVA-1.5-like behaviour)."""

    name: str
    model_class: type[PreTrainedModel]
    processor_class: type[ProcessorMixin]
    response_separator: str
    """Text between the generation prompt and the response (LLaVA-1.5: 'ASSISTANT: answer')."""
    vision_module: str
    """Attribute path of the vision tower under the HF model."""
    projector_module: str
    image_keys: tuple[str, ...] = ("pixel_values",)
    """Per-image keys of a batch, concatenated along dim 0 in placeholder order."""
    position_axes: int = 1
    """Position axes the decoder takes: 1 (``[rows, seq]``) or 3 (M-RoPE ``[3, rows, seq]``)."""
    shared_prefix: bool = True
    """Whether ``engine.mode=shared_prefix`` supports the family."""

    # ---- processor side -------------------------------------------------------------------------------
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
        height, width = image_inputs["pixel_values"].shape[-2:]
        per_image = (height // processor.patch_size) * (width // processor.patch_size)
        per_image += processor.num_additional_image_tokens
        if processor.vision_feature_select_strategy == "default":
            per_image -= 1
        return per_image * image_inputs["pixel_values"].shape[0]

    def image_tensors(self, processor: ProcessorMixin, image_inputs: dict) -> list[Tensor]:
        """Processed pixels of each image as [C, H, W] (for transforms of the processed tensor)."""
        return list(image_inputs["pixel_values"])

    def with_image_tensors(self, processor: ProcessorMixin, image_inputs: dict, images: list[Tensor]) -> dict:
        """Inverse of :meth:`image_tensors`: image inputs whose pixels are replaced by ``images``."""
        return {**image_inputs, "pixel_values": torch.stack(images)}

    # ---- model side: the shared-prefix engine ---------------------------------------------------------
    def model_image_token_id(self, model: nn.Module) -> int:
        config = model.config
        return getattr(config, "image_token_id", None) or config.image_token_index

    def split_images(self, model: nn.Module, image_inputs: ImageInputs) -> list[tuple[ImageInputs, int]]:
        """Single images of ``image_inputs`` with the number of placeholder tokens each one fills:
        LLaVA-1.5 has ``pixel_values`` [images, 3, H, W] and (H/p)(W/p) tokens per image (+1 with the CLS
        feature, ``vision_feature_select_strategy='full'``)."""
        config = model.config
        pixels = image_inputs["pixel_values"]
        patch = config.vision_config.patch_size
        tokens = (pixels.shape[-2] // patch) * (pixels.shape[-1] // patch)
        tokens += int(config.vision_feature_select_strategy == "full")
        return [({"pixel_values": pixels[i : i + 1]}, tokens) for i in range(pixels.shape[0])]

    def join_images(self, images: list[ImageInputs]) -> ImageInputs:
        return {key: torch.cat([image[key] for image in images]) for key in self.image_keys}

    def encode_images(self, model: nn.Module, images: ImageInputs) -> list[Tensor]:
        """Projected features ``[tokens_i, hidden]`` of each image (one vision-tower call)."""
        return list(model.get_image_features(pixel_values=images["pixel_values"]).pooler_output)

    def prompt_positions(
        self, model: nn.Module, prompt: Tensor, token_types: Tensor | None, images: ImageInputs | None
    ) -> Tensor:
        """Position ids ``[axes, P]`` of ``prompt`` (``token_types``: its ``mm_token_type_ids``, if any)."""
        return torch.arange(prompt.shape[0], device=prompt.device)[None]

    def images_of_rows(self, model: nn.Module, tensors: dict[str, Tensor]) -> list[list[ImageInputs]]:
        """The images of every row of a batch: rows consume images in order until their placeholders are
        filled."""
        present = [key for key in self.image_keys if key in tensors]
        images = self.split_images(model, {k: tensors[k] for k in present}) if present else []
        counts = (tensors["input_ids"] == self.model_image_token_id(model)).sum(-1).tolist()
        out, cursor = [], 0
        for row, needed in enumerate(counts):
            mine, filled = [], 0
            while filled < needed and cursor < len(images):
                image, tokens = images[cursor]
                mine.append(image)
                filled += tokens
                cursor += 1
            if filled != needed:
                raise ValueError(
                    f"row {row} holds {needed} image placeholder tokens but its images fill {filled}"
                )
            out.append(mine)
        if cursor != len(images):
            raise ValueError(
                f"{len(images) - cursor} image(s) left over after filling every row's placeholders"
            )
        return out


@dataclass(frozen=True)
class LlavaNextFamily(Family):
    """LLaVA-1.6 (AnyRes tiling): no closed form for the image tokens, no shared-prefix support."""

    shared_prefix: bool = False

    def expected_image_tokens(self, processor: ProcessorMixin, image_inputs: dict) -> int | None:
        return None

    def image_tensors(self, processor: ProcessorMixin, image_inputs: dict) -> list[Tensor]:
        raise ValueError(
            f"negative_sampler.apply_to=pixels is not supported for family {self.name!r}; use pil"
        )


@dataclass(frozen=True)
class QwenVLFamily(Family):
    """Qwen2-VL / Qwen2.5-VL: flattened patches ``pixel_values`` [patches, D] with ``image_grid_thw``
    [images, 3]; an image has t*h*w patches and t*h*w / merge^2 tokens; M-RoPE positions."""

    image_keys: tuple[str, ...] = ("pixel_values", "image_grid_thw")
    position_axes: int = 3

    def expected_image_tokens(self, processor: ProcessorMixin, image_inputs: dict) -> int | None:
        merge = processor.image_processor.merge_size
        return int(image_inputs["image_grid_thw"].prod(-1).sum()) // merge**2

    def image_tensors(self, processor: ProcessorMixin, image_inputs: dict) -> list[Tensor]:
        return [_unpatchify(processor, p, g) for p, g in zip(*_split_patches(image_inputs), strict=True)]

    def with_image_tensors(self, processor: ProcessorMixin, image_inputs: dict, images: list[Tensor]) -> dict:
        _, grids = _split_patches(image_inputs)
        patches = [_patchify(processor, image, grid) for image, grid in zip(images, grids, strict=True)]
        return {**image_inputs, "pixel_values": torch.cat(patches)}

    def split_images(self, model: nn.Module, image_inputs: ImageInputs) -> list[tuple[ImageInputs, int]]:
        merge = model.config.vision_config.spatial_merge_size
        grids = image_inputs["image_grid_thw"]
        patches = image_inputs["pixel_values"].split(grids.prod(-1).tolist())
        return [
            ({"pixel_values": p, "image_grid_thw": g[None]}, int(g.prod()) // merge**2)
            for p, g in zip(patches, grids, strict=True)
        ]

    def encode_images(self, model: nn.Module, images: ImageInputs) -> list[Tensor]:
        out = model.get_image_features(
            pixel_values=images["pixel_values"], image_grid_thw=images["image_grid_thw"]
        )
        return list(out.pooler_output)

    def prompt_positions(
        self, model: nn.Module, prompt: Tensor, token_types: Tensor | None, images: ImageInputs | None
    ) -> Tensor:
        grids = images["image_grid_thw"] if images else None
        positions, _ = base_model(model).model.get_rope_index(
            prompt[None], mm_token_type_ids=token_types[None], image_grid_thw=grids
        )
        return positions[:, 0]


def _split_patches(image_inputs: dict) -> tuple[list[Tensor], list[Tensor]]:
    grids = list(image_inputs["image_grid_thw"])
    sizes = [int(g.prod()) for g in grids]
    return list(image_inputs["pixel_values"].split(sizes)), grids


def _patch_layout(processor: ProcessorMixin, grid: Tensor) -> tuple[int, ...]:
    ip = processor.image_processor
    t, h, w = (int(x) for x in grid)
    m, p, tp = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    return t, h // m, w // m, m, m, 3, tp, p, p


def _unpatchify(processor: ProcessorMixin, patches: Tensor, grid: Tensor) -> Tensor:
    """Qwen2-VL flattened patches [t*h*w, C*T*P*P] back to the first frame [C, H, W]."""
    t, hm, wm, m, _, c, tp, p, _ = layout = _patch_layout(processor, grid)
    frames = patches.reshape(layout).permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
    return frames.reshape(t * tp, c, hm * m * p, wm * m * p)[0]


def _patchify(processor: ProcessorMixin, image: Tensor, grid: Tensor) -> Tensor:
    """[C, H, W] repeated over the temporal patch, flattened the way the Qwen2-VL processor does."""
    t, hm, wm, m, _, c, tp, p, _ = _patch_layout(processor, grid)
    frames = image.unsqueeze(0).expand(t * tp, -1, -1, -1)
    blocks = frames.reshape(t, tp, c, hm, m, p, wm, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return blocks.reshape(t * hm * wm * m * m, c * tp * p * p)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "llava",
            LlavaForConditionalGeneration,
            LlavaProcessor,
            " ",
            "model.vision_tower",
            "model.multi_modal_projector",
        ),
        LlavaNextFamily(
            "llava_next",
            LlavaNextForConditionalGeneration,
            LlavaNextProcessor,
            " ",
            "model.vision_tower",
            "model.multi_modal_projector",
        ),
        QwenVLFamily(
            "qwen2_vl",
            Qwen2VLForConditionalGeneration,
            ImageOnlyQwen2VLProcessor,
            "",
            "model.visual",
            "model.visual.merger",
        ),
        QwenVLFamily(
            "qwen2_5_vl",
            Qwen2_5_VLForConditionalGeneration,
            ImageOnlyQwen2VLProcessor,
            "",
            "model.visual",
            "model.visual.merger",
        ),
    )
}
SHARED_PREFIX_FAMILIES: tuple[str, ...] = tuple(
    name for name, family in FAMILIES.items() if family.shared_prefix
)

UNSUPPORTED: dict[str, str] = {
    "bunny": "Bunny-v1.0-3B ships its own modeling code (trust_remote_code) written for transformers 4.x; "
    "no built-in class of the installed transformers 5.x loads it, so mmpo has no adapter for it yet",
}


def family_error(name: str, key: str = "model.family") -> str | None:
    """Why ``<key>=name`` cannot be used, or None when it can."""
    if name in FAMILIES:
        return None
    reason = f" ({UNSUPPORTED[name]})" if name in UNSUPPORTED else ""
    return f"{key}={name!r} is not supported{reason}; allowed: {sorted(FAMILIES)}"


def get_family(name: str) -> Family:
    if error := family_error(name):
        raise ValueError(error)
    return FAMILIES[name]


def family_of(model: nn.Module) -> Family:
    """The family of a loaded model (its ``config.model_type``)."""
    return get_family(model.config.model_type)


def vision_frozen(model: nn.Module) -> bool:
    """True when no parameter of the vision tower or projector trains (their features are then a pure
    function of the pixels, identical for the policy and the reference)."""
    family = FAMILIES.get(model.config.model_type)
    if family is None:
        return False
    base = base_model(model)
    modules = [base.get_submodule(path) for path in (family.vision_module, family.projector_module)]
    return not any(p.requires_grad for module in modules for p in module.parameters())
