"""What the shared-prefix engine needs to know per model family, and nothing else.

Three things differ between families once the LM is called on ``inputs_embeds`` directly:

- how the per-image tensors of a :class:`~mmpo.data.rows.Rows` split into single images and how many
  placeholder tokens each image fills;
- how a batch of images becomes projected features (vision tower + projector);
- the position ids of a prompt: LLaVA counts tokens (1 axis, ``0..P-1``, image tokens included);
  Qwen2-VL uses M-RoPE (3 axes: temporal, height, width), where text after an image continues at
  ``max(image grid position) + 1`` rather than at the token count. Either way the response continues at
  ``max(prompt positions) + 1`` on every axis.

Each adapter works on the peft wrapper or the bare HF model alike: LoRA layers sit inside the modules,
so calling ``get_image_features`` / ``get_decoder()`` runs them (and ``disable_adapter`` turns them off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmpo.data.rows import Rows
from mmpo.models.families import FAMILIES

ImageInputs = dict[str, Tensor]
"""The tensors of one or more images, in the layout the processor returns (e.g. ``pixel_values``)."""


def base_model(model: nn.Module) -> nn.Module:
    """The HF model under a peft wrapper (the same modules, with LoRA layers injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass(frozen=True)
class Adapter:
    """Base: 1-D positions (``0..P-1``); subclasses say how images split and encode."""

    image_keys: tuple[str, ...]
    """Per-image keys of a Rows, concatenated along dim 0 in placeholder order."""

    axes: int = 1
    """Position axes the decoder takes: 1 (``[rows, seq]``) or 3 (M-RoPE ``[3, rows, seq]``)."""

    def image_token_id(self, model: nn.Module) -> int:
        config = model.config
        return getattr(config, "image_token_id", None) or config.image_token_index

    def split(self, model: nn.Module, image_inputs: ImageInputs) -> list[tuple[ImageInputs, int]]:
        """Single images of ``image_inputs`` with the number of placeholder tokens each one fills."""
        raise NotImplementedError

    def join(self, images: list[ImageInputs]) -> ImageInputs:
        return {key: torch.cat([image[key] for image in images]) for key in self.image_keys}

    def encode(self, model: nn.Module, images: ImageInputs) -> list[Tensor]:
        """Projected features ``[tokens_i, hidden]`` of each image (one vision-tower call)."""
        raise NotImplementedError

    def prompt_positions(
        self, model: nn.Module, prompt: Tensor, rows: Rows, row: int, images: ImageInputs | None
    ) -> Tensor:
        """Position ids ``[axes, P]`` of the prompt ``prompt`` (row ``row`` of ``rows``)."""
        return torch.arange(prompt.shape[0], device=prompt.device)[None]

    def split_rows(self, model: nn.Module, rows: Rows) -> list[list[ImageInputs]]:
        """The images of every row: rows consume images in order until their placeholders are filled."""
        present = [key for key in self.image_keys if key in rows.tensors]
        images = self.split(model, {k: rows.tensors[k] for k in present}) if present else []
        token_id = self.image_token_id(model)
        counts = (rows.tensors["input_ids"] == token_id).sum(-1).tolist()
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
class LlavaAdapter(Adapter):
    """LLaVA-1.5: ``pixel_values`` [images, 3, H, W]; (H/p)(W/p) tokens per image (+1 with the CLS
    feature, ``vision_feature_select_strategy='full'``)."""

    def split(self, model: nn.Module, image_inputs: ImageInputs) -> list[tuple[ImageInputs, int]]:
        config = model.config
        pixels = image_inputs["pixel_values"]
        patch = config.vision_config.patch_size
        tokens = (pixels.shape[-2] // patch) * (pixels.shape[-1] // patch)
        tokens += int(config.vision_feature_select_strategy == "full")
        return [({"pixel_values": pixels[i : i + 1]}, tokens) for i in range(pixels.shape[0])]

    def encode(self, model: nn.Module, images: ImageInputs) -> list[Tensor]:
        return list(model.get_image_features(pixel_values=images["pixel_values"]).pooler_output)


@dataclass(frozen=True)
class QwenVLAdapter(Adapter):
    """Qwen2-VL / Qwen2.5-VL: flattened patches ``pixel_values`` [patches, D] with ``image_grid_thw``
    [images, 3]; an image has t*h*w patches and t*h*w / merge^2 tokens; M-RoPE positions."""

    def split(self, model: nn.Module, image_inputs: ImageInputs) -> list[tuple[ImageInputs, int]]:
        merge = model.config.vision_config.spatial_merge_size
        grids = image_inputs["image_grid_thw"]
        patches = image_inputs["pixel_values"].split(grids.prod(-1).tolist())
        return [
            ({"pixel_values": p, "image_grid_thw": g[None]}, int(g.prod()) // merge**2)
            for p, g in zip(patches, grids, strict=True)
        ]

    def encode(self, model: nn.Module, images: ImageInputs) -> list[Tensor]:
        out = model.get_image_features(
            pixel_values=images["pixel_values"], image_grid_thw=images["image_grid_thw"]
        )
        return list(out.pooler_output)

    def prompt_positions(
        self, model: nn.Module, prompt: Tensor, rows: Rows, row: int, images: ImageInputs | None
    ) -> Tensor:
        token_types = rows.tensors["mm_token_type_ids"][row, : prompt.shape[0]]
        grids = images["image_grid_thw"] if images else None
        positions, _ = base_model(model).model.get_rope_index(
            prompt[None], mm_token_type_ids=token_types[None], image_grid_thw=grids
        )
        return positions[:, 0]


ADAPTERS: dict[str, Adapter] = {
    "llava": LlavaAdapter(("pixel_values",)),
    "qwen2_vl": QwenVLAdapter(("pixel_values", "image_grid_thw"), axes=3),
    "qwen2_5_vl": QwenVLAdapter(("pixel_values", "image_grid_thw"), axes=3),
}
SHARED_PREFIX_FAMILIES = tuple(ADAPTERS)


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter of ``model``'s family; a clear error for families shared_prefix does not support."""
    family = model.config.model_type
    if family not in ADAPTERS:
        raise ValueError(
            f"engine.mode=shared_prefix does not support model.family={family!r}; allowed families: "
            f"{list(SHARED_PREFIX_FAMILIES)} (use engine.mode=batched for the others)"
        )
    return ADAPTERS[family]


def vision_frozen(model: nn.Module) -> bool:
    """True when no parameter of the vision tower or projector trains (their features are then a pure
    function of the pixels, identical for the policy and the reference)."""
    family = FAMILIES.get(model.config.model_type)
    if family is None:
        return False
    base = base_model(model)
    modules = [base.get_submodule(path) for path in (family.vision_module, family.projector_module)]
    return not any(p.requires_grad for module in modules for p in module.parameters())
