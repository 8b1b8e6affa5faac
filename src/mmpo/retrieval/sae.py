"""The sparse autoencoder of MISP-DPO's negative selection (methods.md §4.3), on rank-1 inputs.

Joint embedding ``e(m, x) = vec(h_v h_t^T)`` (``h_v`` CLIP image, ``h_t`` CLIP text embedding of the
prompt, dimension D^2); the SAE input for positive ``m_p`` and candidate ``m_n`` is the difference

    d = e(m_p, x) - e(m_n, x) = vec((h_v(m_p) - h_v(m_n)) h_t^T) = vec(a b^T),   a = h_vp - h_vn, b = h_t

(``vec`` row-major: ``vec(a b^T)[i*D + j] = a_i b_j``). The autoencoder is the classic one-hidden-layer
sparse AE with sigmoid latents ([I]: depth and activation are not given; the KL(rho || rho_hat)
penalty needs activations in (0, 1), so the sigmoid is not an option):

    z = E(d) = sigmoid(W_e d + b_e),   D(z) = W_d z + c,        W_e: [L, D^2], W_d: [D^2, L], c: [D^2]
    loss = mean_items ||d - D(E(d))||^2 + gamma * sum_j KL(rho || rho_hat_j),   rho_hat_j = mean_items z_j

with latent L = 128 and gamma = 1 (paper), rho a config value (default 0.05, the usual sparse-AE target,
[I]). Nothing of size D^2 per item is materialised. Row l of ``W_e`` and column l of ``W_d`` are stored
as D x D matrices ``U_l`` and ``V_l`` (both parameters ``[L, D, D]``), ``c`` as ``C: [D, D]``; then

    (W_e vec(a b^T))_l = a^T U_l b                                                    (encoder)
    ||vec(a b^T) - (W_d z + c)||^2 = ||a||^2 ||b||^2 - 2 sum_l z_l a^T V_l b - 2 a^T C b
                                     + z^T G z + 2 z . g + ||C||_F^2,                 (reconstruction)
    G_lk = <V_l, V_k>_F,  g_l = <V_l, C>_F

Candidates of one record share ``b``, so ``U_l b`` and ``V_l b`` are computed once per record
(``O(L D^2)``) and each candidate then costs ``O(L D)``; ``G`` costs ``O(L^2 D^2)`` once per call. At
D = 768 the model has 2 x 75M weights, and on a CPU one Adam step over them costs seconds whatever the
batch, so batches should be large (``records_per_batch`` x M items). The training data and recipe are
not described in the paper ([R]); :func:`fit_sae` trains on every (record, retrieved candidate) pair of
a pool ([I]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from mmpo.retrieval.pool import CandidatePool

CHECKPOINT_FORMAT = "mmpo-sae-1"


@dataclass
class SaeOutput:
    """Per item (record b, candidate m): latents ``z [B, M, L]`` and ``||d - D(E(d))||^2`` ``[B, M]``."""

    latents: torch.Tensor
    reconstruction_error: torch.Tensor

    @property
    def latent_l1(self) -> torch.Tensor:
        """``v = ||E(d)||_1`` ``[B, M]`` (methods.md §4.3)."""
        return self.latents.abs().sum(-1)


class SparseAutoencoder(nn.Module):
    """Sparse AE on ``d = vec(a b^T)`` (module docstring); inputs ``a [B, M, D]``, ``b [B, D]``."""

    def __init__(
        self, embed_dim: int, latent_dim: int = 128, rho: float = 0.05, sparsity_weight: float = 1.0
    ):
        super().__init__()
        if not 0 < rho < 1:
            raise ValueError(f"sae rho={rho!r} must lie in (0, 1)")
        self.embed_dim, self.latent_dim = embed_dim, latent_dim
        self.rho, self.sparsity_weight = rho, sparsity_weight
        d, n = embed_dim, latent_dim
        self.encoder_weight = nn.Parameter(torch.empty(n, d, d))
        self.encoder_bias = nn.Parameter(torch.empty(n))
        self.decoder_weight = nn.Parameter(torch.empty(n, d, d))
        self.decoder_bias = nn.Parameter(torch.empty(d, d))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights and the decoder bias as ``nn.Linear`` (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``); the encoder
        bias at ``logit(rho)``, so that latents start at the sparsity target and the KL term starts near 0
        ([I]; from ``nn.Linear``'s init the KL term is ~0.5 per latent and dominates for thousands of steps)."""
        nn.init.uniform_(self.encoder_weight, -1 / self.embed_dim, 1 / self.embed_dim)
        nn.init.constant_(self.encoder_bias, math.log(self.rho / (1 - self.rho)))
        bound = 1 / math.sqrt(self.latent_dim)
        nn.init.uniform_(self.decoder_weight, -bound, bound)
        nn.init.uniform_(self.decoder_bias, -bound, bound)

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(
            embed_dim=self.embed_dim,
            latent_dim=self.latent_dim,
            rho=self.rho,
            sparsity_weight=self.sparsity_weight,
        )

    def encode(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``z = sigmoid(W_e vec(a b^T) + b_e)`` ``[B, M, L]``, via ``a^T W_e[l] b``."""
        weight_b = torch.einsum("lij,bj->bli", self.encoder_weight, b)
        return torch.sigmoid(torch.einsum("bli,bmi->bml", weight_b, a) + self.encoder_bias)

    def decoder_gram(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G [L, L], g [L])`` of the module docstring, the ``O(L^2 D^2)`` part of the reconstruction error;
        a caller scoring many small batches with fixed weights computes it once and passes it on."""
        flat = self.decoder_weight.reshape(self.latent_dim, -1)
        return flat @ flat.T, flat @ self.decoder_bias.reshape(-1)

    def reconstruction_error(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        z: torch.Tensor,
        gram: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``||vec(a b^T) - (W_d z + c)||^2`` ``[B, M]`` by the expansion in the module docstring (``gram``:
        :meth:`decoder_gram` of the current weights, computed here when not given)."""
        bias = self.decoder_bias
        input_sq = a.square().sum(-1) * b.square().sum(-1)[:, None]
        weight_b = torch.einsum("lij,bj->bli", self.decoder_weight, b)
        cross = torch.einsum("bli,bmi,bml->bm", weight_b, a, z) + torch.einsum("bmi,bi->bm", a, b @ bias.T)
        gram, bias_dot = self.decoder_gram() if gram is None else gram
        output_sq = torch.einsum("bml,lk,bmk->bm", z, gram, z) + 2 * z @ bias_dot + bias.square().sum()
        return input_sq - 2 * cross + output_sq

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, gram: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> SaeOutput:
        z = self.encode(a, b)
        return SaeOutput(z, self.reconstruction_error(a, b, z, gram))

    def loss(self, out: SaeOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(mean reconstruction error + gamma * sum_j KL(rho || rho_hat_j), terms)`` over all items."""
        rho_hat = out.latents.reshape(-1, self.latent_dim).mean(0).clamp(1e-6, 1 - 1e-6)
        rho = self.rho
        kl = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
        reconstruction = out.reconstruction_error.mean()
        return reconstruction + self.sparsity_weight * kl, {"reconstruction": reconstruction, "sparsity": kl}

    def save(self, path: str | Path, **meta: Any) -> None:
        """A checkpoint :meth:`load` reads: format tag, hyperparameters, weights and ``meta``."""
        torch.save(
            {"format": CHECKPOINT_FORMAT, "hparams": self.hparams, "state_dict": self.state_dict(), **meta},
            path,
        )

    @staticmethod
    def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
        """The checkpoint dict at ``path`` after its format check; ``mmap=True`` maps the weights instead of
        reading them (to look at ``hparams`` and ``pool_fingerprint`` only)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"SAE checkpoint {str(path)!r} does not exist: train one with scripts/train_sae.py"
            )
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{str(path)!r} is not an SAE checkpoint of format {CHECKPOINT_FORMAT!r}")
        return checkpoint

    @classmethod
    def load(cls, path: str | Path) -> tuple[SparseAutoencoder, dict[str, Any]]:
        """``(model in eval mode, the checkpoint's other entries, e.g. pool_fingerprint)``."""
        checkpoint = cls.read_checkpoint(path)
        model = cls(**checkpoint.pop("hparams"))
        model.load_state_dict(checkpoint.pop("state_dict"))
        checkpoint.pop("format")
        return model.eval(), checkpoint


@torch.no_grad()
def score_candidates(
    sae: SparseAutoencoder,
    pool: CandidatePool,
    records: Sequence[int] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> SaeOutput:
    """The SAE's latents ``[R, M, L]`` and reconstruction errors ``[R, M]`` for each candidate of the pool
    rows ``records`` (default all), in batches of ``batch_size`` records: the decoder Gram matrix, the
    largest per-call cost (``O(L^2 D^2)``), is paid once per batch."""
    rows = list(range(len(pool.record_ids))) if records is None else list(records)
    outputs = [
        sae(*pool.difference_factors(rows[start : start + batch_size]))
        for start in tqdm(range(0, len(rows), batch_size), desc="score candidates", disable=not progress)
    ]
    return SaeOutput(
        torch.cat([o.latents for o in outputs]), torch.cat([o.reconstruction_error for o in outputs])
    )


def fit_sae(
    pool: CandidatePool,
    latent_dim: int = 128,
    rho: float = 0.05,
    sparsity_weight: float = 1.0,
    epochs: int = 10,
    records_per_batch: int = 32,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> tuple[SparseAutoencoder, list[dict[str, float]]]:
    """Adam on every (record, candidate) pair of ``pool``; a batch is ``records_per_batch`` records with
    all their M candidates. Records are split by ``val_fraction`` (at least one held out when
    ``val_fraction > 0``). Returns the model and a history of per-step train losses and per-epoch
    validation losses (``{"epoch", "step", "split", "loss", "reconstruction", "sparsity"}``)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sae = SparseAutoencoder(pool.image_embeddings.shape[1], latent_dim, rho, sparsity_weight)
    order = torch.randperm(len(pool.record_ids), generator=generator)
    n_val = math.ceil(val_fraction * len(order)) if val_fraction > 0 else 0
    if n_val >= len(order):
        raise ValueError(f"val_fraction={val_fraction} leaves no training records of {len(order)}")
    val, train = order[:n_val], order[n_val:]
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    history, step = [], 0

    def entry(epoch: int, split: str, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "step": step,
            "split": split,
            "loss": loss.item(),
            **{k: v.item() for k, v in terms.items()},
        }

    bar = tqdm(
        total=epochs * math.ceil(len(train) / records_per_batch), desc="train sae", disable=not progress
    )
    for epoch in range(epochs):
        sae.train()
        for batch in train[torch.randperm(len(train), generator=generator)].split(records_per_batch):
            loss, terms = sae.loss(sae(*pool.difference_factors(batch)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            history.append(entry(epoch, "train", loss, terms))
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
        if n_val:
            sae.eval()
            with torch.no_grad():
                out = score_candidates(sae, pool, val.tolist(), records_per_batch, progress=False)
                history.append(entry(epoch, "val", *sae.loss(out)))
    bar.close()
    return sae.eval(), history
