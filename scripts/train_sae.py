"""Train MISP-DPO's sparse autoencoder on a candidate pool's joint-embedding differences.

    python scripts/train_sae.py --pool data/pools/coco_train2017 --out outputs/sae/coco --epochs 10

Trains :class:`mmpo.retrieval.sae.SparseAutoencoder` (latent 128, KL sparsity weight 1, rho 0.05) on
``d = vec((h_v(m_p) - h_v(m_n)) h_t^T)`` for every record of the pool and each of its retrieved candidates,
and writes under ``--out``:

- ``sae.pt``: the checkpoint (``SparseAutoencoder.load``), with the pool's fingerprint and directory;
- ``history.json``: per-step train and per-epoch validation losses and their two terms;
- ``loss.png``: the loss curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mmpo.retrieval.pool import CandidatePool  # noqa: E402
from mmpo.retrieval.sae import fit_sae  # noqa: E402


def plot_history(history: list[dict], path: Path) -> None:
    """Train loss and its terms per step, validation loss per epoch, on a log scale."""
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [h for h in history if h["split"] == "train"]
    steps = [h["step"] for h in train]
    for key, style in (("loss", "-"), ("reconstruction", "--"), ("sparsity", ":")):
        ax.plot(steps, [max(h[key], 1e-12) for h in train], style, label=f"train {key}")
    val = [h for h in history if h["split"] == "val"]
    if val:
        ax.plot([h["step"] for h in val], [h["loss"] for h in val], "o", label="val loss")
    ax.set(
        xlabel="step", ylabel="loss", yscale="log", title="SAE: ||d - D(E(d))||^2 + gamma KL(rho || rho_hat)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="pool directory written by scripts/build_pool.py")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--rho", type=float, default=0.05, help="sparsity target of the KL penalty")
    parser.add_argument("--sparsity-weight", type=float, default=1.0, help="gamma")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--records-per-batch", type=int, default=32, help="records per step, each with its M candidates"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    try:
        pool = CandidatePool.load(args.pool)
        sae, history = fit_sae(
            pool,
            latent_dim=args.latent_dim,
            rho=args.rho,
            sparsity_weight=args.sparsity_weight,
            epochs=args.epochs,
            records_per_batch=args.records_per_batch,
            lr=args.lr,
            val_fraction=args.val_fraction,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"train_sae: error: {error}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sae.save(
        out / "sae.pt",
        pool_fingerprint=pool.fingerprint,
        pool_dir=str(pool.directory.resolve()),
        args=vars(args),
    )
    (out / "history.json").write_text(json.dumps(history))
    plot_history(history, out / "loss.png")
    last = history[-1]
    print(f"sae {out / 'sae.pt'}: {len(history)} entries, last {last['split']} loss {last['loss']:.6g}")


if __name__ == "__main__":
    main()
