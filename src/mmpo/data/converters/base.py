"""What every converter shares: the draft record, bad-row errors, field getters, image placeholders.

A converter turns one row of its public format into zero or more :class:`Draft` records (a row of
VLFeedback gives several pairs); the pipeline resolves their images, merges drafts that share an id
and writes the canonical records (README "Record format").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

IMAGE_PLACEHOLDER = "<image>"


class BadRow(ValueError):
    """A source row that cannot become a record; ``field`` names the offending source field."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class Options:
    """Conversion options a converter may read: how rated completions become pairs
    (VLFeedback; see :mod:`mmpo.data.converters.vlfeedback`)."""

    pairs: str = "all"
    margin: float = 0.0


@dataclass
class Draft:
    """A record before its images are resolved; images are source values (path, bytes or {bytes, path})."""

    id: str
    prompt: str
    chosen: str
    rejected: list[str]
    images: list[Any] = field(default_factory=list)
    context: str | None = None
    negative_images: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    image_field: str = "images"
    """The source field the images came from (for error messages)."""
    negative_field: str = "negative_images"


def text(row: dict, key: str) -> str:
    """The non-empty string ``row[key]``, stripped; a :class:`BadRow` naming ``key`` otherwise."""
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def image_list(row: dict, key: str, required: bool = True) -> list[Any]:
    """``row[key]`` as a list of image values (a single value becomes a one-element list)."""
    value = row.get(key)
    if value is None or value == []:
        if required:
            raise BadRow(key, "no image given")
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def strip_placeholders(prompt: str, num_images: int, field_name: str, required: bool) -> str:
    """The prompt without ``<image>`` placeholders, after counting them against the row's images.

    ``required``: the format puts one placeholder per image in the text (LLaVA-style data, ms-swift,
    LLaMA-Factory), so the count must equal ``num_images``. Otherwise placeholders are optional: none,
    or exactly one per image.
    """
    count = prompt.count(IMAGE_PLACEHOLDER)
    if count != num_images and (required or count != 0):
        expected = f"{num_images}" if required else f"0 or {num_images}"
        raise BadRow(
            field_name,
            f"has {count} {IMAGE_PLACEHOLDER} placeholder(s) for {num_images} image(s) (expected {expected})",
        )
    stripped = re.sub(r"\s*" + re.escape(IMAGE_PLACEHOLDER) + r"\s*", " ", prompt).strip()
    if not stripped:
        raise BadRow(field_name, "is empty once the image placeholders are removed")
    return stripped
