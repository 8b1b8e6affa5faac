"""Response-only, chunked token log-probs: the LM head never sees a prompt position.

Given the hidden states ``h_m`` that predict the ``M`` response tokens ``y_m`` (the last prompt position
and ``response[:-1]`` of every branch, gathered by the caller), the head ``W`` (``get_output_embeddings``)
runs on chunks of at most ``chunk_rows`` rows:

    z_m        = W h_m                                   (model dtype, then cast to float32)
    log p(y_m) = z_m[y_m] - logsumexp_v z_m[v]           (float32)

No ``[batch, seq, vocab]`` tensor exists: at most one ``[chunk_rows, vocab]`` block of logits is alive.
Under autograd each chunk is wrapped in non-reentrant activation checkpointing, so only the chunk's
input ``h`` is saved and the logits are recomputed in backward (one extra head matmul per chunk, the
price of never storing logits). The ``ceil(M / chunk_rows)`` chunks are of equal size; a sharded head runs
the most chunks of any rank on every rank (some may be empty; :func:`~mmpo.models.sharding.agreed_count`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmpo.models.sharding import agreed_count

CHUNK_ROWS = 1024
"""Rows of logits per chunk: 1024 x 32k vocab x 4 bytes = 128 MiB of float32 logits at a time."""


def _chunk_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    logits = head(hidden).float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def response_token_logps(
    hidden: Tensor, head: nn.Module, targets: Tensor, chunk_rows: int = CHUNK_ROWS
) -> Tensor:
    """``log p(y_m | h_m)`` in float32 for ``hidden`` [M, H] and ``targets`` [M]; returns [M]."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}; must be >= 1")
    needs_graph = torch.is_grad_enabled() and (
        hidden.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    chunks = agreed_count(-(-hidden.shape[0] // chunk_rows), head, "max")
    if not chunks:
        return hidden.new_zeros(0, dtype=torch.float32)
    parts = []
    for h, y in zip(hidden.tensor_split(chunks), targets.tensor_split(chunks), strict=True):
        if needs_graph:
            parts.append(checkpoint(_chunk_logps, head, h, y, use_reentrant=False, preserve_rng_state=False))
        else:
            parts.append(_chunk_logps(head, h, y))
    return torch.cat(parts)
