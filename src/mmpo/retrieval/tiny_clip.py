"""A tiny random CLIP in Hugging Face layout, for tests (nothing is downloaded).

The tokenizer is the byte-level BPE of the tiny VLMs (:func:`mmpo.models.tiny.train_tokenizer`) with
``<s> ... </s>`` added around every text, so the text encoder pools at the end-of-text token as real CLIP
does. :func:`save_tiny_clip` writes a directory that :meth:`mmpo.retrieval.clip.ClipEmbedder.from_path`
loads like a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import processors
from transformers import CLIPConfig, CLIPModel, CLIPProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mmpo.models.tiny import train_tokenizer

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tiny_clip(
    seed: int = 0, projection_dim: int = 16, hidden_size: int = 32, image_size: int = 32, patch_size: int = 8
) -> tuple[CLIPModel, CLIPProcessor]:
    """Random ``CLIPModel`` (deterministic for ``seed``) and its processor."""
    tokenizer = train_tokenizer(
        SPECIAL_TOKENS, 300, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])]
    )
    layers = dict(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            pad_token_id=ids["<pad>"],
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            **layers,
        ),
        vision_config=dict(image_size=image_size, patch_size=patch_size, **layers),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_tiny_clip(directory: str | Path, seed: int = 0, **sizes: int) -> Path:
    """:func:`build_tiny_clip` saved to ``directory`` (model + processor); returns the directory."""
    directory = Path(directory)
    model, processor = build_tiny_clip(seed, **sizes)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
