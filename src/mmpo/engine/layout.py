"""The shared-prefix layout: the (record, image, context) groups of branches, packed into rows.

Branches of a record that see the same image and the same context (e.g. ``chosen@original`` and
``rejected@original``) share the identical prompt ``x`` (template + image placeholders + question). The
grouping comes from the data (record index and the branch's image source, k and context), never from
token ids, which are identical for different images; the prompt ids and image tensors of a group are
then checked to be equal. A branch with another image (``chosen@corrupted``) starts its own row.

A group with prompt length P and responses y_1..y_m (lengths n_j, eos included) takes
``P + sum_j (n_j - 1)`` tokens, the least any forward needs::

    tokens    [ x_0 ... x_{P-1} | y_1[0] .. y_1[n_1-2] | y_2[0] .. y_2[n_2-2] | ... ]
    segment   [ 0   ...   0     | 1    ...    1        | 2    ...    2        | ... ]
    position  [ pos(x)          | s ... s+n_1-2        | s ... s+n_2-2        | ... ]

with ``s = max(pos(x)) + 1`` on every axis (LLaVA: ``pos(x) = 0..P-1`` so ``s = P``; Qwen2-VL M-RoPE:
``pos(x)`` from the model's own ``get_rope_index``, and every branch restarts at the same ``s`` on all
three axes). The last response token is never an input: nothing is predicted from it.

Rows: without a token budget each group is a row of its own. With ``data.token_budget = N`` the groups
of different records are packed first-fit decreasing into rows of at most N tokens (a group longer than
N alone in its row); ``document`` numbers the groups of a row and positions restart in every group.
Padding after the last group has segment and document -1.

Attention (query q, key k; True = attend), :func:`attends`::

    attend(q, k) = k <= q  and  doc[k] == doc[q]
                   and  ( seg[k] == seg[q]  or  (seg[k] == 0 and seg[q] > 0) )

so a group never sees another, its prompt is causal, every branch sees the whole prompt and its own past,
never another branch; padding attends only to padding (no empty softmax row, no NaN in backward). The
rule is given to the model as a dense ``[rows, 1, T, T]`` mask (sdpa: boolean, eager: additive) or, with
``model.attn_implementation=flex_attention``, as a FlexAttention ``BlockMask`` built from the same rule,
whose fully masked 128 x 128 blocks (other groups, other branches) are skipped, not computed.

Targets and the hidden state that predicts them (trap: the first response token is predicted by the
last *prompt* position, which every branch of the row shares)::

    y_j[0]          <- h[P - 1]
    y_j[t], t >= 1  <- h[start_j + t - 1]

Rows are padded only to the longest row of their decoder call. Unpacked, rows of similar length share a
call and rows of very different length (mDPO's corrupted-image row has one response fewer) get their own;
packed rows are never padded (a call per row length), so a step processes exactly the minimum tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from mmpo.branches import Branch
from mmpo.data.rows import IGNORE_INDEX, PreferenceBatch, Rows
from mmpo.engine.vision import ImageKey, same_image
from mmpo.models.families import Family, ImageInputs

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention")
"""Attention implementations that take the packed rows' mask (dense 4-D, or a FlexAttention block mask)."""
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
    """[G, T] 0 for a group's prompt, j >= 1 for the j-th branch of the group, -1 for padding."""
    documents: Tensor
    """[G, T] index of the group within its row, -1 for padding."""
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
    max_padding: float = MAX_PADDING
    """Of :meth:`decoder_calls`: 0 for packed rows."""

    @property
    def lengths(self) -> Tensor:
        """[G] tokens of each packed row, padding excluded."""
        return (self.segments >= 0).sum(-1)

    def decoder_calls(self, max_padding: float | None = None, at_most: int | None = None) -> list[Tensor]:
        """Row indices of each decoder call. Rows sorted by length, longest first; a row joins the current
        call when its padding to the call's longest row stays within ``max_padding`` of that row,

            T_call - T_r <= max_padding * T_call,

        otherwise it opens the next call. Rows of very different lengths (mDPO: the corrupted-image row
        lacks the rejected response) never pad each other; rows of similar lengths share one call.
        ``max_padding`` defaults to :attr:`max_padding`; with ``at_most`` calls the shortest rows beyond
        them share the last one (a sharded decoder runs the same number of calls on every rank)."""
        max_padding = self.max_padding if max_padding is None else max_padding
        lengths = self.lengths.tolist()
        calls: list[list[int]] = []
        for row in sorted(range(len(lengths)), key=lambda r: -lengths[r]):
            if calls and lengths[calls[-1][0]] - lengths[row] <= max_padding * lengths[calls[-1][0]]:
                calls[-1].append(row)
            else:
                calls.append([row])
        if at_most is not None and len(calls) > at_most:
            calls[at_most - 1 :] = [[row for call in calls[at_most - 1 :] for row in call]]
        return [torch.tensor(call, device=self.segments.device) for call in calls]


def attends(q: Tensor, k: Tensor, seg_q: Tensor, seg_k: Tensor, doc_q: Tensor, doc_k: Tensor) -> Tensor:
    """Whether query position ``q`` attends to key position ``k`` (module docstring); elementwise, so the
    dense mask broadcasts it and the FlexAttention ``mask_mod`` calls it on index scalars."""
    return (k <= q) & (doc_k == doc_q) & ((seg_k == seg_q) | ((seg_k == 0) & (seg_q > 0)))


def attention_mask(
    segments: Tensor, documents: Tensor, implementation: str, dtype: torch.dtype
) -> Tensor | BlockMask:
    """The mask of packed rows with ``segments`` and ``documents`` [rows, T] (module docstring):
    ``[rows, 1, T, T]`` boolean for sdpa, additive for eager; a ``BlockMask`` for flex_attention."""
    rows, length = segments.shape
    if implementation == "flex_attention":

        def mask_mod(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
            return attends(q, k, segments[b, q], segments[b, k], documents[b, q], documents[b, k])

        return create_block_mask(mask_mod, rows, None, length, length, device=segments.device)
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"engine.mode=shared_prefix needs model.attn_implementation in "
            f"{list(ATTENTION_IMPLEMENTATIONS)} (a 4-D or block mask); got {implementation!r}"
        )
    index = torch.arange(length, device=segments.device)
    allowed = attends(
        index[:, None],
        index[None, :],
        segments[:, :, None],
        segments[:, None, :],
        documents[:, :, None],
        documents[:, None, :],
    )[:, None]
    if implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
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


def _length(group: _Group) -> int:
    return len(group.prompt) + sum(len(response) - 1 for _, response in group.responses)


def pack_rows(lengths: list[int], token_budget: int | None) -> list[list[int]]:
    """Groups (by index) of each row: one group per row without a budget; else first-fit decreasing
    into rows of at most ``token_budget`` tokens, a group longer than the budget alone in its row."""
    if token_budget is None:
        return [[g] for g in range(len(lengths))]
    if token_budget < 1:
        raise ValueError(f"data.token_budget={token_budget}; must be a positive number of tokens or null")
    rows: list[list[int]] = []
    free: list[int] = []
    for g in sorted(range(len(lengths)), key=lambda g: -lengths[g]):
        row = next((r for r, space in enumerate(free) if lengths[g] <= space), None)
        if row is None:
            rows.append([])
            free.append(token_budget)
            row = len(rows) - 1
        rows[row].append(g)
        free[row] -= lengths[g]
    return rows


def build_layout(model: nn.Module, family: Family, batch: PreferenceBatch) -> Layout:
    """Group the branches of ``batch`` and pack the groups into rows, ``batch.token_budget`` tokens at
    most (see module docstring)."""
    groups, owner_keys = _groups(model, family, batch)
    lengths = [_length(g) for g in groups]
    packing = pack_rows(lengths, batch.token_budget)
    width = max(sum(lengths[g] for g in row) for row in packing)
    device = groups[0].prompt.device
    shape = (len(packing), width)
    input_ids = torch.full(shape, batch.pad_token_id, dtype=torch.long, device=device)
    positions = torch.zeros((family.position_axes, *shape), dtype=torch.long, device=device)
    segments = torch.full(shape, -1, dtype=torch.long, device=device)
    documents = torch.full(shape, -1, dtype=torch.long, device=device)
    sources, targets, owners, images = [], [], [], []
    for r, row in enumerate(packing):
        cursor = 0
        images.append([])
        for document, group in enumerate(groups[g] for g in row):
            prompt_length = len(group.prompt)
            joined = family.join_images(group.images) if group.images else None
            token_types = group.rows.tensors.get("mm_token_type_ids")
            token_types = None if token_types is None else token_types[group.record, :prompt_length]
            prompt_positions = family.prompt_positions(model, group.prompt, token_types, joined)
            prompt = slice(cursor, cursor + prompt_length)
            input_ids[r, prompt] = group.prompt
            positions[:, r, prompt] = prompt_positions
            segments[r, prompt] = 0
            documents[r, cursor : cursor + lengths[row[document]]] = document
            images[r].extend(zip(group.keys, group.images, strict=True))
            next_position = int(prompt_positions.max()) + 1
            last_prompt = cursor + prompt_length - 1
            cursor += prompt_length
            for j, (owner, response) in enumerate(group.responses, start=1):
                inputs = response[:-1]
                span = slice(cursor, cursor + len(inputs))
                input_ids[r, span] = inputs
                positions[:, r, span] = next_position + torch.arange(len(inputs), device=device)
                segments[r, span] = j
                row_sources = torch.cat(
                    [
                        torch.tensor([last_prompt], device=device),
                        torch.arange(cursor, cursor + len(inputs), device=device),
                    ]
                )
                sources.append(r * width + row_sources)
                targets.append(response)
                owners.append(torch.full_like(response, owner))
                cursor += len(inputs)
    return Layout(
        input_ids=input_ids,
        positions=positions,
        segments=segments,
        documents=documents,
        images=images,
        sources=torch.cat(sources),
        targets=torch.cat(targets),
        owners=torch.cat(owners),
        owner_keys=owner_keys,
        max_padding=MAX_PADDING if batch.token_budget is None else 0.0,
    )
