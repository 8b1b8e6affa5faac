"""TRL's preference schema, both ways: import rows and export records for ``DPOTrainer``.

Schema (huggingface/trl ``docs/source/dataset_formats.md``, "Preference" and "Vision datasets"):
``{"prompt": ..., "chosen": ..., "rejected": ...}`` in the *standard* form (strings) or the
*conversational* form (``prompt`` a list of ``{"role", "content"}`` messages, ``chosen``/``rejected`` a
list with one assistant message), or with an *implicit* prompt (``chosen``/``rejected`` hold the whole
conversation). A vision data set adds ``images`` (the image data; TRL also reads a single ``image``) and
writes message content as parts ``[{"type": "image"}, {"type": "text", "text": ...}]``: the image parts
are counted against the images.

The export writes the conversational vision form (``{"type": "image"}`` parts first), one row per
rejected response; negative images have no place in TRL and are dropped (counted in the report).

    python scripts/convert.py --format trl --input rlaif-v-trl/ --output data/from_trl
    python scripts/convert.py --export trl --input data/mdpo/train.jsonl --output data/mdpo_trl --to arrow
"""

from __future__ import annotations

from typing import Any

from mmpo.data.converters.base import BadRow, Draft, Options, image_list, strip_placeholders
from mmpo.data.converters.exchange import carried_id, carried_meta, user_text
from mmpo.data.converters.messages import Content, answer, single_turn

NAME = "trl"


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    images = image_list(row, "images" if row.get("images") is not None else "image", required=False)
    if row.get("prompt") is not None:
        if isinstance(row["prompt"], str):
            system, user = None, Content(row["prompt"].strip())
        else:
            turn = single_turn(row["prompt"], "prompt", answered=False)
            system, user = turn.system, turn.user
        chosen, rejected = answer(row.get("chosen"), "chosen"), answer(row.get("rejected"), "rejected")
    else:  # implicit prompt: both columns hold the whole exchange
        with_chosen = single_turn(row.get("chosen"), "chosen", answered=True)
        with_rejected = single_turn(row.get("rejected"), "rejected", answered=True)
        if (with_rejected.system, with_rejected.user) != (with_chosen.system, with_chosen.user):
            raise BadRow("rejected", "its prompt differs from the one in 'chosen'")
        system, user = with_chosen.system, with_chosen.user
        chosen, rejected = with_chosen.assistant.text, with_rejected.assistant.text
    if user.image_parts and user.image_parts != len(images):
        raise BadRow("prompt", f"has {user.image_parts} image part(s) for {len(images)} image(s)")
    return [
        Draft(
            id=carried_id(row, NAME, index),
            images=images,
            prompt=strip_placeholders(user.text, len(images), "prompt", required=False),
            chosen=chosen,
            rejected=[rejected],
            meta=carried_meta(row, NAME, system),
        )
    ]


def _message(role: str, text: str, num_images: int = 0) -> dict[str, Any]:
    # every part has the same keys, so that arrow stores the parts as one struct type
    parts = [{"type": "image", "text": None}] * num_images + [{"type": "text", "text": text}]
    return {"role": role, "content": parts}


def export_rows(record, images: list[Any]) -> list[dict[str, Any]]:
    """TRL rows of one canonical record (``images``: the values to write in the ``images`` column)."""
    rejected = record.rejected
    if not rejected:
        raise BadRow("rejected", "TRL's schema needs a rejected response; this record prefers only by image")
    prompt = [_message("user", user_text(record.prompt, record.context), len(images))]
    return [
        {
            "id": record.id,
            "prompt": prompt,
            "chosen": [_message("assistant", record.chosen)],
            "rejected": [_message("assistant", response)],
            "images": images,
            "meta": record.meta,
        }
        for response in rejected
    ]
