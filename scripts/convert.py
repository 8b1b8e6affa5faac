"""Convert a public multimodal preference set to mmpo records, or export records to TRL / ms-swift.

    python scripts/convert.py --format rlaif_v --input RLAIF-V-Dataset/ --output data/rlaif_v
    python scripts/convert.py --export swift --input data/rlaif_v/train.jsonl --output data/rlaif_v_swift

The README section "Converting data" has one example per format; each converter's module docstring
(``src/mmpo/data/converters/<format>.py``) cites the file that defines its public schema.
"""

from __future__ import annotations

import argparse
import sys

from mmpo.data.converters import EXPORTS, FORMATS, ConvertError, convert, export
from mmpo.data.converters.images import IMAGE_MODES
from mmpo.data.converters.pipeline import ON_ERROR
from mmpo.data.converters.sources import SourceError
from mmpo.data.converters.vlfeedback import PAIR_RULES
from mmpo.data.converters.writers import OUTPUTS
from mmpo.data.records import RecordError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--format", choices=list(FORMATS), help="convert this public format to mmpo records")
    what.add_argument("--export", choices=list(EXPORTS), help="export mmpo records (a .jsonl) to this schema")
    parser.add_argument(
        "--input",
        required=True,
        help="file (.json, .jsonl, .parquet) or folder (parquet shards, save_to_disk)",
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--images",
        choices=IMAGE_MODES,
        help="copy (default for --format), reference (default for --export) or embed",
    )
    parser.add_argument(
        "--to", choices=OUTPUTS, default="jsonl", help="JSONL files or datasets folders (save_to_disk)"
    )
    parser.add_argument(
        "--on-error", choices=ON_ERROR, default="raise", help="stop at a bad row, or skip and report it"
    )
    parser.add_argument(
        "--image-root", help="folder that relative image paths start at (default: the input's folder)"
    )
    parser.add_argument(
        "--pairs", choices=PAIR_RULES, default="all", help="vlfeedback: how ratings become pairs"
    )
    parser.add_argument("--margin", type=float, default=0.0, help="vlfeedback: minimum score gap of a pair")
    parser.add_argument(
        "--val-size", type=int, default=0, help="hold out this many records as val (seeded shuffle)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.format:
            report = convert(args.format, args.input, args.output, args.images or "copy", args.to, args.on_error,
                             args.image_root, args.pairs, args.margin, args.val_size, args.seed)  # fmt: skip
        else:
            report = export(
                args.export, args.input, args.output, args.images or "reference", args.to, args.on_error
            )
    except (ConvertError, SourceError, RecordError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    written = ", ".join(f"{name}: {count}" for name, count in report.records.items())
    print(
        f"{args.output}: {written} (rows read {report.rows_read}, skipped {len(report.skipped)}; see convert_report.json)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
