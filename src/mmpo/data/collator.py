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
- ``raise``: stop with an error naming the record's file, line, id and response field.

The data module builds every row whose inputs do not change with the epoch once before training
(:mod:`mmpo.data.validation`, through :meth:`PreferenceCollator.rows`), so these outcomes are decided, named
and counted up front; during training only rows drawn anew each epoch (a swapped context) can still be
dropped or cut, and the batch lists their ids (``PreferenceBatch.notes``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import ProcessorMixin

from mmpo.branches import Branch
from mmpo.data.examples import Example
from mmpo.data.records import Record, record_error, rejected_field
from mmpo.data.rows import IGNORE_INDEX, TOKEN_KEYS, PreferenceBatch, Rows, concat_rows
from mmpo.models.families import Family
from mmpo.negatives.base import Negative

TRUNCATION_MODES = ("delete", "truncate_response", "raise")
IMAGE_MODES = ("original", "none")
"""``data.image``: ``none`` removes the images of the original-image rows (the "DPO (No Image)" ablation)."""
LENGTH_REASONS = {
    "too_long": "prompt and response exceed data.max_length (data.truncation=delete drops the record)",
    "prompt_too_long": "the prompt alone fills data.max_length (never cut: the record is dropped)",
    "response_truncated": "a response cut to fit data.max_length (data.truncation=truncate_response)",
}
"""What data.truncation does to a record: reason -> what it means."""
ROW_REASONS = {
    "processor_error": "the processor refuses the row (e.g. an image size the family cannot take)",
    "image_tokens": "image placeholder tokens that do not match the processed images",
    "negatives": "the negative_sampler cannot draw the record's negatives",
}
"""Why the rows of a record cannot be built: reason -> what it means."""


class TooLong(Exception):
    """A row that does not fit ``max_length`` (``reason``: ``too_long`` or ``prompt_too_long``)."""

    def __init__(self, reason: str, field_name: str):
        super().__init__(reason)
        self.reason, self.field = reason, field_name


@dataclass
class ExampleRows:
    """The rows of one example per branch, its reference's own rows, and the responses cut to fit
    (``(field, tokens kept, tokens)``)."""

    rows: dict[Branch, Rows]
    reference: dict[Branch, Rows] = field(default_factory=dict)
    truncated: list[tuple[str, int, int]] = field(default_factory=list)


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
        token_budget: int | None = None,
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
        self.token_budget = token_budget
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
            record = example.record
            raise record_error(
                record.location, record.id, None, "negatives",
                f"branch {branch} needs negative image {branch.k}, but the negative_sampler drew {len(negatives)}",
            )  # fmt: skip
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
            raise record_error(
                record.location, record.id, "rejected", "too_few_rejected",
                f"holds {len(record.rejected)}, but branch {branch} needs rejected response {branch.j}",
            )  # fmt: skip
        return record.rejected[branch.j]

    def _row(
        self, example: Example, branch: Branch, reference: bool, truncated: list[tuple[str, int, int]]
    ) -> Rows:
        record = example.record
        where = record.location
        images, negative = self._images(example, branch, reference)
        text = self.family.chat_prompt(self.processor, self._prompt_text(example, branch), len(images))
        try:
            encoded = self.processor(text=[text], images=images or None, return_tensors="pt")
        except (ValueError, TypeError, RuntimeError) as error:
            field_name = "images" if images else "prompt"
            message = f"the processor refuses the row of branch {branch}: {error}"
            raise record_error(where, record.id, field_name, "processor_error", message) from None
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
            response = (
                "chosen" if branch.response == "chosen" else rejected_field(branch.j, len(record.rejected))
            )
            if self.truncation == "raise":
                raise record_error(
                    where, record.id, response, "too_long",
                    f"does not fit: {len(prompt_ids)} prompt + {len(response_ids)} response tokens exceed "
                    f"data.max_length={self.max_length} (branch {branch}; data.truncation=raise)",
                )  # fmt: skip
            if self.truncation == "delete" or room < 1:
                raise TooLong("prompt_too_long" if room < 1 else "too_long", response)
            truncated.append((response, room, len(response_ids)))
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
            raise record_error(
                record.location, record.id, "images", "image_tokens",
                f"{found} image placeholder tokens in the prompt but the {n} processed image(s) need "
                f"{expected}; check the processor and chat template",
            )  # fmt: skip

    def rows(self, example: Example, branches: Sequence[Branch] | None = None) -> ExampleRows:
        """The rows of ``branches`` (default: the collator's) for one example: :class:`TooLong` when the
        record is dropped for length, :class:`RecordError` when a row cannot be built."""
        branches = self.branches if branches is None else branches
        truncated: list[tuple[str, int, int]] = []
        rows = {b: self._row(example, b, False, truncated) for b in branches}
        reference = {
            b: self._row(example, b, True, truncated)
            for b in branches
            if b.image == "negative" and example.reference_negatives
        }
        return ExampleRows(rows, reference, list(dict.fromkeys(truncated)))

    # ---- batch -------------------------------------------------------------------------------------
    def __call__(self, examples: list[Example]) -> PreferenceBatch:
        kept: list[tuple[Example, dict[Branch, Rows], dict[Branch, Rows]]] = []
        dropped: Counter[str] = Counter()
        notes: defaultdict[str, list[str]] = defaultdict(list)
        for example in examples:
            try:
                built = self.rows(example)
            except TooLong as too_long:
                dropped[too_long.reason] += 1
                notes[too_long.reason].append(example.record.id)
                continue
            if built.truncated:
                notes["response_truncated"].append(example.record.id)
            kept.append((example, built.rows, built.reference))

        def gather(index: int) -> dict[Branch, Rows]:
            keys = kept[0][index] if kept else {}
            return {b: concat_rows([k[index][b] for k in kept], self.pad_token_id) for b in keys}

        return PreferenceBatch(
            ids=[k[0].record.id for k in kept],
            rows=gather(1),
            pad_token_id=self.pad_token_id,
            reference_rows=gather(2),
            dropped=dict(dropped),
            notes=dict(notes),
            epoch=max((example.epoch for example in examples), default=0),
            negative_log_q=negative_log_q([k[0] for k in kept]),
            token_budget=self.token_budget,
        )


def negative_log_q(examples: list[Example]) -> torch.Tensor | None:
    """``[records, K]`` log q of each example's negatives (importance-weighted draws), or None."""
    if not examples or not examples[0].negatives or examples[0].negatives[0].log_q is None:
        return None
    return torch.tensor([[n.log_q for n in e.negatives] for e in examples], dtype=torch.float32)
