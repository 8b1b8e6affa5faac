"""LLaMA-Factory's ShareGPT preference format (``ranking: true``, ``formatting: sharegpt``).

Schema (hiyouga/LLaMA-Factory ``data/README.md``, "Sharegpt Format" -> "Preference Dataset" and
"Multimodal Image Dataset"): ``{"conversations": [{"from": "human", "value": "<image>..."}],
"chosen": {"from": "gpt", "value": ...}, "rejected": {"from": "gpt", "value": ...}, "images": [paths],
"system": str}``; the OpenAI variant uses ``messages`` with ``role``/``content``. The number of images
must equal the ``<image>`` tokens in the conversation. Paths are relative to the data folder
(``--image-root``, default: the input file's folder).

    python scripts/convert.py --format llamafactory --input dpo_mllm.json --output data/from_lf
"""

from __future__ import annotations

from mmpo.data.converters.base import Draft, Options, image_list, strip_placeholders
from mmpo.data.converters.messages import answer, single_turn


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    key = "conversations" if row.get("conversations") is not None else "messages"
    turn = single_turn(row.get(key), key, answered=False)
    images = image_list(row, "images", required=False)
    system = row.get("system") or turn.system
    return [
        Draft(
            id=f"llamafactory-{index:06d}",
            images=images,
            prompt=strip_placeholders(turn.user.text, len(images), key, required=True),
            chosen=answer(row.get("chosen"), "chosen"),
            rejected=[answer(row.get("rejected"), "rejected")],
            meta={"source": "llamafactory", **({"system": system} if system else {})},
        )
    ]
