"""Per-token log-probs (``Requirements.token_logps`` / ``token_distributions``): every engine mode gives the
tables and gradients of ``naive``, the tables hold the collated response tokens, and their sums are the
sequence log-probs of the fast path (:func:`branch_logps`)."""

from __future__ import annotations

import pytest
import torch

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED
from mmpo.data.rows import IGNORE_INDEX
from mmpo.engine.forward import branch_logps, branch_token_logps

from .conftest import BRANCH_SETS, collate, make_policy, mixed_records
from .test_modes import LOGP_TOL

TOKENS = (CHOSEN, REJECTED, CHOSEN_NEGATIVE)
DISTRIBUTIONS = (CHOSEN, REJECTED)


def run(policy, batch, mode: str):
    """Token tables and the gradient of a fixed random combination of token log-probs and vocab entries."""
    policy.zero_grad(set_to_none=True)
    _, _, tables = branch_token_logps(policy, batch, mode, None, TOKENS, DISTRIBUTIONS)
    generator = torch.Generator().manual_seed(0)
    total = 0
    for branch in TOKENS:
        total = (
            total + (torch.rand(tables[branch].logps.shape, generator=generator) * tables[branch].logps).sum()
        )
    for branch in DISTRIBUTIONS:
        vocab = tables[branch].vocab
        total = total + (torch.rand(vocab.shape, generator=generator) * vocab).sum()
    total.backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}
    return tables, grads


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_token_tables_match_naive_in_every_mode(family, records):
    policy, processor, fam = make_policy(family)
    batch = collate(processor, fam, mixed_records(records, 3), BRANCH_SETS["mdpo"])
    want_tables, want_grads = run(policy, batch, "naive")
    for mode in ("batched", "shared_prefix"):
        tables, grads = run(policy, batch, mode)
        for branch in TOKENS:
            got, want = tables[branch], want_tables[branch]
            assert torch.equal(got.ids, want.ids) and torch.equal(got.mask, want.mask), (mode, branch)
            torch.testing.assert_close(got.logps, want.logps, **LOGP_TOL)
            assert (got.vocab is None) == (branch not in DISTRIBUTIONS)
            if got.vocab is not None:
                torch.testing.assert_close(got.vocab, want.vocab, **LOGP_TOL)
        for name, grad in want_grads.items():
            assert grad.abs().max() > 0, name
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item())


@pytest.mark.parametrize("mode", ["naive", "batched", "shared_prefix"])
def test_tables_hold_the_response_tokens_and_sum_to_the_sequence_logps(mode, records):
    policy, processor, fam = make_policy("llava", gradient_checkpointing=False)
    batch = collate(processor, fam, mixed_records(records, 3), BRANCH_SETS["mdpo"])
    with torch.no_grad():
        sums, counts = branch_logps(policy, batch, mode)
        token_sums, token_counts, tables = branch_token_logps(
            policy, batch, mode, None, TOKENS, DISTRIBUTIONS
        )
    for branch in TOKENS:
        table, labels = tables[branch], batch.rows[branch].labels
        for row in range(len(batch)):
            response = labels[row][labels[row] != IGNORE_INDEX]
            assert torch.equal(table.ids[row][table.mask[row]], response)
        assert torch.equal(table.mask.sum(-1), counts[branch]) and torch.equal(
            token_counts[branch], counts[branch]
        )
        torch.testing.assert_close(table.logps.sum(-1), sums[branch], **LOGP_TOL)
        torch.testing.assert_close(token_sums[branch], sums[branch], **LOGP_TOL)
        assert torch.all(table.logps[~table.mask] == 0) and torch.all(table.logps[table.mask] < 0)
    for branch in DISTRIBUTIONS:
        table = tables[branch]
        # a distribution per response position: the log-softmax sums to one and picks the token's log-prob
        torch.testing.assert_close(table.vocab[table.mask].exp().sum(-1), torch.ones(int(table.mask.sum())))
        picked = table.vocab.gather(-1, table.ids[..., None]).squeeze(-1)
        torch.testing.assert_close(picked[table.mask], table.logps[table.mask], **LOGP_TOL)
        assert torch.all(table.vocab[~table.mask] == 0)


@pytest.mark.parametrize("strategy", ["adapter_off", "copy"])
def test_live_references_give_token_tables_of_their_own_log_probs(strategy, records):
    from mmpo.engine.cache import ReferenceCacheError

    from .conftest import Reference

    policy, processor, fam = make_policy("llava", gradient_checkpointing=False)
    batch = collate(processor, fam, mixed_records(records, 2), BRANCH_SETS["mdpo"])
    reference = Reference(strategy, policy, "shared_prefix")
    sums = reference.logps(policy, batch)
    token_sums, tables = reference.token_logps(policy, batch, None, "train", TOKENS, DISTRIBUTIONS)
    policy_sums, _ = branch_logps(policy, batch, "shared_prefix")
    for branch in TOKENS:
        torch.testing.assert_close(token_sums[branch], sums[branch], **LOGP_TOL)
        torch.testing.assert_close(tables[branch].logps.sum(-1), sums[branch], **LOGP_TOL)
        assert not tables[branch].logps.requires_grad
        # adapters off: the base model; copy: a frozen copy of the policy as it was built
        assert torch.allclose(sums[branch], policy_sums[branch]) == (strategy == "copy")
    with pytest.raises(ReferenceCacheError, match="stores sequence log-probs only"):
        Reference("precomputed", policy, "shared_prefix").token_logps(policy, batch, None, "train", TOKENS)
