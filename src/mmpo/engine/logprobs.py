"""Sequence log-probs of response tokens.

    log pi(y | x) = sum_t log softmax(logits_{t-1})[y_t]     over response positions t only

The logit that predicts response token t sits at position t - 1 (the first one at the last prompt
position). The log-softmax and the sum run in float32 whatever the autocast dtype: summing 100+ bf16
log-probs errs by more than a typical beta-scaled margin.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmpo.data.rows import IGNORE_INDEX


def sequence_logps(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum of response-token log-probs [N] float32, response-token counts [N])`` from full logits."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(-1), mask.sum(-1)
