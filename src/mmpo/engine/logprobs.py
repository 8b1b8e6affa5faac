"""Sequence log-probs of response tokens.

    log pi(y | x) = sum_t log softmax(logits_{t-1})[y_t]     over response positions t only

The logit that predicts response token t sits at position t - 1 (the first one at the last prompt
position). The log-softmax and the sum run in float32 whatever the autocast dtype: summing 100+ bf16
log-probs errs by more than a typical beta-scaled margin.

:func:`token_logps` keeps the terms of the sum, one per response token, left aligned per row
(:class:`~mmpo.branches.TokenLogProbs`), for losses with token-level terms.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmpo.branches import TokenLogProbs
from mmpo.data.rows import IGNORE_INDEX


def sequence_logps(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum of response-token log-probs [N] float32, response-token counts [N])`` from full logits."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(-1), mask.sum(-1)


def token_logps(logits: Tensor, labels: Tensor, vocab: bool = False) -> TokenLogProbs:
    """Per-token log-probs of each row's response from full logits ``[N, L, V]``, left aligned to the
    row's first response token (rows are ``[prompt | response | pad]``, the response one block);
    ``vocab`` also keeps the full log-softmax at those positions."""
    targets = labels[:, 1:]
    response = targets != IGNORE_INDEX
    counts = response.sum(-1)
    width = int(counts.max()) if len(counts) else 0
    columns = torch.arange(width, device=labels.device)
    mask = columns < counts[:, None]
    positions = (response.int().argmax(-1)[:, None] + columns).clamp(max=targets.shape[1] - 1)
    ids = targets.gather(1, positions).masked_fill(~mask, 0)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    every = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logps = every.gather(1, positions).masked_fill(~mask, 0.0)
    if not vocab:
        return TokenLogProbs(logps, ids, mask)
    picked = logp.gather(1, positions[..., None].expand(-1, -1, logp.shape[-1]))
    return TokenLogProbs(logps, ids, mask, picked.masked_fill(~mask[..., None], 0.0))
