"""Branches: the (response, image, context) combinations a loss scores.

A loss is a function of sequence log-probs ``log pi(response | image, text)`` for a few combinations
of response, image and context. One combination is a :class:`Branch`. Each loss declares the branches it
needs; the collator builds exactly those rows and the forward engine returns a :data:`LogProbs` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

Response = Literal["chosen", "rejected"]
ImageSource = Literal["original", "corrupted", "negative", "none"]
ContextSource = Literal["original", "swapped"]

RESPONSES: tuple[str, ...] = ("chosen", "rejected")
IMAGE_SOURCES: tuple[str, ...] = ("original", "corrupted", "negative", "none")
CONTEXT_SOURCES: tuple[str, ...] = ("original", "swapped")


@dataclass(frozen=True, order=True)
class Branch:
    """One (response, image, context) combination, e.g. ``chosen@corrupted`` or ``chosen@negative[2]``.

    ``k`` indexes the negative image and must be 0 for every other image source.
    """

    response: Response = "chosen"
    image: ImageSource = "original"
    k: int = 0
    context: ContextSource = "original"

    def __post_init__(self) -> None:
        if self.response not in RESPONSES:
            raise ValueError(f"Branch.response={self.response!r}; allowed: {RESPONSES}")
        if self.image not in IMAGE_SOURCES:
            raise ValueError(f"Branch.image={self.image!r}; allowed: {IMAGE_SOURCES}")
        if self.context not in CONTEXT_SOURCES:
            raise ValueError(f"Branch.context={self.context!r}; allowed: {CONTEXT_SOURCES}")
        if self.k < 0 or (self.k and self.image != "negative"):
            raise ValueError(f"Branch.k={self.k} is only valid (>= 0) for image='negative'")

    def __str__(self) -> str:
        image = f"negative[{self.k}]" if self.image == "negative" else self.image
        context = "+swapped_context" if self.context == "swapped" else ""
        return f"{self.response}@{image}{context}"


CHOSEN = Branch("chosen")
REJECTED = Branch("rejected")
CHOSEN_CORRUPTED = Branch("chosen", "corrupted")

LogProbs = dict[Branch, Tensor]
"""Per-branch sequence log-probs, each a float32 tensor of shape [batch]."""
