"""The shared-prefix forward: each (image, prompt) prefix goes through the language model once.

    1. layout     packed rows, positions, mask, target/source indices     (:mod:`mmpo.engine.layout`)
    2. vision     features of each unique image, encoded once             (:mod:`mmpo.engine.vision`)
    3. embed      e = E[tokens];  e[image placeholders] = features       (what the HF model does inside)
    4. decoder    h = LM(e, mask, positions)    (``get_decoder()``: LoRA, checkpointing, sdpa all apply)
    5. head       log p(y) on the response positions only, chunked       (:mod:`mmpo.engine.chunked`)
    6. sums       log pi(branch) = sum_t log p(y_t), per (branch, record), float32
                  (:func:`shared_prefix_token_logps` also keeps the terms, for token-level losses)

Only the language model's decoder and head are called on our inputs; the vision path runs through the
model's own ``get_image_features``. The result equals the per-branch forward up to kernel rounding.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from mmpo.branches import Branch, LogProbs, TokenLogProbs, TokenTables
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.chunked import CHUNK_ROWS, response_token_logps
from mmpo.engine.layout import Layout, attention_mask, build_layout
from mmpo.engine.vision import ImageFeatures
from mmpo.models.families import family_of
from mmpo.models.sharding import agreed_count


def embed(model: nn.Module, layout: Layout, features: ImageFeatures) -> Tensor:
    """Token embeddings of the packed rows with the image features written over the placeholders."""
    family = family_of(model)
    embeds = model.get_input_embeddings()(layout.input_ids)
    requests = [request for row in layout.images for request in row]
    if not requests:
        return embeds
    image_features = torch.cat(features.get(model, family, requests)).to(embeds.dtype)
    placeholders = (layout.input_ids == family.model_image_token_id(model)) & (layout.segments == 0)
    if int(placeholders.sum()) != image_features.shape[0]:
        raise ValueError(
            f"{int(placeholders.sum())} image placeholder tokens in the prompts but the images "
            f"give {image_features.shape[0]} features"
        )
    return embeds.masked_scatter(placeholders[..., None], image_features)


def decode(model: nn.Module, layout: Layout, embeds: Tensor) -> Tensor:
    """Final hidden states ``[M, hidden]`` at :attr:`Layout.sources`: one decoder call per length bucket
    (:meth:`Layout.decoder_calls`), each row cut to the bucket's longest row; a sharded decoder runs the
    fewest buckets of any rank on every rank (:func:`~mmpo.models.sharding.agreed_count`)."""
    axes = family_of(model).position_axes
    decoder = model.get_decoder()
    implementation = decoder.config._attn_implementation
    width = layout.segments.shape[1]
    source_rows, source_columns = layout.sources // width, layout.sources % width
    local_row = torch.empty(layout.segments.shape[0], dtype=torch.long, device=embeds.device)
    parts, order = [], []
    buckets = len(layout.decoder_calls())
    for rows in layout.decoder_calls(at_most=agreed_count(buckets, decoder, "min")):
        length = int(layout.lengths[rows[0]])
        positions = layout.positions[:, rows, :length]
        out = decoder(
            inputs_embeds=embeds[rows, :length],
            attention_mask=attention_mask(
                layout.segments[rows, :length], layout.documents[rows, :length], implementation, embeds.dtype
            ),
            position_ids=positions if axes == 3 else positions[0],
            use_cache=False,
        ).last_hidden_state
        local_row[rows] = torch.arange(len(rows), device=embeds.device)
        picked = torch.isin(source_rows, rows).nonzero().squeeze(-1)
        parts.append(out.flatten(0, 1)[local_row[source_rows[picked]] * length + source_columns[picked]])
        order.append(picked)
    return torch.cat(parts)[torch.cat(order).argsort()]


def _packed(
    model: nn.Module, batch: PreferenceBatch, features: ImageFeatures | None, chunk_rows: int
) -> tuple[Layout, Tensor, Tensor]:
    """``(layout, hidden states [M, H] that predict the response tokens, their log-probs [M])``."""
    family = family_of(model)
    if not family.shared_prefix:
        raise ValueError(
            f"engine.mode=shared_prefix does not support model.family={family.name!r} "
            "(use engine.mode=batched)"
        )
    layout = build_layout(model, family, batch)
    embeds = embed(model, layout, features if features is not None else ImageFeatures())
    hidden = decode(model, layout, embeds)
    token_logps = response_token_logps(hidden, model.get_output_embeddings(), layout.targets, chunk_rows)
    return layout, hidden, token_logps


def _owners_of(layout: Layout, branch: Branch) -> Tensor:
    """Owner index of (branch, record) for every record, in record order."""
    return torch.tensor(
        [i for i, (b, _) in enumerate(layout.owner_keys) if b == branch], device=layout.owners.device
    )


def _sums(layout: Layout, token_logps: Tensor, batch: PreferenceBatch) -> tuple[LogProbs, LogProbs]:
    owners = len(layout.owner_keys)
    sums = token_logps.new_zeros(owners).index_add(0, layout.owners, token_logps)
    counts = torch.bincount(layout.owners, minlength=owners)
    logps: LogProbs = {}
    token_counts: LogProbs = {}
    for branch in batch.rows:
        index = _owners_of(layout, branch)
        logps[branch] = sums[index]
        token_counts[branch] = counts[index]
    return logps, token_counts


def shared_prefix_logps(
    model: nn.Module,
    batch: PreferenceBatch,
    features: ImageFeatures | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[LogProbs, LogProbs]:
    """``(log-probs, response-token counts)`` per branch, each [len(batch)], via the packed layout."""
    layout, _, token_logps = _packed(model, batch, features, chunk_rows)
    return _sums(layout, token_logps, batch)


def shared_prefix_token_logps(
    model: nn.Module,
    batch: PreferenceBatch,
    features: ImageFeatures | None,
    tokens: Collection[Branch],
    distributions: Collection[Branch] = (),
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[LogProbs, LogProbs, TokenTables]:
    """:func:`shared_prefix_logps` plus the per-token log-probs of the ``tokens`` branches, and the
    full-vocabulary log-softmax of the ``distributions`` ones (one more head pass over their rows)."""
    layout, hidden, token_logps = _packed(model, batch, features, chunk_rows)
    logps, counts = _sums(layout, token_logps, batch)
    total = len(layout.owners)
    first = torch.full((len(layout.owner_keys),), total, device=hidden.device)
    first = first.scatter_reduce(0, layout.owners, torch.arange(total, device=hidden.device), "amin")
    offsets = torch.arange(total, device=hidden.device) - first[layout.owners]  # position in its response
    tables: TokenTables = {}
    for branch in tokens:
        row_of = torch.full((len(layout.owner_keys),), -1, device=hidden.device)
        row_of[_owners_of(layout, branch)] = torch.arange(len(batch), device=hidden.device)
        picked = (row_of[layout.owners] >= 0).nonzero().squeeze(-1)
        where = (row_of[layout.owners[picked]], offsets[picked])
        shape = (len(batch), int(counts[branch].max()))
        vocab = None
        if branch in distributions:
            head = model.get_output_embeddings()
            values = torch.log_softmax(head(hidden[picked]).float(), dim=-1)
            vocab = values.new_zeros((*shape, values.shape[-1])).index_put(where, values)
        tables[branch] = TokenLogProbs(
            token_logps.new_zeros(shape).index_put(where, token_logps[picked]),
            layout.targets.new_zeros(shape).index_put(where, layout.targets[picked]),
            torch.zeros(shape, dtype=torch.bool, device=hidden.device).index_put(
                where, torch.ones_like(picked, dtype=torch.bool)
            ),
            vocab,
        )
    return logps, counts, tables
