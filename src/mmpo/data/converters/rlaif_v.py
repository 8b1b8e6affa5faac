"""RLAIF-V (HF ``openbmb/RLAIF-V-Dataset``): parquet shards with the image bytes inside.

Schema (the data set card ``README.md`` of ``openbmb/RLAIF-V-Dataset``, "Data fields"): ``ds_name``,
``image`` (HF ``Image``: ``{"bytes", "path"}``), ``question``, ``chosen``, ``rejected``,
``origin_dataset``, ``origin_split`` (generator and labeller models, question type), ``idx``,
``image_path``. ms-swift reads it the same way (``swift/dataset/dataset/mllm.py``: question -> query,
chosen -> response, rejected -> rejected_response). ``--input`` may be one shard or the folder of
``RLAIF-V-Dataset_*.parquet`` shards.

    python scripts/convert.py --format rlaif_v --input RLAIF-V-Dataset/ --output data/rlaif_v
"""

from __future__ import annotations

from mmpo.data.converters.base import Draft, Options, image_list, strip_placeholders, text

META_KEYS = ("ds_name", "origin_dataset", "origin_split", "idx", "image_path")


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    images = image_list(row, "image")
    return [
        Draft(
            id=f"rlaif_v-{index:06d}",
            images=images,
            image_field="image",
            prompt=strip_placeholders(text(row, "question"), len(images), "question", required=False),
            chosen=text(row, "chosen"),
            rejected=[text(row, "rejected")],
            meta={"source": "rlaif_v", **{k: row[k] for k in META_KEYS if row.get(k) is not None}},
        )
    ]
