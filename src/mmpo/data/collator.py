"""Turn examples into the rows of exactly the branches a loss asks for.

For each (branch, record) the collator builds ``[templated prompt with image placeholders | response |
eos]`` with labels -100 over the prompt. The prompt goes through the processor (which expands image
placeholders and returns the image tensors); the response is tokenized on its own and appended, so every
branch of a record that sees the same image and context shares the identical prompt ids. Everything random
was drawn before (:mod:`mmpo.data.examples`): a branch takes the record's images, its k-th negative (with
the negative's pixel transform applied to the processed tensor) or none, and its own or the swapped
context. Image placeholder tokens are counted and checked against the processed images, and over-long rows
follow ``truncation`` without ever cutting the prompt:

- ``delete``: drop the record (all its branches) and count it;
- ``truncate_response``: cut the responses to fit (a prompt that alone is too long is dropped and counted);
- ``raise``: stop with an error naming the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import ProcessorMixin

from mmpo.branches import Branch
from mmpo.data.examples import Example
from mmpo.data.records import Record, RecordError
from mmpo.data.rows import IGNORE_INDEX, TOKEN_KEYS, PreferenceBatch, Rows, concat_rows
from mmpo.models.families import Family
from mmpo.negatives.base import Negative

TRUNCATION_MODES = ("delete", "truncate_response", "raise")
IMAGE_MODES = ("original", "none")
"""``data.image``: ``none`` removes the images of the original-image rows (the "DPO (No Image)" ablation)."""


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
    ):
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"data.truncation={truncation!r}; allowed: {list(TRUNCATION_MODES)}")
        if image not in IMAGE_MODES:
            raise ValueError(f"data.image={image!r}; allowed: {list(IMAGE_MODES)}")
        self.processor = processor
        self.family = family
        self.branches = list(branches)
        self.max_length = max_length
        self.truncation = truncation
        self.image = image
        self.context_template = context_template
        self.tokenizer = processor.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id
        self.image_token_id = family.image_token_id(processor)

    def fingerprint_fields(self) -> dict[str, Any]:
        """What determines the rows besides the examples and the processor, for the reference cache."""
        return {
            "branches": sorted(map(str, self.branches)),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "image": self.image,
            "context_template": self.context_template,
            "response_separator": self.family.response_separator,
        }

    # ---- per-branch inputs -------------------------------------------------------------------------
    def _negative(self, example: Example, branch: Branch, reference: bool) -> Negative:
        negatives = (
            example.reference_negatives if reference and example.reference_negatives else example.negatives
        )
        if branch.k >= len(negatives):
            raise RecordError(
                f"record {example.record.id!r}: branch {branch} needs negative image {branch.k}, but the "
                f"negative_sampler drew {len(negatives)}"
            )
        return negatives[branch.k]

    def _images(
        self, example: Example, branch: Branch, reference: bool
    ) -> tuple[list[Image.Image], Negative | None]:
        if branch.image == "none" or (branch.image == "original" and self.image == "none"):
            return [], None
        if branch.image == "negative":
            negative = self._negative(example, branch, reference)
            return list(negative.images), negative
        return example.images, None

    def _prompt_text(self, example: Example, branch: Branch) -> str:
        record = example.record
        context = example.swapped_context if branch.context == "swapped" else record.context
        if context is None:
            return record.prompt
        return self.context_template.format(prompt=record.prompt, context=context)

    def _response(self, record: Record, branch: Branch) -> str:
        if branch.response == "chosen":
            return record.chosen
        if branch.j >= len(record.rejected):
            raise RecordError(
                f"record {record.id!r}: branch {branch} needs rejected response {branch.j}, but field "
                f"'rejected' holds {len(record.rejected)}"
            )
        return record.rejected[branch.j]

    def _row(self, example: Example, branch: Branch, reference: bool = False) -> Rows:
        record = example.record
        images, negative = self._images(example, branch, reference)
        text = self.family.chat_prompt(self.processor, self._prompt_text(example, branch), len(images))
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt")
        prompt_ids = encoded["input_ids"][0]
        image_inputs = {k: v for k, v in encoded.items() if k not in TOKEN_KEYS}
        self._check_image_tokens(record, prompt_ids, image_inputs, len(images))
        if negative is not None and negative.pixel_transform is not None:
            pixels = negative.pixel_transform(self.family.image_tensors(self.processor, image_inputs))
            image_inputs = self.family.with_image_tensors(self.processor, image_inputs, pixels)
        response_ids = self.tokenizer(
            self.family.response_separator + self._response(record, branch), add_special_tokens=False
        )
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
                rows = {b: self._row(example, b) for b in self.branches}
                reference = {
                    b: self._row(example, b, reference=True)
                    for b in self.branches
                    if b.image == "negative" and example.reference_negatives
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
            negative_log_q=negative_log_q([k[0] for k in kept]),
        )


def negative_log_q(examples: list[Example]) -> torch.Tensor | None:
    """``[records, K]`` log q of each example's negatives (importance-weighted draws), or None."""
    if not examples or not examples[0].negatives or examples[0].negatives[0].log_q is None:
        return None
    return torch.tensor([[n.log_q for n in e.negatives] for e in examples], dtype=torch.float32)
