"""Processor classes that work without torchvision.

transformers' Qwen2-VL processor requires a video processor, and the only video processor needs
torchvision, which does not import beside the CPU torch build this project targets. mmpo trains on
images only, so :class:`ImageOnlyQwen2VLProcessor` drops the video sub-processor and keeps everything
else of :class:`~transformers.Qwen2VLProcessor` (image-token expansion, ``mm_token_type_ids``, chat
template). ``from_pretrained`` on a real Qwen2-VL / Qwen2.5-VL checkpoint loads its tokenizer and (PIL)
image processor.
"""

from __future__ import annotations

from transformers import ProcessorMixin, Qwen2VLProcessor


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
