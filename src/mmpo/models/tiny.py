"""Tiny random vision-language models built offline, for tests and the embedded default.

Each builder returns ``(model, processor)`` with random weights, deterministic for a seed, and a small
byte-level BPE tokenizer trained on the fly on the shapes world's vocabulary (any text still tokenizes,
through the byte fallback). Nothing is downloaded. ``save_pretrained`` on both gives a directory in HF
layout that loads through ``model.path`` exactly like a real checkpoint.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mmpo.data.shapes import vocabulary_corpus
from mmpo.models.processors import ImageOnlyQwen2VLProcessor
from mmpo.models.tiny_vision import pretrain_vision_tower

# A LLaVA-1.5-style conversation ("USER: <image>\n... ASSISTANT:"), written for the tiny model.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | upper }}: "
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }} {% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# The Qwen2-VL ChatML conversation with vision markers, written for the tiny model.
QWEN2VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(
    special_tokens: list[str], vocab_size: int, **named_tokens: str
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the shapes vocabulary; ``named_tokens`` maps e.g. eos_token="</s>"."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(vocabulary_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **named_tokens)


def _text_config(
    vocab_size: int, hidden_size: int, num_layers: int, initializer_range: float | None = None, **ids: int
) -> dict:
    """Llama-style text config; ``initializer_range`` (std of the normal initialisation of every linear
    and embedding weight of the language model, projector and head) defaults to transformers' 0.02."""
    if initializer_range is not None:
        ids = {**ids, "initializer_range": initializer_range}
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        **ids,
    )


def _seeded(model_class: type[PreTrainedModel], config, seed: int) -> PreTrainedModel:
    """Weights drawn from ``seed`` on a forked generator: the global one, seeded by the run's ``seed``,
    goes on deciding LoRA initialisation and data order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def build_tiny_llava(
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden_size: int = 32,
    initializer_range: float | None = None,
    vision_pretraining_steps: int = 0,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """LLaVA-1.5 layout: CLIP vision tower, 2-layer MLP projector, Llama language model.

    Image tokens per image = (image_size / patch_size)^2 (the CLS feature is dropped).
    ``initializer_range`` sets the std of the language model's initial weights (default 0.02, tuned for
    widths in the thousands; about ``hidden_size ** -0.5`` lets a narrow model learn to answer questions
    that need both the image and the text, not just one of them).
    ``vision_pretraining_steps > 0`` pre-trains the vision tower on generated shapes scenes
    (:func:`mmpo.models.tiny_vision.pretrain_vision_tower`), as a real LLaVA starts from a trained CLIP.
    """
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    tokenizer = train_tokenizer(
        specials, 512, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.padding_side = "right"
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=2 * vision_hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )
    ids = {
        name: tokenizer.convert_tokens_to_ids(tok)
        for name, tok in [("pad_token_id", "<pad>"), ("bos_token_id", "<s>"), ("eos_token_id", "</s>")]
    }
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=LlamaConfig(
            **_text_config(len(tokenizer), hidden_size, num_layers, initializer_range, **ids)
        ).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=(image_size // patch_size) ** 2,
        **ids,
    )
    model = _seeded(LlavaForConditionalGeneration, config, seed)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    if vision_pretraining_steps:
        pretrain_vision_tower(model, processor, vision_pretraining_steps, seed)
    return model, processor


def build_tiny_qwen2vl(
    seed: int = 0, hidden_size: int = 64, num_layers: int = 2, image_size: int = 56
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Qwen2-VL layout: ViT with 2x2 patch merger and M-RoPE language model.

    With patch 14 and merge 2, an image_size x image_size image gives (image_size / 28)^2 tokens.
    """
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tokenizer = train_tokenizer(specials, 512, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tokenizer.padding_side = "right"
    tok = tokenizer.convert_tokens_to_ids
    text = _text_config(
        len(tokenizer),
        hidden_size,
        num_layers,
        pad_token_id=tok("<|endoftext|>"),
        bos_token_id=tok("<|endoftext|>"),
        eos_token_id=tok("<|im_end|>"),
    )
    head_dim = hidden_size // 4
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [
            head_dim // 8,
            head_dim // 8 + head_dim // 16,
            head_dim // 2 - head_dim // 8 - (head_dim // 8 + head_dim // 16),
        ],
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=hidden_size,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_chans=3,
        ),
        image_token_id=tok("<|image_pad|>"),
        video_token_id=tok("<|video_pad|>"),
        vision_start_token_id=tok("<|vision_start|>"),
        vision_end_token_id=tok("<|vision_end|>"),
        pad_token_id=tok("<|endoftext|>"),
        bos_token_id=tok("<|endoftext|>"),
        eos_token_id=tok("<|im_end|>"),
        tie_word_embeddings=False,
    )
    model = _seeded(Qwen2VLForConditionalGeneration, config, seed)
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = ImageOnlyQwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2VL_CHAT_TEMPLATE
    )
    return model, processor
