"""The shared-prefix layout: one packed row per (record, image, context) group of branches.

Branches of a record that see the same image and the same context (e.g. ``chosen@original`` and
``rejected@original``) share the identical prompt ``x`` (template + image placeholders + question). The
grouping comes from the data (record index and the branch's image source, k and context), never from
token ids, which are identical for different images; the prompt ids and image tensors of a group are
then checked to be equal. A branch with another image (``chosen@corrupted``) starts its own row.

Packed row of a group with prompt length P and responses y_1..y_m (lengths n_j, eos included)::

    tokens    [ x_0 ... x_{P-1} | y_1[0] .. y_1[n_1-2] | y_2[0] .. y_2[n_2-2] | ... | pad ]
    segment   [ 0   ...   0     | 1    ...    1        | 2    ...    2        | ... | -1  ]
    position  [ pos(x)          | s ... s+n_1-2        | s ... s+n_2-2        | ... | 0   ]

with ``s = max(pos(x)) + 1`` on every axis (LLaVA: ``pos(x) = 0..P-1`` so ``s = P``; Qwen2-VL M-RoPE:
``pos(x)`` from the model's own ``get_rope_index``, and every branch restarts at the same ``s`` on all
three axes). The last response token is never an input: nothing is predicted from it.

Attention (query q, key k; a boolean mask, True = attend)::

    attend(q, k) = k <= q  and  ( seg[k] == seg[q]  or  (seg[k] == 0 and seg[q] > 0) )

so the prompt is causal, every branch sees the whole prompt and its own past, never another branch;
padding attends only to padding (no empty softmax row, no NaN in backward).

Targets and the hidden state that predicts them (trap: the first response token is predicted by the
last *prompt* position, which every branch of the row shares)::

    y_j[0]          <- h[P - 1]
    y_j[t], t >= 1  <- h[start_j + t - 1]

Rows are padded only to the longest row of their decoder call: rows of similar length share a call,
rows of very different length (mDPO's corrupted-image row has one response fewer) get their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mmpo.branches import Branch
from mmpo.data.rows import IGNORE_INDEX, PreferenceBatch, Rows
from mmpo.engine.vision import ImageKey, same_image
from mmpo.models.families import Family, ImageInputs

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
MAX_PADDING = 0.05
"""Largest padding of a row, relative to the longest row of its decoder call (:meth:`Layout.decoder_calls`)."""


@dataclass
class _Group:
    """Branches of one record that share an image and a context, i.e. one prompt."""

    record: int
    """Row of the record in every branch's Rows."""
    prompt: Tensor
    rows: Rows
    """The Rows of the branch that opened the group (its per-token keys, e.g. ``mm_token_type_ids``)."""
    images: list[ImageInputs]
    keys: list[ImageKey]
    responses: list[tuple[int, Tensor]] = field(default_factory=list)
    """(owner index, response ids with eos) of each branch of the group."""


@dataclass
class Layout:
    """Packed rows of a batch and the bookkeeping that maps hidden states back to branches."""

    input_ids: Tensor
    """[G, T] packed token ids (pad id after the last branch)."""
    positions: Tensor
    """[axes, G, T] position ids (1 axis for LLaVA, 3 for M-RoPE)."""
    segments: Tensor
    """[G, T] 0 for the prompt, j >= 1 for the j-th branch of the row, -1 for padding."""
    images: list[list[tuple[ImageKey, ImageInputs]]]
    """Images of every packed row, in placeholder order."""
    sources: Tensor
    """[M] flat index into [G * T] of the hidden state that predicts each response token."""
    targets: Tensor
    """[M] the response tokens."""
    owners: Tensor
    """[M] index into :attr:`owner_keys` of the branch row each target belongs to."""
    owner_keys: list[tuple[Branch, int]]
    """(branch, record index) of each owner."""

    @property
    def lengths(self) -> Tensor:
        """[G] tokens of each packed row, padding excluded."""
        return (self.segments >= 0).sum(-1)

    def decoder_calls(self, max_padding: float = MAX_PADDING) -> list[Tensor]:
        """Row indices of each decoder call. Rows sorted by length, longest first; a row joins the current
        call when its padding to the call's longest row stays within ``max_padding`` of that row,

            T_call - T_r <= max_padding * T_call,

        otherwise it opens the next call. Rows of very different lengths (mDPO: the corrupted-image row
        lacks the rejected response) never pad each other; rows of similar lengths share one call."""
        lengths = self.lengths.tolist()
        calls: list[list[int]] = []
        for row in sorted(range(len(lengths)), key=lambda r: -lengths[r]):
            if calls and lengths[calls[-1][0]] - lengths[row] <= max_padding * lengths[calls[-1][0]]:
                calls[-1].append(row)
            else:
                calls.append([row])
        return [torch.tensor(call, device=self.segments.device) for call in calls]


def attention_mask(segments: Tensor, implementation: str, dtype: torch.dtype) -> Tensor:
    """The 4-D mask ``[rows, 1, T, T]`` of packed rows with ``segments`` [rows, T] (module docstring):
    boolean for sdpa, additive for eager."""
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    allowed = (causal & ((seg_k == seg_q) | ((seg_k == 0) & (seg_q > 0))))[:, None]
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    raise ValueError(
        f"engine.mode=shared_prefix needs model.attn_implementation in "
        f"{list(ATTENTION_IMPLEMENTATIONS)} (a 4-D mask); got {implementation!r}"
    )


def _same_images(a: list[ImageInputs], b: list[ImageInputs]) -> bool:
    return len(a) == len(b) and all(same_image(x, y) for x, y in zip(a, b, strict=True))


def _groups(model: nn.Module, family: Family, batch: PreferenceBatch) -> tuple[list[_Group], list]:
    images = {branch: family.images_of_rows(model, rows.tensors) for branch, rows in batch.rows.items()}
    groups: dict[tuple, _Group] = {}
    owner_keys: list[tuple[Branch, int]] = []
    for record in range(len(batch)):
        for branch, rows in batch.rows.items():
            length = int(rows.tensors["attention_mask"][record].sum())
            ids = rows.tensors["input_ids"][record, :length]
            is_response = rows.labels[record, :length] != IGNORE_INDEX
            start = int(is_response.int().argmax())
            if start == 0 or not is_response[start:].all():
                raise ValueError(
                    f"record {batch.ids[record]!r}, branch {branch}: a row must be [prompt | response] "
                    "with a non-empty prompt and the response labels as one block at its end"
                )
            key = (record, branch.image, branch.k, branch.context)
            group = groups.get(key)
            if group is None:
                mine = images[branch][record]
                keys = [(batch.ids[record], branch.image, branch.k, i) for i in range(len(mine))]
                group = groups[key] = _Group(record, ids[:start], rows, mine, keys)
            elif not (
                torch.equal(group.prompt, ids[:start]) and _same_images(group.images, images[branch][record])
            ):
                raise ValueError(
                    f"record {batch.ids[record]!r}: branch {branch} sees the same image and context as "
                    "another branch but its prompt ids or image tensors differ; the collator must "
                    "give branches of a record identical prompts"
                )
            group.responses.append((len(owner_keys), ids[start:]))
            owner_keys.append((branch, record))
    return list(groups.values()), owner_keys


def build_layout(model: nn.Module, family: Family, batch: PreferenceBatch) -> Layout:
    """Group the branches of ``batch`` and pack each group into one row (see module docstring)."""
    groups, owner_keys = _groups(model, family, batch)
    width = max(len(g.prompt) + sum(len(r) - 1 for _, r in g.responses) for g in groups)
    device = groups[0].prompt.device
    input_ids = torch.full((len(groups), width), batch.pad_token_id, dtype=torch.long, device=device)
    positions = torch.zeros((family.position_axes, len(groups), width), dtype=torch.long, device=device)
    segments = torch.full((len(groups), width), -1, dtype=torch.long, device=device)
    sources, targets, owners = [], [], []
    for g, group in enumerate(groups):
        prompt_length = len(group.prompt)
        joined = family.join_images(group.images) if group.images else None
        token_types = group.rows.tensors.get("mm_token_type_ids")
        token_types = None if token_types is None else token_types[group.record, :prompt_length]
        prompt_positions = family.prompt_positions(model, group.prompt, token_types, joined)
        input_ids[g, :prompt_length] = group.prompt
        positions[:, g, :prompt_length] = prompt_positions
        segments[g, :prompt_length] = 0
        next_position = int(prompt_positions.max()) + 1
        cursor = prompt_length
        for j, (owner, response) in enumerate(group.responses, start=1):
            inputs = response[:-1]
            span = slice(cursor, cursor + len(inputs))
            input_ids[g, span] = inputs
            positions[:, g, span] = next_position + torch.arange(len(inputs), device=device)
            segments[g, span] = j
            row_sources = torch.cat(
                [
                    torch.tensor([prompt_length - 1], device=device),
                    torch.arange(cursor, cursor + len(inputs), device=device),
                ]
            )
            sources.append(g * width + row_sources)
            targets.append(response)
            owners.append(torch.full_like(response, owner))
            cursor += len(inputs)
    return Layout(
        input_ids=input_ids,
        positions=positions,
        segments=segments,
        images=[list(zip(g.keys, g.images, strict=True)) for g in groups],
        sources=torch.cat(sources),
        targets=torch.cat(targets),
        owners=torch.cat(owners),
        owner_keys=owner_keys,
    )
