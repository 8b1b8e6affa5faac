"""Inspect a file of mmpo records: counts, token lengths, the share a max length would cut, a contact sheet.

    python scripts/inspect_data.py --input data/rlaif_v/train.jsonl --output outputs/inspect/rlaif_v \
        [--processor /models/llava-1.5-7b-hf --family llava] [--max-length 2048] [--limit 2000] [--sheet 6]

Lengths are measured the way training builds its rows: the prompt (with context, chat template and the
expanded image placeholder tokens) is the prompt of the collator's chosen row, and each response is
``separator + response + eos`` tokens. A record is cut by ``--max-length`` when its prompt and its longest
response do not fit (``data.truncation`` then deletes or truncates it). Without ``--processor`` the
tiny model of ``--family`` (``mmpo.models.tiny``) tokenizes. Writes ``summary.json``, ``lengths.png``
and ``contact_sheet.png`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mmpo.branches import CHOSEN
from mmpo.data.collator import PreferenceCollator
from mmpo.data.examples import Example
from mmpo.data.records import Record, RecordError, read_records
from mmpo.data.rows import IGNORE_INDEX
from mmpo.images import load_image
from mmpo.models.families import FAMILIES, Family, get_family
from mmpo.models.loading import TINY_BUILDERS, ModelPathError, check_model_dir

PERCENTILES = (50, 90, 99)


def load_processor(path: str | None, family: Family):
    if path is None:
        if family.name not in TINY_BUILDERS:
            raise ValueError(
                f"--family {family.name!r} has no tiny model; give --processor or one of {sorted(TINY_BUILDERS)}"
            )
        return TINY_BUILDERS[family.name]()[1]
    return family.processor_class.from_pretrained(check_model_dir(path, "--processor"))


def measure(records: list[Record], processor, family: Family) -> list[dict]:
    """Per record: prompt tokens (image tokens included), image tokens, chosen and rejected tokens."""
    collator = PreferenceCollator(processor, family, [CHOSEN], max_length=sys.maxsize, truncation="raise")
    tokenizer = processor.tokenizer
    image_token = family.image_token_id(processor)

    def response_tokens(text: str) -> int:
        return len(tokenizer(family.response_separator + text, add_special_tokens=False)["input_ids"]) + 1

    lengths = []
    for record in records:
        rows = collator([Example(record, [load_image(p) for p in record.images], [])]).rows[CHOSEN]
        prompt = rows.tensors["input_ids"][0][rows.labels[0] == IGNORE_INDEX]
        lengths.append(
            {
                "prompt": len(prompt),
                "image": int((prompt == image_token).sum()),
                "chosen": response_tokens(record.chosen),
                "rejected": [response_tokens(r) for r in record.rejected],
            }
        )
    return lengths


def stats(values: list[int]) -> dict:
    if not values:
        return {}
    array = np.asarray(values)
    return {
        "min": int(array.min()),
        "mean": float(array.mean()),
        **{f"p{q}": float(np.percentile(array, q)) for q in PERCENTILES},
        "max": int(array.max()),
    }


def summarize(records: list[Record], lengths: list[dict], max_length: int) -> dict:
    longest = [m["prompt"] + max([m["chosen"], *m["rejected"]]) for m in lengths]
    cut = [total > max_length for total in longest]
    return {
        "records": len(records),
        "images_per_record": dict(sorted(Counter(len(r.images) for r in records).items())),
        "rejected_per_record": dict(sorted(Counter(len(r.rejected) for r in records).items())),
        "with_context": sum(r.context is not None for r in records),
        "with_negative_images": sum(bool(r.negative_images) for r in records),
        "tokens": {
            "prompt": stats([m["prompt"] for m in lengths]),
            "image": stats([m["image"] for m in lengths]),
            "chosen": stats([m["chosen"] for m in lengths]),
            "rejected": stats([n for m in lengths for n in m["rejected"]]),
            "longest_sequence": stats(longest),
        },
        "max_length": max_length,
        "cut": {
            "count": sum(cut),
            "share": sum(cut) / len(records) if records else 0.0,
            "prompt_alone_too_long": sum(m["prompt"] >= max_length for m in lengths),
            "ids": [r.id for r, c in zip(records, cut, strict=True) if c][:20],
        },
    }


def plot_lengths(lengths: list[dict], max_length: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {
        "prompt (incl. image tokens)": [m["prompt"] for m in lengths],
        "image tokens": [m["image"] for m in lengths],
        "chosen": [m["chosen"] for m in lengths],
        "rejected": [n for m in lengths for n in m["rejected"]],
        "prompt + longest response": [m["prompt"] + max([m["chosen"], *m["rejected"]]) for m in lengths],
    }
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (title, values) in zip(axes, panels.items(), strict=True):
        ax.hist(values, bins=30, color="tab:blue")
        ax.set_title(title)
        ax.set_xlabel("tokens")
        if title.startswith("prompt +"):
            ax.axvline(max_length, color="tab:red", linestyle="--", label=f"--max-length {max_length}")
            ax.legend()
    axes[0].set_ylabel("records")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def strip_of(paths: list[str], height: int = 160) -> Image.Image:
    """The record's images side by side, scaled to one height (a grey tile for a text-only record)."""
    images = [load_image(p) for p in paths] or [Image.new("RGB", (height, height), (200, 200, 200))]
    images = [im.resize((max(1, im.width * height // im.height), height)) for im in images]
    images = [ImageOps.expand(im, border=1, fill=(90, 90, 90)) for im in images]
    strip = Image.new("RGB", (sum(im.width for im in images) + 4 * (len(images) - 1), height + 2), "white")
    x = 0
    for image in images:
        strip.paste(image, (x, 0))
        x += image.width + 4
    return strip


def contact_sheet(records: list[Record], path: Path, width: int = 90) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(records), 2, figsize=(14, 2.8 * len(records)), squeeze=False,
                                gridspec_kw={"width_ratios": [1, 2.2]})  # fmt: skip
    for (image_ax, text_ax), record in zip(axes, records, strict=True):
        image_ax.imshow(strip_of(record.images))
        image_ax.set_title(record.id, fontsize=9)
        parts = [("prompt", record.prompt), ("context", record.context), ("chosen", record.chosen)]
        parts += [(f"rejected {k + 1}", r) for k, r in enumerate(record.rejected)]
        lines = [textwrap.shorten(f"{name}: {value}", width * 3) for name, value in parts if value]
        text_ax.text(
            0,
            1,
            "\n".join(textwrap.fill(line, width) for line in lines),
            va="top",
            fontsize=9,
            family="monospace",
        )
        for ax in (image_ax, text_ax):
            ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="a JSONL file of mmpo records")
    parser.add_argument(
        "--output", required=True, help="folder for summary.json, lengths.png, contact_sheet.png"
    )
    parser.add_argument(
        "--processor", help="local model folder whose processor tokenizes (default: the tiny model)"
    )
    parser.add_argument(
        "--family", default="llava", choices=sorted(FAMILIES), help="model family (image tokens, template)"
    )
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--limit", type=int, help="measure only the first N records")
    parser.add_argument("--sheet", type=int, default=6, help="records on the contact sheet")
    args = parser.parse_args(argv)
    try:
        records = read_records(args.input, require_rejected=0)[: args.limit]
        family = get_family(args.family)
        processor = load_processor(args.processor, family)
    except (RecordError, ModelPathError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: {args.input} holds no record", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    lengths = measure(records, processor, family)
    summary = {"input": args.input, "processor": args.processor or f"tiny {args.family}", "family": args.family,
               **summarize(records, lengths, args.max_length)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_lengths(lengths, args.max_length, out / "lengths.png")
    contact_sheet(records[: args.sheet], out / "contact_sheet.png")
    cut = summary["cut"]
    print(
        f"{len(records)} records; {cut['count']} ({cut['share']:.1%}) longer than --max-length {args.max_length}; see {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
