"""The SAE: the rank-1 path equals the explicit D^2 outer product (value and gradient); KL; checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from mmpo.retrieval.sae import SparseAutoencoder, fit_sae, score_candidates

D, L, B, M = 5, 4, 3, 2


def explicit_loss(sae: SparseAutoencoder, a: torch.Tensor, b: torch.Tensor):
    """The module docstring's definition on the materialised d = vec(a b^T) in R^{D^2}."""
    d = (a[:, :, :, None] * b[:, None, None, :]).reshape(*a.shape[:2], D * D)
    z = torch.sigmoid(d @ sae.encoder_weight.reshape(L, D * D).T + sae.encoder_bias)
    reconstruction = z @ sae.decoder_weight.reshape(L, D * D) + sae.decoder_bias.reshape(D * D)
    error = (d - reconstruction).square().sum(-1)
    rho, rho_hat = sae.rho, z.reshape(-1, L).mean(0)
    kl = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
    return z, error, error.mean() + sae.sparsity_weight * kl


@pytest.fixture
def setup():
    torch.manual_seed(0)
    sae = SparseAutoencoder(D, L, rho=0.1, sparsity_weight=0.7).double()
    with torch.no_grad():  # move away from the init so that every term and gradient is non-trivial
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return sae, torch.randn(B, M, D, dtype=torch.double), torch.randn(B, D, dtype=torch.double)


def test_rank_one_path_equals_explicit_outer_product(setup):
    sae, a, b = setup
    a.requires_grad_(True)
    b.requires_grad_(True)
    out = sae(a, b)
    loss, terms = sae.loss(out)
    z, error, expected_loss = explicit_loss(sae, a, b)
    torch.testing.assert_close(out.latents, z)
    torch.testing.assert_close(out.reconstruction_error, error)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(out.latent_l1, z.sum(-1))
    inputs = [*sae.parameters(), a, b]
    grads = torch.autograd.grad(loss, inputs)
    expected = torch.autograd.grad(expected_loss, inputs)
    for got, want in zip(grads, expected, strict=True):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want)


def test_kl_term_by_hand():
    sae = SparseAutoencoder(D, L, rho=0.05).double()
    with torch.no_grad():
        sae.encoder_weight.zero_()
        sae.encoder_bias.fill_(math.log(0.2 / 0.8))  # every latent is exactly 0.2
    _, terms = sae.loss(sae(torch.randn(B, M, D, dtype=torch.double), torch.randn(B, D, dtype=torch.double)))
    per_latent = 0.05 * math.log(0.05 / 0.2) + 0.95 * math.log(0.95 / 0.8)
    assert terms["sparsity"].item() == pytest.approx(L * per_latent, rel=1e-9)


def test_init_starts_at_the_sparsity_target():
    sae = SparseAutoencoder(16, 32, rho=0.05)
    z = sae.encode(torch.randn(4, 8, 16) * 0.1, torch.nn.functional.normalize(torch.randn(4, 16), dim=-1))
    assert z.mean().item() == pytest.approx(0.05, abs=0.01)


def test_checkpoint_round_trip(setup, tmp_path):
    sae, a, b = setup
    sae.float().save(tmp_path / "sae.pt", pool_fingerprint="abc")
    loaded, meta = SparseAutoencoder.load(tmp_path / "sae.pt")
    assert meta == {"pool_fingerprint": "abc"} and loaded.hparams == sae.hparams
    torch.testing.assert_close(loaded(a.float(), b.float()).latents, sae(a.float(), b.float()).latents)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an SAE checkpoint"):
        SparseAutoencoder.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="scripts/train_sae.py"):
        SparseAutoencoder.load(tmp_path / "missing.pt")


def test_rho_must_be_a_probability():
    with pytest.raises(ValueError, match="rho=1.0 must lie in \\(0, 1\\)"):
        SparseAutoencoder(D, L, rho=1.0)


def test_fit_lowers_the_validation_loss(pool):
    sae, history = fit_sae(pool, latent_dim=16, epochs=8, records_per_batch=4, lr=3e-3, progress=False)
    val = [h["loss"] for h in history if h["split"] == "val"]
    train = [h for h in history if h["split"] == "train"]
    assert len(val) == 8 and len(train) == 8 * 4  # 14 of 16 records train (2 held out), 4 per batch
    assert val[-1] < 0.5 * val[0]
    assert not sae.training


def test_scoring_in_batches_equals_one_forward_over_all_records(pool):
    sae = SparseAutoencoder(pool.image_embeddings.shape[1], 8)
    batched = score_candidates(sae, pool, batch_size=3, progress=False)
    with torch.no_grad():
        whole = sae(*pool.difference_factors(range(len(pool.record_ids))))
    torch.testing.assert_close(batched.latents, whole.latents)
    torch.testing.assert_close(batched.reconstruction_error, whole.reconstruction_error)
    some = score_candidates(sae, pool, [4, 1], progress=False)
    torch.testing.assert_close(some.latents, whole.latents[[4, 1]])
