"""Build MISP-DPO's candidate pool: CLIP-embed an image gallery and the records, index, retrieve top-M.

    python scripts/build_pool.py --model models/clip-vit-large-patch14 --images data/coco/train2017 \\
        --records data/mdpo/train.jsonl --out data/pools/coco_train2017 --top-m 64

Writes the self-describing directory of :mod:`mmpo.retrieval.pool` (manifest, embeddings, faiss index,
candidates.jsonl). ``--query`` chooses what each record is retrieved against (``image``, the default, is
an inference, see the module docstring); ``--on-error skip`` leaves unreadable images and bad records out
and lists them in the manifest instead of stopping. ``scripts/bench_pool.py`` times the index alone.
"""

from __future__ import annotations

import argparse
import json
import sys

from mmpo.retrieval.clip import ON_ERROR, ClipEmbedder, UnreadableImage
from mmpo.retrieval.pool import QUERIES, build_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local CLIPModel directory (Hugging Face layout)")
    parser.add_argument("--images", required=True, help="directory of pool images (searched recursively)")
    parser.add_argument("--records", required=True, help="records JSONL (README 'Record format')")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--top-m", type=int, default=64, help="candidates per record (default 64)")
    parser.add_argument(
        "--query", choices=QUERIES, default="image", help="what a record is retrieved against"
    )
    parser.add_argument(
        "--include-own", action="store_true", help="keep a record's own image among its candidates"
    )
    parser.add_argument("--index-factory", default="Flat", help="faiss index_factory string (default Flat)")
    parser.add_argument("--search-params", default="", help="faiss search parameters, e.g. nprobe=16")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0, help="image-loading processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--on-error", choices=ON_ERROR, default="raise")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    try:
        embedder = ClipEmbedder.from_path(args.model, args.device)
        pool = build_pool(
            embedder,
            args.model,
            args.images,
            args.records,
            args.out,
            top_m=args.top_m,
            query=args.query,
            exclude_own=not args.include_own,
            index_factory=args.index_factory,
            search_params=args.search_params,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            on_error=args.on_error,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError, UnreadableImage) as error:
        sys.exit(f"build_pool: error: {error}")
    manifest = pool.manifest
    print(
        f"pool {args.out}: {len(pool.image_paths)} images ({len(manifest['skipped_images'])} skipped), "
        f"{len(pool.record_ids)} records ({len(manifest['records']['skipped'])} skipped), "
        f"top-{manifest['top_m']} by {manifest['query']}; seconds: {json.dumps(manifest['timings_s'])}"
    )


if __name__ == "__main__":
    main()
