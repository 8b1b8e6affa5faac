"""Render records with the K negatives selected from their candidates (MISP-DPO Fig. 3, any data set).

    python scripts/show_negatives.py --pool data/pools/coco_train2017 --sae outputs/sae/coco/sae.pt \\
        --out outputs/sae/coco/negatives.png --num-records 4 --k 3 --select greedy

One row per record: its image and prompt, then the K selected negatives, each titled with its score
``s = l / max l + v / max v``, reconstruction error ``l``, latent L1 ``v`` and CLIP similarity ``cos`` to
the record's query (``log q`` too for ``--select importance``). Scores are computed over the record's M
retrieved candidates (:mod:`mmpo.retrieval.selection`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mmpo.retrieval.clip import UnreadableImage, read_image  # noqa: E402
from mmpo.retrieval.pool import CandidatePool  # noqa: E402
from mmpo.retrieval.sae import SparseAutoencoder, score_candidates  # noqa: E402
from mmpo.retrieval.selection import LOG_Q, SELECTORS, combined_scores, select_negatives  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="pool directory written by scripts/build_pool.py")
    parser.add_argument("--sae", required=True, help="sae.pt written by scripts/train_sae.py")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument(
        "--ids", nargs="*", default=None, help="record ids (default: the first --num-records)"
    )
    parser.add_argument("--num-records", type=int, default=4)
    parser.add_argument("--k", type=int, default=3, help="negatives per record (paper: 3)")
    parser.add_argument("--select", choices=SELECTORS, default="greedy")
    parser.add_argument("--diversity-weight", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--log-q", choices=LOG_Q, default="first_draw")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        pool = CandidatePool.load(args.pool)
        sae, meta = SparseAutoencoder.load(args.sae)
        if meta.get("pool_fingerprint") != pool.fingerprint:
            print(f"show_negatives: warning: {args.sae} was trained on another pool ({meta.get('pool_dir')})")
        ids = args.ids or pool.record_ids[: args.num_records]
        rows = [pool.record_index(i) for i in ids]
        generator = torch.Generator().manual_seed(args.seed)
        fig, axes = plt.subplots(
            len(rows), args.k + 1, figsize=(2.6 * (args.k + 1), 2.9 * len(rows)), squeeze=False
        )
        sae_out = score_candidates(sae, pool, rows, progress=False)
        for axes_row, record_id, row, error, l1, latents in zip(
            axes, ids, rows, sae_out.reconstruction_error, sae_out.latent_l1, sae_out.latents, strict=True
        ):
            scores = combined_scores(error, l1)
            similarities = torch.from_numpy(pool.similarities[row])
            chosen, log_q = select_negatives(
                args.select,
                args.k,
                similarities=similarities,
                scores=scores,
                latents=latents,
                generator=generator,
                diversity_weight=args.diversity_weight,
                temperature=args.temperature,
                log_q=args.log_q,
            )
            axes_row[0].imshow(read_image(pool.record_images[row]))
            axes_row[0].set_title(textwrap.fill(f"{record_id}: {pool.record_prompts[row]}", 28), fontsize=7)
            for t, (ax, c) in enumerate(zip(axes_row[1:], chosen.tolist(), strict=True)):
                title = f"s={scores[c]:.2f} l={error[c]:.2g}\nv={l1[c]:.2f} cos={similarities[c]:.3f}"
                if log_q is not None:
                    title += f" log q={log_q[t]:.2f}"
                ax.imshow(read_image(pool.image_paths[pool.candidates[row, c]]))
                ax.set_title(title, fontsize=7)
            axes_row[0].set_ylabel("positive")
            for ax in axes_row:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(
            f"{args.k} negatives of {pool.manifest['top_m']} candidates, --select {args.select}", fontsize=9
        )
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
    except (FileNotFoundError, KeyError, ValueError, UnreadableImage) as error:
        sys.exit(f"show_negatives: error: {error}")
    print(f"wrote {args.out}: {len(rows)} records x {args.k} negatives")


if __name__ == "__main__":
    main()
