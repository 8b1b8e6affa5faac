"""POVID (HF ``YiyangAiLab/POVID_preference_data_for_VLLMs``): LLaVA conversations, preferred and not.

Schema (YiyangZhou/POVID ``README.md``, "Prepare data", and the reader ``llava/train/train_dpo.py``): a
JSON list of ``{"id": str, "image": str, "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": ...}], "rejected_conversations": [...same human turn..., {"from": "gpt", ...}]}``;
``image`` is joined to the image folder (``--image-root``). Both conversations must share the human turn.
The ``id`` is the COCO image name, not unique per row, so records are numbered and keep it in ``meta``.

    python scripts/convert.py --format povid --input POVID_preference_data_for_VLLMs.json --image-root coco/train2014 --output data/povid
"""

from __future__ import annotations

from mmpo.data.converters.base import BadRow, Draft, Options, image_list, strip_placeholders
from mmpo.data.converters.messages import single_turn


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    images = image_list(row, "image")
    chosen = single_turn(row.get("conversations"), "conversations", answered=True)
    rejected = single_turn(row.get("rejected_conversations"), "rejected_conversations", answered=True)
    if rejected.user.text != chosen.user.text:
        raise BadRow("rejected_conversations", "its human turn differs from the one in 'conversations'")
    return [
        Draft(
            id=f"povid-{index:06d}",
            images=images,
            image_field="image",
            prompt=strip_placeholders(chosen.user.text, len(images), "conversations", required=True),
            chosen=chosen.assistant.text,
            rejected=[rejected.assistant.text],
            meta={"source": "povid", "source_id": row.get("id"), "image": row.get("image")},
        )
    ]
