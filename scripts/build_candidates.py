"""Build MAPLE's offline candidate sets (hard-negative images and texts per anchor), as JSON lines.

    # from (image, caption) records: kNN in a local vision model's space, near-duplicates removed
    python scripts/build_candidates.py data --records data/mine/train.jsonl --kind caption \\
        --vision-model /models/dinov2-base --k 8 --out data/mine/candidates.jsonl
    # from the shapes world: one-attribute variants (colour, shape, position) of every scene
    python scripts/build_candidates.py shapes --world data/shapes --split train --k 8 \\
        --out data/shapes/candidates_train.jsonl

Records are mmpo's canonical records (README): the first image and ``chosen`` (the caption) of each
record with exactly one image (``--kind``: only records whose ``meta.kind`` is that). The method, the
output format and the options' meaning: ``mmpo.embedding.candidates``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mmpo.benchmarks.shapes import ShapesWorld
from mmpo.data.records import RecordError, read_records
from mmpo.embedding import candidates


def pairs_of(records_file: Path, kind: str | None) -> list[candidates.Pair]:
    records = read_records(records_file, require_rejected=0)
    chosen = [r for r in records if len(r.images) == 1 and (kind is None or r.meta.get("kind") == kind)]
    if not chosen:
        raise ValueError(
            f"{records_file}: no record with exactly one image" + (f" and meta.kind={kind!r}" if kind else "")
        )
    return [candidates.Pair(r.id, r.images[0], r.chosen) for r in chosen]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    data = modes.add_parser("data", help="kNN candidates from (image, caption) records")
    data.add_argument("--records", type=Path, required=True, help="JSONL of canonical records")
    data.add_argument("--kind", default=None, help="keep only records with this meta.kind (e.g. caption)")
    data.add_argument("--vision-model", type=Path, required=True, help="local HF vision model dir (DINOv2)")
    data.add_argument(
        "--dedup-threshold", type=float, default=0.95, help="cosine above which images are near-duplicates"
    )
    data.add_argument("--no-dedup", action="store_true", help="keep near-duplicates")
    data.add_argument("--batch-size", type=int, default=32)
    world = modes.add_parser("shapes", help="one-attribute variants of shapes scenes")
    world.add_argument("--world", type=Path, required=True, help="shapes world dir (generated when absent)")
    world.add_argument("--split", default="train")
    world.add_argument("--num-scenes", type=int, default=400)
    world.add_argument("--world-seed", type=int, default=0)
    world.add_argument("--image-size", type=int, default=64)
    world.add_argument("--seed", type=int, default=0, help="seed of the choice among a scene's variants")
    for sub in (data, world):
        sub.add_argument("--k", type=int, default=8, help="candidates per anchor")
        sub.add_argument("--out", type=Path, required=True, help="output JSONL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.mode == "data":
            pairs = pairs_of(args.records, args.kind)
            model, processor = candidates.load_vision_model(args.vision_model)
            images = list(dict.fromkeys(p.image for p in pairs))
            embeddings = candidates.image_embeddings(model, processor, images, args.batch_size)
            threshold = None if args.no_dedup else args.dedup_threshold
            rows = candidates.build_from_pairs(pairs, embeddings, args.k, threshold)
        else:
            shapes_world = ShapesWorld(args.world, args.num_scenes, args.world_seed, args.image_size)
            scenes = [(held.scene, held.image) for held in shapes_world.scenes(args.split)]
            rows = candidates.build_from_shapes(scenes, args.out.parent, args.k, args.seed, args.image_size)
    except (FileNotFoundError, RecordError, ValueError) as error:
        sys.exit(f"build_candidates: {error}")
    candidates.write_rows(rows, args.out)
    logging.info("wrote %d candidate sets to %s", len(rows), args.out)


if __name__ == "__main__":
    main()
