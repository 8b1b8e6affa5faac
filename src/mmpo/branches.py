"""Branches: the (response, image, context) combinations a loss scores.

A loss is a function of sequence log-probs ``log pi(response | image, text)`` for a few combinations of
response, image and context. One combination is a :class:`Branch`:

- ``response``: ``chosen`` or ``rejected``; ``rejected[j]`` is the record's j-th rejected response
  (most preferred first), for listwise losses and records with ranked responses;
- ``image``: the record's own image(s) (``original``), its k-th negative image (``negative[k]``, built by the
  ``negative_sampler``: a crop, noise, another image, ...), or ``none``;
- ``context``: the record's own context text or another record's (``swapped``, MCM-DPO).

Each loss declares the branches it needs; the data pipeline builds exactly those rows and the forward engine
returns a :data:`LogProbs` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

Response = Literal["chosen", "rejected"]
ImageSource = Literal["original", "negative", "none"]
ContextSource = Literal["original", "swapped"]

RESPONSES: tuple[str, ...] = ("chosen", "rejected")
IMAGE_SOURCES: tuple[str, ...] = ("original", "negative", "none")
CONTEXT_SOURCES: tuple[str, ...] = ("original", "swapped")


@dataclass(frozen=True, order=True)
class Branch:
    """One (response, image, context) combination, e.g. ``chosen@negative[2]`` or ``rejected[1]@original``.

    ``k`` indexes the negative image (only with ``image="negative"``), ``j`` the rejected response (only with
    ``response="rejected"``).
    """

    response: Response = "chosen"
    image: ImageSource = "original"
    k: int = 0
    context: ContextSource = "original"
    j: int = 0

    def __post_init__(self) -> None:
        if self.response not in RESPONSES:
            raise ValueError(f"Branch.response={self.response!r}; allowed: {RESPONSES}")
        if self.image not in IMAGE_SOURCES:
            raise ValueError(f"Branch.image={self.image!r}; allowed: {IMAGE_SOURCES}")
        if self.context not in CONTEXT_SOURCES:
            raise ValueError(f"Branch.context={self.context!r}; allowed: {CONTEXT_SOURCES}")
        if self.k < 0 or (self.k and self.image != "negative"):
            raise ValueError(f"Branch.k={self.k} is only valid (>= 0) for image='negative'")
        if self.j < 0 or (self.j and self.response != "rejected"):
            raise ValueError(f"Branch.j={self.j} is only valid (>= 0) for response='rejected'")

    def __str__(self) -> str:
        response = f"rejected[{self.j}]" if self.j else self.response
        image = f"negative[{self.k}]" if self.image == "negative" else self.image
        context = "+swapped_context" if self.context == "swapped" else ""
        return f"{response}@{image}{context}"


CHOSEN = Branch("chosen")
REJECTED = Branch("rejected")
CHOSEN_NEGATIVE = Branch("chosen", "negative")
"""The chosen response under the record's first negative image (mDPO's corrupted image m_l)."""

LogProbs = dict[Branch, Tensor]
"""Per-branch sequence log-probs, each a float32 tensor of shape [batch]."""


@dataclass(frozen=True)
class TokenLogProbs:
    """Per-token log-probs of one branch's responses, for losses with token-level terms.

    Rows are the batch's records; response token ``t`` of a record sits at column ``t`` (left aligned), the
    rows are right padded to the branch's longest response. ``logps.sum(-1)`` is the branch's sequence
    log-prob; padding holds 0 in ``logps`` and ``ids`` and ``False`` in ``mask``.
    """

    logps: Tensor
    """[batch, T] float32: log pi(y_t | prompt, y_<t) of each response token (eos included)."""
    ids: Tensor
    """[batch, T] the response token ids."""
    mask: Tensor
    """[batch, T] bool: True on response tokens."""
    vocab: Tensor | None = None
    """[batch, T, V] float32 log-softmax over the vocabulary at each response position (only for the
    branches a loss lists in ``Requirements.token_distributions``; 0 on padding)."""


TokenTables = dict[Branch, TokenLogProbs]
"""Per-branch :class:`TokenLogProbs` of the branches a loss asked for."""


def negatives_needed(branches) -> int:
    """How many negative images per record ``branches`` read: 1 + the largest ``k`` (0 without any)."""
    return max((b.k + 1 for b in branches if b.image == "negative"), default=0)


def rejected_needed(branches) -> int:
    """How many rejected responses per record ``branches`` read: 1 + the largest ``j`` (0 without any)."""
    return max((b.j + 1 for b in branches if b.response == "rejected"), default=0)
