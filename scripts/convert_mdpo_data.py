"""Convert the mDPO preference data (HF ``fwnlp/mDPO-preference-data``) to mmpo records.

Input: the data set's JSON list of ``{"img_path", "prompt", "chosen", "rejected"}`` whose ``prompt`` is already
templated (``"... USER: <image>\\n{question} ASSISTANT:"``, methods.md §1.3). The question is taken out of
the template, since mmpo applies each model's own chat template.

    python scripts/convert_mdpo_data.py vlfeedback_llava_10k.json --image-root images/ --out data/mdpo
    # writes data/mdpo/train.jsonl and data/mdpo/val.jsonl (a held-out share, --val-size)
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

TEMPLATE = re.compile(r"USER:\s*(?:<image>\s*)?(?P<question>.*?)\s*ASSISTANT:\s*$", re.DOTALL)


def question_of(prompt: str) -> str:
    """The user question inside an mDPO-templated prompt (the prompt itself if it has no template)."""
    match = TEMPLATE.search(prompt)
    text = match.group("question") if match else prompt
    return text.replace("<image>", "").strip()


def convert(rows: list[dict], image_root: Path) -> list[dict]:
    records = []
    for index, row in enumerate(rows):
        missing = [k for k in ("img_path", "prompt", "chosen", "rejected") if not row.get(k)]
        if missing:
            raise ValueError(f"row {index}: missing fields {missing}")
        records.append(
            {
                "id": f"mdpo-{index:05d}",
                "images": [str((image_root / row["img_path"]).resolve())],
                "prompt": question_of(row["prompt"]),
                "chosen": row["chosen"].strip(),
                "rejected": row["rejected"].strip(),
                "meta": {"source": "mDPO", "img_path": row["img_path"]},
            }
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--image-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--val-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    records = convert(json.loads(args.input.read_text()), args.image_root)
    random.Random(args.seed).shuffle(records)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("val", records[: args.val_size]), ("train", records[args.val_size :])):
        with open(args.out / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
        print(f"{args.out / name}.jsonl: {len(part)} records")


if __name__ == "__main__":
    main()
