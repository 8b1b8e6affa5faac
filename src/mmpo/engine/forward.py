"""The branch forward: per-branch sequence log-probs for every row of a :class:`PreferenceBatch`.

Modes (all give the same numbers; ``naive`` is the ground truth the others are tested against):

- ``naive``: one forward per branch.
- ``batched``: one right-padded forward over the rows of all branches (what common frameworks do).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmpo.branches import LogProbs
from mmpo.data.rows import PreferenceBatch, Rows, concat_rows
from mmpo.engine.logprobs import sequence_logps

MODES = ("naive", "batched")


def rows_logps(model: nn.Module, rows: Rows) -> tuple[Tensor, Tensor]:
    logits = model(**rows.model_inputs(), use_cache=False).logits
    return sequence_logps(logits, rows.labels)


def branch_logps(model: nn.Module, batch: PreferenceBatch, mode: str = "batched") -> tuple[LogProbs, LogProbs]:
    """``(log-probs, response-token counts)`` per branch, each a tensor of shape [len(batch)]."""
    if mode == "naive":
        results = {branch: rows_logps(model, rows) for branch, rows in batch.rows.items()}
        return {b: r[0] for b, r in results.items()}, {b: r[1] for b, r in results.items()}
    if mode == "batched":
        branches = list(batch.rows)
        logps, counts = rows_logps(model, concat_rows([batch.rows[b] for b in branches], batch.pad_token_id))
        n = len(batch)
        return ({b: logps[i * n:(i + 1) * n] for i, b in enumerate(branches)},
                {b: counts[i * n:(i + 1) * n] for i, b in enumerate(branches)})
    raise ValueError(f"engine.mode={mode!r}; allowed: {list(MODES)}")
