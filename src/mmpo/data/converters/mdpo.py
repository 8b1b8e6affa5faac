"""The mDPO preference data (HF ``fwnlp/mDPO-preference-data``, 10K pairs drawn from VLFeedback).

Schema (methods.md §1.3, from luka-group/mDPO ``data/sample_data.json``): a JSON list of
``{"img_path": str, "prompt": str, "chosen": str, "rejected": str}`` whose ``prompt`` is already templated,
``"<system> USER: <image>\\n{question} ASSISTANT:"``. The question is taken out of the template (mmpo
applies each model's own chat template); the one ``<image>`` placeholder is counted against the image.

    python scripts/convert.py --format mdpo --input vlfeedback_llava_10k.json --image-root images/ --output data/mdpo
"""

from __future__ import annotations

import re

from mmpo.data.converters.base import Draft, Options, image_list, strip_placeholders, text

TEMPLATE = re.compile(r"USER:\s*(?P<question>.*?)\s*ASSISTANT:\s*$", re.DOTALL)


def question_of(prompt: str) -> str:
    """The user turn inside an mDPO-templated prompt (the prompt itself if it has no template)."""
    match = TEMPLATE.search(prompt)
    return match.group("question") if match else prompt


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    images = image_list(row, "img_path")
    return [
        Draft(
            id=f"mdpo-{index:06d}",
            images=images,
            image_field="img_path",
            prompt=strip_placeholders(question_of(text(row, "prompt")), len(images), "prompt", required=True),
            chosen=text(row, "chosen"),
            rejected=[text(row, "rejected")],
            meta={"source": "mdpo", "img_path": row["img_path"]},
        )
    ]
