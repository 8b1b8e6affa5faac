"""MCM-DPO alt-text preference records (LVUGAI/MCM-DPO): context-conditioned alt-text pairs.

Schema (methods.md §2.5; LVUGAI/MCM-DPO ``data/twitter/twitter_train.json``,
``data/pinterest/pinterest_train.json``): a JSON list (or parquet) of ``{"ds_name", "idx",
"image": {"path": str} | {"bytes": ...}, "image_path", "text": "<JSON of {question, chosen, rejected}>",
"origin_dataset", "origin_split"}``; Pinterest records also carry top-level ``question``/``chosen``/
``rejected``. The question reads ``"Given an image and context, generate alt-text for the
image.Context:\\n<post text>"``: the instruction before ``Context:`` becomes the prompt and the post text
after it the record's ``context``. Image paths are relative to the image folder (``--image-root``).

    python scripts/convert.py --format mcm_dpo --input twitter_train.json --image-root image/twitter_train --output data/talt
"""

from __future__ import annotations

import json

from mmpo.data.converters.base import BadRow, Draft, Options, image_list, strip_placeholders, text

CONTEXT_MARKER = "Context:"
META_KEYS = ("ds_name", "idx", "origin_dataset", "origin_split", "image_path")


def fields(row: dict) -> dict:
    """question / chosen / rejected: from the JSON-encoded ``text`` field, else the top-level keys."""
    if row.get("text") is None:
        return row
    try:
        value = json.loads(row["text"]) if isinstance(row["text"], str) else None
    except json.JSONDecodeError as error:
        raise BadRow("text", f"is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadRow("text", "must be a JSON object with question, chosen and rejected")
    return value


def split_context(question: str) -> tuple[str, str | None]:
    """(instruction, context) around the first ``Context:``; no marker means no context."""
    instruction, marker, context = question.partition(CONTEXT_MARKER)
    return instruction.strip(), (context.strip() or None) if marker else None


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    image_field = "image" if row.get("image") is not None else "image_path"
    images = image_list(row, image_field)
    data = fields(row)
    prompt, context = split_context(text(data, "question"))
    return [
        Draft(
            id=f"mcm_dpo-{index:06d}",
            images=images,
            image_field=image_field,
            prompt=strip_placeholders(prompt, len(images), "question", required=False),
            context=context,
            chosen=text(data, "chosen"),
            rejected=[text(data, "rejected")],
            meta={"source": "mcm_dpo", **{k: row[k] for k in META_KEYS if row.get(k) is not None}},
        )
    ]
