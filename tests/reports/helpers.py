"""Result documents as evaluate.py writes them, built by hand around solid-colour images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

RED, BLUE, GREEN = (230, 20, 20), (20, 40, 230), (20, 170, 40)


def solid_image(path: Path, colour: tuple[int, int, int], size: int = 64) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return str(path)


def document(
    records: list[dict[str, Any]], benchmark: str = "shapes_chair", **changes: Any
) -> dict[str, Any]:
    """A result document holding ``records``; ``changes`` replace its top-level parts."""
    base = {
        "benchmark": benchmark,
        "metrics": {"CHAIRs": 0.5, "CHAIRi": 0.25, "recall": float("nan")},
        "config": {"_target_": "mmpo.benchmarks.shapes.ShapesCHAIR", "path": "/data/shapes", "limit": None},
        "model": {
            "run": "/runs/dpo/0",
            "weights": "adapter",
            "merged": False,
            "fingerprint": {"id": "f" * 32},
        },
        "decoding": {"max_new_tokens": 8, "num_beams": 1, "do_sample": False},
        "data": {"root": "/data/shapes", "files": {"test.jsonl": "a" * 64}},
        "judge": None,
        "num_items": len(records),
        "seconds": 1.0,
        "records": records,
    }
    return {**base, **changes}


def chair_record(
    item_id: str, image: str | None, output: str, hallucinated: list[str], truth: list[str]
) -> dict:
    """A shapes_chair record (:func:`mmpo.benchmarks.chair.chair_metrics` details) for ``output``."""
    return {
        "id": item_id,
        "prompt": "Describe the image.",
        "output": output,
        "image": image,
        "mentions": [[name, name] for name in [*truth, *hallucinated]],
        "hallucinated": [[name, name] for name in hallucinated],
        "gt_objects": truth,
        "chair_s": float(bool(hallucinated)),
        "chair_i": 0.0,
    }
