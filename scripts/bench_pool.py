"""Time the candidate pool's faiss index on a synthetic pool (build, query, recall against exact search).

    OMP_NUM_THREADS=2 python scripts/bench_pool.py --size 120000 --dim 768 --queries 10000 --top-m 64

The pool is ``--size`` random unit vectors of dimension ``--dim`` (COCO train2017 is 118k images; CLIP
ViT-L/14 embeds in 768 dimensions); each query is a pool vector plus Gaussian noise of norm ~0.5,
renormalised, so every query has true near neighbours as an image query does. Each ``--factories``
entry is a faiss ``index_factory`` string with optional ``|search_params`` (e.g. ``IVF1024,Flat|nprobe=16``);
an index is built once per factory string. Reports the build time (train + add), the time of all queries
at depth ``--top-m``, each as wall-clock and process CPU seconds (CPU seconds do not grow when other jobs
share the machine), and recall@M against exact search (``Flat``, always first). Uses the same
:func:`mmpo.retrieval.pool.build_index` and :func:`~mmpo.retrieval.pool.search` as
``scripts/build_pool.py``.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from mmpo.retrieval.pool import build_index, search, set_search_params


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Clock:
    """Wall-clock and process CPU seconds of a ``with`` block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} ({self.cpu:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=120_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--top-m", type=int, default=64)
    parser.add_argument(
        "--factories", nargs="*", default=["IVF1024,Flat|nprobe=16", "IVF1024,Flat|nprobe=64"]
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pool = unit(rng.standard_normal((args.size, args.dim), dtype=np.float32))
    picks = rng.integers(0, args.size, args.queries)
    noise = rng.standard_normal((args.queries, args.dim), dtype=np.float32) * (0.5 / np.sqrt(args.dim))
    queries = unit(pool[picks] + noise)
    print(
        f"pool {args.size} x {args.dim}, {args.queries} queries, top-{args.top_m}, {faiss.omp_get_max_threads()} threads"
    )
    print("| index | search params | build s (CPU s) | query s (CPU s) | queries/s | recall@M |")
    print("|---|---|---|---|---|---|")
    exact, built = None, {}
    for spec in ["Flat", *args.factories]:
        factory, _, params = spec.partition("|")
        if factory not in built:
            with Clock() as build_clock:
                built[factory] = build_index(pool, factory)
        set_search_params(built[factory], params)
        with Clock() as query_clock:
            _, ids = search(built[factory], queries, args.top_m, progress=False)
        exact = ids if exact is None else exact
        recall = np.mean([len(set(a) & set(b)) / args.top_m for a, b in zip(ids, exact, strict=True)])
        print(
            f"| {factory} | {params or '-'} | {build_clock} | {query_clock} | "
            f"{args.queries / query_clock.wall:.0f} | {recall:.3f} |"
        )


if __name__ == "__main__":
    main()
