"""MAPLE's reward: a frozen MLLM asked whether a text matches an image (methods.md §3.2).

For an (image, text) pair the model reads its chat prompt with the image and ``prompt.format(text=...)``;
with ``l_yes``, ``l_no`` the next-token logits of the answer tokens at the last prompt position, the
alignment score is

    alpha(image, text) = exp(l_yes) / (exp(l_yes) + exp(l_no))

(the restriction to these two logits at the first generated position is [I]; the prompt wording is
[?], ``prompt`` is an option). The answer tokens are the family's response separator followed by
``yes`` / ``no`` ("Yes" / "No" by default: what an instruction-tuned MLLM emits first); each must be a
single token of the tokenizer, else a :class:`ValueError` names the tokenizer and the split.

Pairs are scored in batches of ``batch_size``, left-padded so the last position of every row is its
last prompt token, with positions counted over each row's own tokens
(:func:`~mmpo.embedding.attention.position_ids`), so a score does not depend on its batch. With a
``cache`` (:class:`~mmpo.embedding.score_cache.ScoreCache`) each (image key, text) pair is computed
once per scorer fingerprint and read back afterwards; :attr:`hits` / :attr:`misses` count pairs.
The fingerprint hashes the model config and weights, processor, tokenizer, chat template, prompt and
answer tokens, so any change to them scores afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from transformers import ProcessorMixin

from mmpo.embedding.attention import check_family, position_ids
from mmpo.embedding.score_cache import PairKey, ScoreCache
from mmpo.engine.cache import weights_digest
from mmpo.models.families import get_family

DEFAULT_PROMPT = 'Does this image match the text "{text}"? Answer yes or no.'

ImageInput = str | Path | Image.Image


def answer_token_ids(tokenizer, separator: str, yes: str, no: str) -> tuple[int, int]:
    """The ids of ``separator + yes`` and ``separator + no``; each must be exactly one token."""
    ids = []
    for word in (yes, no):
        text = separator + word
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            pieces = tokenizer.convert_ids_to_tokens(encoded)
            raise ValueError(
                f"alignment scorer: the answer {text!r} is {len(encoded)} tokens {pieces} for tokenizer "
                f"{name!r}, not one; choose answer words (options yes / no) that are single tokens"
            )
        ids.append(encoded[0])
    if ids[0] == ids[1]:
        raise ValueError(f"alignment scorer: yes={yes!r} and no={no!r} map to the same token {ids[0]}")
    return ids[0], ids[1]


def _open(image: ImageInput) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.open(image).convert("RGB")


class AlignmentScorer:
    """Frozen yes/no alignment scorer over a VLM of a family in :data:`~mmpo.embedding.attention.FAMILIES`.

    Args:
        model, processor: the reward MLLM, frozen here (eval mode, ``requires_grad_(False)``): pass
            its own instance, never the policy being trained.
        prompt: question about the pair; ``{text}`` is replaced by the text [?].
        yes, no: answer words, each a single token after the family's response separator.
        batch_size: pairs per forward.
        cache: a :class:`ScoreCache` or the path of its SQLite file; ``None`` scores every call afresh.
    """

    def __init__(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        prompt: str = DEFAULT_PROMPT,
        yes: str = "Yes",
        no: str = "No",
        batch_size: int = 8,
        cache: ScoreCache | str | Path | None = None,
    ) -> None:
        if "{text}" not in prompt:
            raise ValueError(f"alignment scorer prompt must contain '{{text}}', got {prompt!r}")
        if batch_size < 1:
            raise ValueError(f"alignment scorer batch_size must be positive, got {batch_size}")
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.family = get_family(check_family(model))
        self.prompt = prompt
        self.answer_ids = answer_token_ids(processor.tokenizer, self.family.response_separator, yes, no)
        self.batch_size = batch_size
        self.cache = ScoreCache(cache) if isinstance(cache, str | Path) else cache
        self.fingerprint = self._fingerprint() if self.cache is not None else None
        self.hits = 0
        self.misses = 0

    def _fingerprint(self) -> str:
        tokenizer = self.processor.tokenizer
        parts = {
            "config": self.model.config.to_json_string(use_diff=False),
            "weights": weights_digest(self.model),
            "processor": self.processor.to_json_string(),
            "tokenizer": tokenizer.backend_tokenizer.to_str(),
            "chat_template": str(self.processor.chat_template),
            "prompt": self.prompt,
            "answers": list(self.answer_ids),
            "dtype": str(self.model.dtype),
        }
        return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()

    @torch.no_grad()
    def alignment(self, images: Sequence[ImageInput], texts: Sequence[str]) -> Tensor:
        """``[N]`` float32 scores of the pairs ``(images[n], texts[n])``, computed now (no cache)."""
        if len(images) != len(texts):
            raise ValueError(f"alignment scorer: {len(images)} images but {len(texts)} texts")
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            prompts = [
                self.family.chat_prompt(self.processor, self.prompt.format(text=t), 1) for t in texts[chunk]
            ]
            inputs = self.processor(
                text=prompts,
                images=[_open(image) for image in images[chunk]],
                padding=True,
                padding_side="left",
                return_tensors="pt",
            ).to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            logits = self.model(
                **inputs, position_ids=position_ids(self.model, inputs), logits_to_keep=1, use_cache=False
            ).logits[:, -1]
            scores.append(logits[:, list(self.answer_ids)].float().softmax(-1)[:, 0])
        return torch.cat(scores).cpu() if scores else torch.empty(0)

    def __call__(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        image_keys: Sequence[str] | None = None,
    ) -> Tensor:
        """``[N]`` scores of the pairs, read from the cache where present (module docstring).

        ``image_keys`` name the images in the cache; by default an image given as a path is keyed by
        that path. Without a cache every pair is computed.
        """
        if self.cache is None:
            self.misses += len(texts)
            return self.alignment(images, texts)
        keys = self._keys(images, texts, image_keys)
        found = self.cache.get(self.fingerprint, keys)
        missing = sum(key not in found for key in keys)
        self.hits += len(keys) - missing
        self.misses += missing
        todo: dict[PairKey, int] = {}
        for index, key in enumerate(keys):
            if key not in found:
                todo.setdefault(key, index)
        if todo:
            computed = self.alignment([images[i] for i in todo.values()], [texts[i] for i in todo.values()])
            new = dict(zip(todo, computed.tolist(), strict=True))
            self.cache.put(self.fingerprint, new)
            found.update(new)
        return torch.tensor([found[key] for key in keys], dtype=torch.float32)

    @staticmethod
    def _keys(
        images: Sequence[ImageInput], texts: Sequence[str], image_keys: Sequence[str] | None
    ) -> list[PairKey]:
        if len(images) != len(texts):
            raise ValueError(f"alignment scorer: {len(images)} images but {len(texts)} texts")
        if image_keys is None:
            if any(isinstance(image, Image.Image) for image in images):
                raise ValueError(
                    "alignment scorer: images given as PIL images need image_keys to be cached; "
                    "pass image paths or image_keys"
                )
            image_keys = [str(image) for image in images]
        if len(image_keys) != len(texts):
            raise ValueError(f"alignment scorer: {len(image_keys)} image keys for {len(texts)} pairs")
        return list(zip(image_keys, texts, strict=True))
