"""Export a trained run for the standard toolkits: a merged Hugging Face model directory, or the adapter.

    python scripts/export_model.py outputs/dpo_llava7b/<time> --merge --out exports/dpo_llava7b
    python scripts/export_model.py outputs/dpo_llava7b/<time> --out exports/dpo_llava7b_adapter

``--merge`` folds the LoRA adapter into the base (peft ``merge_and_unload``) and writes model, processor
and chat template: ``transformers`` loads the directory with no mmpo code, so lmms-eval
(``--model llava_hf`` / ``qwen2_vl``) and VLMEvalKit (``Qwen2VLChat``) evaluate it. Without
``--merge`` the adapter is copied with a pointer to its base (``base_model.yaml``, and
``base_model_name_or_path`` when the base is a local directory). :mod:`mmpo.export` has the details.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mmpo.checkpoint import RunNotFound
from mmpo.export import ExportError, export_run
from mmpo.models.loading import ModelPathError


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run", type=Path, help="run directory written by train.py (or its adapter/ or model/)"
    )
    parser.add_argument("--out", type=Path, required=True, help="new directory to write")
    parser.add_argument("--merge", action="store_true", help="fold the LoRA adapter into the base weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        record = export_run(args.run, args.out, merge=args.merge)
    except (RunNotFound, ExportError, ModelPathError) as error:
        print(f"export_model: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(record, indent=2))
    print(f"-> {args.out}")
    return record


if __name__ == "__main__":
    main()
