"""ms-swift's RLHF schema, both ways: import rows and export records for ``swift rlhf``.

Schema (modelscope/ms-swift ``docs/source_en/Customization/Custom-dataset.md``, "RLHF", and
``swift/template/template_inputs.py``): ``{"messages": [[system], user, assistant], "images": [paths],
"rejected_response": str | [one assistant message], "rejected_images": [paths],
"rejected_messages": [...]}``; the user turn carries one ``<image>`` tag per image. A row needs
``rejected_response``, ``rejected_messages`` or ``rejected_images``; ``rejected_images`` defaults to
``images``. ``rejected_images`` that differ from ``images`` are images under which the answer is not
preferred: they become the record's ``negative_images``. A row with rejected images but no other
rejected text has no ``rejected`` (its preference is between images).

The export writes one row per rejected response; ``negative_images`` go to ``rejected_images``, which
ms-swift uses in place of ``images``, so a record needs as many negative images as images.

    python scripts/convert.py --format swift --input rlhf.jsonl --output data/from_swift
    python scripts/convert.py --export swift --input data/mdpo/train.jsonl --output data/mdpo_swift --images reference
"""

from __future__ import annotations

from typing import Any

from mmpo.data.converters.base import (
    IMAGE_PLACEHOLDER,
    BadRow,
    Draft,
    Options,
    image_list,
    strip_placeholders,
)
from mmpo.data.converters.exchange import carried_id, carried_meta, user_text
from mmpo.data.converters.messages import answer, single_turn

NAME = "swift"


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    turn = single_turn(row.get("messages"), "messages", answered=True)
    images = image_list(row, "images", required=False)
    negatives = image_list(row, "rejected_images", required=False)
    if row.get("rejected_messages") is not None:
        other = single_turn(row["rejected_messages"], "rejected_messages", answered=True)
        if other.user.text != turn.user.text:
            raise BadRow("rejected_messages", "its user turn differs from the one in 'messages'")
        rejected = [other.assistant.text] if other.assistant.text != turn.assistant.text else []
    elif row.get("rejected_response") is not None:
        rejected = [answer(row["rejected_response"], "rejected_response")]
    else:
        rejected = []
    negatives = [] if negatives == images else negatives
    if not rejected and not negatives:
        raise BadRow(
            "rejected_response", "a row needs rejected_response, rejected_messages or other rejected_images"
        )
    if negatives and len(negatives) != len(images):
        raise BadRow("rejected_images", f"has {len(negatives)} image(s) for {len(images)} in 'images'")
    return [
        Draft(
            id=carried_id(row, NAME, index),
            images=images,
            prompt=strip_placeholders(turn.user.text, len(images), "messages", required=True),
            chosen=turn.assistant.text,
            rejected=rejected,
            negative_images=negatives,
            negative_field="rejected_images",
            meta=carried_meta(row, NAME, turn.system),
        )
    ]


def export_rows(record, images: list[Any], negative_images: list[Any]) -> list[dict[str, Any]]:
    """ms-swift rows of one canonical record (``images``/``negative_images``: the values to write)."""
    if negative_images and len(negative_images) != len(images):
        raise BadRow(
            "negative_images",
            f"ms-swift's rejected_images replace the {len(images)} image(s) of the rejected branch, "
            f"so they need as many, not {len(negative_images)}",
        )
    base = {
        "id": record.id,
        "messages": [
            {
                "role": "user",
                "content": IMAGE_PLACEHOLDER * len(images) + user_text(record.prompt, record.context),
            },
            {"role": "assistant", "content": record.chosen},
        ],
        "images": images,
        **({"rejected_images": negative_images} if negative_images else {}),
        "meta": record.meta,
    }
    rejected = record.rejected
    return [{**base, "rejected_response": r} for r in rejected] if rejected else [base]
