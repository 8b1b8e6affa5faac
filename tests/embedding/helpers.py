"""Helpers shared by the embedding tests."""

from __future__ import annotations

from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


def dynamic_resolution(processor):
    """The tiny Qwen processor with 1 to 4 image tokens by image size (28 px: 1, 56 px: 4)."""
    processor.image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return processor
