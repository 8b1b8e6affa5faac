"""Turn examples into the rows of exactly the branches a loss asks for.

For each (branch, record) the collator builds ``[templated prompt with image placeholders | response |
eos]`` with labels -100 over the prompt. The prompt goes through the processor (which expands image
placeholders and returns the image tensors); the response is tokenized on its own and appended, so every
branch of a record shares the identical prompt ids. Image placeholder tokens are counted and checked
against the processed images, and over-long rows follow ``truncation`` without ever cutting the prompt:

- ``delete``: drop the record (all its branches) and count it;
- ``truncate_response``: cut the responses to fit (a prompt that alone is too long is dropped and counted);
- ``raise``: stop with an error naming the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import ProcessorMixin

from mmpo.branches import Branch
from mmpo.config import NEGATIVE_SAMPLERS
from mmpo.data.records import Record, RecordError
from mmpo.data.rows import IGNORE_INDEX, TOKEN_KEYS, PreferenceBatch, Rows, concat_rows
from mmpo.models.families import Family
from mmpo.negatives.base import NegativeSampler, seeded_generator

TRUNCATION_MODES = ("delete", "truncate_response", "raise")
IMAGE_MODES = ("original", "none")


@dataclass
class Example:
    """A record with its images loaded, as the data set yields it."""

    record: Record
    images: list[Image.Image]
    negative_images: list[Image.Image]
    epoch: int = 0


def load_image(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class TooLong(Exception):
    pass


class PreferenceCollator:
    def __init__(
        self,
        processor: ProcessorMixin,
        family: Family,
        branches: Sequence[Branch],
        max_length: int = 2048,
        truncation: str = "delete",
        image: str = "original",
        context_template: str = "{prompt}\nContext:\n{context}",
        sampler: NegativeSampler | None = None,
        image_pool: Sequence[str] = (),
        context_pool: Sequence[str] = (),
        seed: int = 0,
    ):
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"data.truncation={truncation!r}; allowed: {list(TRUNCATION_MODES)}")
        if image not in IMAGE_MODES:
            raise ValueError(f"data.image={image!r}; allowed: {list(IMAGE_MODES)}")
        if any(b.image == "corrupted" for b in branches) and sampler is None and image != "none":
            raise ValueError(
                "the loss needs chosen@corrupted but negative_sampler is none; "
                f"choose one of negative_sampler={'|'.join(NEGATIVE_SAMPLERS)}"
            )
        self.processor = processor
        self.family = family
        self.branches = list(branches)
        self.max_length = max_length
        self.truncation = truncation
        self.image = image
        self.context_template = context_template
        self.sampler = sampler
        self.image_pool = list(image_pool)
        self.context_pool = list(context_pool)
        self.seed = seed
        self.tokenizer = processor.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id
        self.image_token_id = family.image_token_id(processor)

    # ---- per-branch inputs -------------------------------------------------------------------------
    def _generator(self, example: Example, name: str) -> torch.Generator:
        return seeded_generator(self.seed, example.record.id, example.epoch, name)

    def _other_image(self, example: Example):
        own = example.record.images[0]

        def draw(generator: torch.Generator) -> Image.Image:
            candidates = [p for p in self.image_pool if p != own]
            if not candidates:
                raise RecordError("negative_sampler=random_image needs at least two distinct images")
            return load_image(candidates[int(torch.randint(len(candidates), (1,), generator=generator))])

        return draw

    def _images(self, example: Example, branch: Branch, stream: str) -> list[Image.Image]:
        if self.image == "none" or branch.image == "none":
            return []
        if branch.image == "negative":
            if branch.k >= len(example.negative_images):
                raise RecordError(
                    f"record {example.record.id!r}: the loss needs negative image {branch.k} "
                    f"but field 'negative_images' has {len(example.negative_images)}"
                )
            return [example.negative_images[branch.k]]
        if branch.image == "corrupted" and self.sampler.apply_to == "pil":
            generator = self._generator(example, stream)
            return [
                self.sampler.corrupt_image(im, generator, self._other_image(example)) for im in example.images
            ]
        return example.images

    def _prompt_text(self, example: Example, branch: Branch) -> str:
        record = example.record
        context = record.context
        if branch.context == "swapped":
            others = [c for c in self.context_pool if c != context]
            if not others:
                raise RecordError("swapped-context branches need at least two distinct contexts in the data")
            generator = self._generator(example, "context")
            context = others[int(torch.randint(len(others), (1,), generator=generator))]
        if context is None:
            return record.prompt
        return self.context_template.format(prompt=record.prompt, context=context)

    def _row(self, example: Example, branch: Branch, stream: str) -> Rows:
        record = example.record
        images = self._images(example, branch, stream)
        text = self.family.chat_prompt(self.processor, self._prompt_text(example, branch), len(images))
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt")
        prompt_ids = encoded["input_ids"][0]
        image_inputs = {k: v for k, v in encoded.items() if k not in TOKEN_KEYS}
        self._check_image_tokens(record, prompt_ids, image_inputs, len(images))
        if branch.image == "corrupted" and images and self.sampler.apply_to == "pixels":
            generator = self._generator(example, stream)
            pixels = self.family.image_tensors(self.processor, image_inputs)
            pixels = [self.sampler.corrupt_pixels(p, generator) for p in pixels]
            image_inputs = self.family.with_image_tensors(self.processor, image_inputs, pixels)
        response = getattr(record, branch.response)
        if response is None:
            raise RecordError(f"record {record.id!r}: the loss needs field {branch.response!r}")
        response_ids = self.tokenizer(self.family.response_separator + response, add_special_tokens=False)
        response_ids = torch.tensor(response_ids["input_ids"] + [self.tokenizer.eos_token_id])
        room = self.max_length - len(prompt_ids)
        if len(response_ids) > room:
            if self.truncation == "raise":
                raise RecordError(
                    f"record {record.id!r}, branch {branch}: {len(prompt_ids)} prompt + "
                    f"{len(response_ids)} response tokens exceed data.max_length={self.max_length}"
                )
            if self.truncation == "delete" or room < 1:
                raise TooLong("prompt_too_long" if room < 1 else "too_long")
            response_ids = response_ids[:room]
        tensors = {k: v for k, v in encoded.items() if k in TOKEN_KEYS}
        n = len(response_ids)
        tensors["input_ids"] = torch.cat([prompt_ids, response_ids])[None]
        tensors["attention_mask"] = torch.ones_like(tensors["input_ids"])
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in tensors:
                tensors[key] = torch.nn.functional.pad(tensors[key], (0, n))
        tensors["labels"] = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), response_ids])[None]
        return Rows({**tensors, **image_inputs})

    def _check_image_tokens(
        self, record: Record, prompt_ids: torch.Tensor, image_inputs: dict, n: int
    ) -> None:
        found = int((prompt_ids == self.image_token_id).sum())
        expected = self.family.expected_image_tokens(self.processor, image_inputs) if n else 0
        if expected is not None and found != expected:
            raise RecordError(
                f"record {record.id!r}: {found} image placeholder tokens in the prompt but the "
                f"{n} processed image(s) need {expected}; check the processor and chat template"
            )

    # ---- batch -------------------------------------------------------------------------------------
    def __call__(self, examples: list[Example]) -> PreferenceBatch:
        kept: list[tuple[Example, dict[Branch, Rows], dict[Branch, Rows]]] = []
        dropped: Counter[str] = Counter()
        for example in examples:
            try:
                rows = {
                    b: self._row(example, b, self.sampler.name if self.sampler else "") for b in self.branches
                }
                reference = {
                    b: self._row(example, b, f"{self.sampler.name}:reference")
                    for b in self.branches
                    if b.image == "corrupted" and self.sampler.resample_per_forward and self.image != "none"
                }
            except TooLong as reason:
                dropped[str(reason)] += 1
                continue
            kept.append((example, rows, reference))

        def gather(index: int) -> dict[Branch, Rows]:
            keys = kept[0][index] if kept else {}
            return {b: concat_rows([k[index][b] for k in kept], self.pad_token_id) for b in keys}

        return PreferenceBatch(
            ids=[k[0].record.id for k in kept],
            rows=gather(1),
            pad_token_id=self.pad_token_id,
            reference_rows=gather(2),
            dropped=dict(dropped),
            epoch=max((example.epoch for example in examples), default=0),
        )
