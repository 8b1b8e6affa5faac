"""The shared-prefix forward: each (image, prompt) prefix goes through the language model once.

    1. layout     packed rows, positions, 4-D mask, target/source indices  (:mod:`mmpo.engine.layout`)
    2. vision     features of each unique image, encoded once             (:mod:`mmpo.engine.vision`)
    3. embed      e = E[tokens];  e[image placeholders] = features       (what the HF model does inside)
    4. decoder    h = LM(e, mask, positions)    (``get_decoder()``: LoRA, checkpointing, sdpa all apply)
    5. head       log p(y) on the response positions only, chunked       (:mod:`mmpo.engine.chunked`)
    6. sums       log pi(branch) = sum_t log p(y_t), per (branch, record), float32

Only the language model's decoder and head are called on our inputs; the vision path runs through the
model's own ``get_image_features``. The result equals the per-branch forward up to kernel rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmpo.branches import LogProbs
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.chunked import CHUNK_ROWS, response_token_logps
from mmpo.engine.layout import Layout, attention_mask, build_layout
from mmpo.engine.vision import ImageFeatures
from mmpo.models.families import family_of


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
    (:meth:`Layout.decoder_calls`), each row cut to the bucket's longest row."""
    axes = family_of(model).position_axes
    decoder = model.get_decoder()
    implementation = decoder.config._attn_implementation
    width = layout.segments.shape[1]
    source_rows, source_columns = layout.sources // width, layout.sources % width
    local_row = torch.empty(layout.segments.shape[0], dtype=torch.long, device=embeds.device)
    parts, order = [], []
    for rows in layout.decoder_calls():
        length = int(layout.lengths[rows[0]])
        positions = layout.positions[:, rows, :length]
        out = decoder(
            inputs_embeds=embeds[rows, :length],
            attention_mask=attention_mask(layout.segments[rows, :length], implementation, embeds.dtype),
            position_ids=positions if axes == 3 else positions[0],
            use_cache=False,
        ).last_hidden_state
        local_row[rows] = torch.arange(len(rows), device=embeds.device)
        picked = torch.isin(source_rows, rows).nonzero().squeeze(-1)
        parts.append(out.flatten(0, 1)[local_row[source_rows[picked]] * length + source_columns[picked]])
        order.append(picked)
    return torch.cat(parts)[torch.cat(order).argsort()]


def shared_prefix_logps(
    model: nn.Module,
    batch: PreferenceBatch,
    features: ImageFeatures | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[LogProbs, LogProbs]:
    """``(log-probs, response-token counts)`` per branch, each [len(batch)], via the packed layout."""
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
    owners = len(layout.owner_keys)
    sums = token_logps.new_zeros(owners).index_add(0, layout.owners, token_logps)
    counts = torch.bincount(layout.owners, minlength=owners)
    logps: LogProbs = {}
    token_counts: LogProbs = {}
    for branch in batch.rows:
        index = torch.tensor(
            [i for i, (b, _) in enumerate(layout.owner_keys) if b == branch], device=sums.device
        )
        logps[branch] = sums[index]
        token_counts[branch] = counts[index]
    return logps, token_counts
