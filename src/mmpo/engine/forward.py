"""The branch forward: per-branch sequence log-probs for every row of a :class:`PreferenceBatch`.

Modes (all give the same numbers up to kernel rounding; ``naive`` is the ground truth the others are
tested against):

- ``naive``: one HF forward per branch, full logits (``B`` rows of ``P + n`` tokens per branch).
- ``batched``: one right-padded HF forward over the rows of all branches, full logits (what common
  frameworks do: the prompt and image of a record are processed once per branch).
- ``shared_prefix``: one packed row per (record, image, context) group; the prefix goes through the
  language model once, each image through the vision tower once, the head only on response positions
  (:mod:`mmpo.engine.shared_prefix`). Families: llava, qwen2_vl, qwen2_5_vl; sdpa, eager or flex_attention
  (a block-sparse mask); ``data.token_budget`` packs the groups of several records into one row.
- ``auto`` (the default): ``shared_prefix`` where it is supported (measured fastest, see
  ``scripts/bench_step.py``), else ``batched``.

Per record with prompt P and responses n_1..n_m that share it, LLM token positions per forward::

    naive / batched:  sum_j (P + n_j)          shared_prefix:  P + sum_j (n_j - 1)

:func:`branch_token_logps` returns the same sums and, for the branches a loss names, the per-token terms
(and optionally the full-vocabulary log-softmax at each response position), equal across modes;
:func:`branch_logps` (every loss without token-level terms) never builds them.
"""

from __future__ import annotations

from collections.abc import Collection

from omegaconf import DictConfig
from torch import Tensor, nn

from mmpo.branches import Branch, LogProbs, TokenTables
from mmpo.data.rows import PreferenceBatch, Rows, concat_rows
from mmpo.engine.layout import ATTENTION_IMPLEMENTATIONS
from mmpo.engine.logprobs import sequence_logps, token_logps
from mmpo.engine.shared_prefix import shared_prefix_logps, shared_prefix_token_logps
from mmpo.engine.vision import ImageFeatures
from mmpo.models.families import SHARED_PREFIX_FAMILIES

MODES = ("naive", "batched", "shared_prefix", "auto")


def engine_problems(engine: DictConfig, model: DictConfig, token_budget: int | None = None) -> list[str]:
    """Start-up problems of ``engine.mode`` for the ``model`` config and ``data.token_budget``."""
    if engine.mode not in MODES:
        return [f"engine.mode={engine.mode!r}; allowed: {list(MODES)}"]
    problems = shared_prefix_problems(model.family, model.attn_implementation)
    if token_budget is not None and (engine.mode in ("naive", "batched") or problems):
        return [
            f"data.token_budget={token_budget} packs the rows of engine.mode=shared_prefix, which this run "
            f"does not use (engine.mode={engine.mode}, model.family={model.family}); set data.token_budget=null",
            *problems,
        ]
    return problems if engine.mode == "shared_prefix" else []


def shared_prefix_problems(family: str, attn_implementation: str) -> list[str]:
    """Why ``engine.mode=shared_prefix`` cannot run on this family and attention implementation."""
    problems = []
    if family not in SHARED_PREFIX_FAMILIES:
        problems.append(
            f"engine.mode=shared_prefix does not support model.family={family!r}; allowed "
            f"families: {list(SHARED_PREFIX_FAMILIES)} (use engine.mode=batched)"
        )
    if attn_implementation not in ("auto", *ATTENTION_IMPLEMENTATIONS):
        problems.append(
            f"engine.mode=shared_prefix needs a 4-D or block attention mask; model.attn_implementation="
            f"{attn_implementation!r}, allowed: {['auto', *ATTENTION_IMPLEMENTATIONS]}"
        )
    return problems


def resolve_mode(mode: str, model: nn.Module) -> str:
    """``auto`` -> ``shared_prefix`` when the model's family and attention implementation support it,
    else ``batched``; any other mode is returned as given."""
    if mode != "auto":
        return mode
    implementation = model.get_decoder().config._attn_implementation
    return "batched" if shared_prefix_problems(model.config.model_type, implementation) else "shared_prefix"


def rows_logps(model: nn.Module, rows: Rows) -> tuple[Tensor, Tensor]:
    logits = model(**rows.model_inputs(), use_cache=False).logits
    return sequence_logps(logits, rows.labels)


def branch_logps(
    model: nn.Module, batch: PreferenceBatch, mode: str = "batched", features: ImageFeatures | None = None
) -> tuple[LogProbs, LogProbs]:
    """``(log-probs, response-token counts)`` per branch, each a tensor of shape [len(batch)].

    ``features`` (shared_prefix only) is the step's image-feature cache, shared with the reference when
    the vision path is frozen (:meth:`ImageFeatures.for_step`); None encodes privately.
    """
    mode = resolve_mode(mode, model)
    if mode == "naive":
        results = {branch: rows_logps(model, rows) for branch, rows in batch.rows.items()}
        return {b: r[0] for b, r in results.items()}, {b: r[1] for b, r in results.items()}
    if mode == "batched":
        branches = list(batch.rows)
        logps, counts = rows_logps(model, concat_rows([batch.rows[b] for b in branches], batch.pad_token_id))
        n = len(batch)
        return (
            {b: logps[i * n : (i + 1) * n] for i, b in enumerate(branches)},
            {b: counts[i * n : (i + 1) * n] for i, b in enumerate(branches)},
        )
    if mode == "shared_prefix":
        return shared_prefix_logps(model, batch, features)
    raise ValueError(f"engine.mode={mode!r}; allowed: {list(MODES)}")


def branch_token_logps(
    model: nn.Module,
    batch: PreferenceBatch,
    mode: str = "batched",
    features: ImageFeatures | None = None,
    tokens: Collection[Branch] = (),
    distributions: Collection[Branch] = (),
) -> tuple[LogProbs, LogProbs, TokenTables]:
    """:func:`branch_logps` plus a :class:`~mmpo.branches.TokenLogProbs` per branch of ``tokens``, with
    ``vocab`` for those also in ``distributions`` (``Requirements.token_logps`` / ``token_distributions``)."""
    mode = resolve_mode(mode, model)
    if mode == "shared_prefix":
        return shared_prefix_token_logps(model, batch, features, tokens, distributions)
    if mode not in ("naive", "batched"):
        raise ValueError(f"engine.mode={mode!r}; allowed: {list(MODES)}")
    branches = list(batch.rows)
    if mode == "naive":
        logits = {b: model(**batch.rows[b].model_inputs(), use_cache=False).logits for b in branches}
    else:
        rows = concat_rows([batch.rows[b] for b in branches], batch.pad_token_id)
        every = model(**rows.model_inputs(), use_cache=False).logits
        n = len(batch)
        logits = {b: every[i * n : (i + 1) * n] for i, b in enumerate(branches)}
    logps, counts, tables = {}, {}, {}
    for branch in branches:
        labels = batch.rows[branch].labels
        if branch in tokens:
            # the batched rows are padded to the longest branch: the labels' padding is IGNORE_INDEX
            table = token_logps(logits[branch][:, : labels.shape[1]], labels, branch in distributions)
            tables[branch] = table
            logps[branch], counts[branch] = table.logps.sum(-1), table.mask.sum(-1)
        else:
            logps[branch], counts[branch] = sequence_logps(logits[branch][:, : labels.shape[1]], labels)
    return logps, counts, tables
