"""Build MISP-DPO's candidate pool and SAE for the shapes world (experiment=misp_dpo_shapes), offline.

    python scripts/build_shapes_pool.py --data-dir data            # -> data/pools/shapes (about a minute)

Generates the world under ``<data-dir>/shapes`` if needed (the parameters of ``conf/data/shapes.yaml``),
then :func:`mmpo.retrieval.shapes_pool.build_shapes_pool`: a gallery of its SFT scenes, a tiny CLIP trained
on them, the pool of the training records' top-M candidates and the SAE, all under ``--out`` (default
``<data-dir>/pools/shapes``, where ``experiment=misp_dpo_shapes`` reads them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mmpo.data import shapes
from mmpo.retrieval.shapes_pool import build_shapes_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="paths.data_dir of the runs")
    parser.add_argument("--out", type=Path, help="default: <data-dir>/pools/shapes")
    parser.add_argument("--num-scenes", type=int, default=400, help="data.shapes.num_scenes")
    parser.add_argument("--world-seed", type=int, default=0, help="data.shapes.seed")
    parser.add_argument("--image-size", type=int, default=64, help="data.shapes.image_size")
    parser.add_argument("--top-m", type=int, default=32, help="candidates per record")
    parser.add_argument("--clip-epochs", type=int, default=30)
    parser.add_argument("--sae-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the CLIP and SAE training")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    out = args.out or args.data_dir / "pools" / "shapes"
    started = time.time()
    world = shapes.generate(
        args.data_dir / "shapes", num_scenes=args.num_scenes, seed=args.world_seed, image_size=args.image_size
    )
    pool = build_shapes_pool(
        world,
        out,
        top_m=args.top_m,
        clip_epochs=args.clip_epochs,
        sae_epochs=args.sae_epochs,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(
        f"pool {out}: {len(pool.image_paths)} gallery images, {len(pool.record_ids)} records x "
        f"top-{pool.manifest['top_m']}, SAE {out / 'sae' / 'sae.pt'}; {time.time() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
