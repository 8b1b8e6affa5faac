"""Symmetric InfoNCE over image-caption pairs with negatives from every rank: MAPLE's ``L_contrast``.

For a global batch of B pairs with unit-norm image and text embeddings ``u_b``, ``v_b`` and temperature
``tau`` (methods.md §3.4: "the standard contrastive loss", its exact form [I])::

    L_i2t = -(1/B) sum_b log( exp(u_b.v_b / tau) / sum_{v in V} exp(u_b.v / tau) )
    L_t2i = -(1/B) sum_b log( exp(v_b.u_b / tau) / sum_{u in U} exp(v_b.u / tau) )
    L_contrast = (L_i2t + L_t2i) / 2

with key sets ``V`` = every caption of the batch and ``U`` = every image. The **extended negative pool**
([I]: MAPLE's "implicitly larger batch at no extra cost", most likely its already-embedded candidates)
adds ``text_negatives`` to ``V`` and ``image_negatives`` to ``U``, the hard-negative candidates of
every anchor (a candidate that is another pair's positive is then one more negative; nothing is
de-duplicated).

Under DDP each rank holds B/W pairs. Keys are all-gathered with autograd
(``torch.distributed.nn.functional.all_gather``: each rank's backward receives the gradient of every
rank's loss for its own rows), queries stay local and their labels are offset by the rank. Each rank
returns the mean over its own queries, so the mean over ranks, which DDP's gradient averaging
optimises, is the global loss above; in a single process the gather is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, differentiable; ``x`` in one process.

    All ranks must pass the same shape (a collective)."""
    if _world()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def info_nce(
    queries: Tensor, keys: Tensor, temperature: float, labels: Tensor, key_mask: Tensor | None = None
) -> Tensor:
    """``-(1/B) sum_b log softmax(queries_b . keys^T / tau)[labels_b]``; keys where ``key_mask`` is False
    are left out of the softmax."""
    logits = queries.float() @ keys.float().T / temperature
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[None, :], torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, labels)


def _with_negatives(
    keys: Tensor, negatives: Tensor | None, mask: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    if negatives is None:
        return keys, None
    negatives = negatives.reshape(-1, keys.shape[-1])
    present = (
        torch.ones(negatives.shape[0], dtype=torch.bool, device=negatives.device)
        if mask is None
        else mask.reshape(-1).bool()
    )
    gathered = gather_with_grad(negatives)
    gathered_present = gather_with_grad(present.float()) > 0.5
    key_mask = torch.cat([torch.ones(keys.shape[0], dtype=torch.bool, device=keys.device), gathered_present])
    return torch.cat([keys, gathered]), key_mask


def symmetric_info_nce(
    images: Tensor,
    texts: Tensor,
    temperature: float = 0.05,
    image_negatives: Tensor | None = None,
    text_negatives: Tensor | None = None,
    image_negatives_mask: Tensor | None = None,
    text_negatives_mask: Tensor | None = None,
) -> Tensor:
    """``L_contrast`` (module docstring) of this rank's pairs ``images[b]``, ``texts[b]`` ([B, D] each).

    ``image_negatives`` / ``text_negatives`` ([B, K, D] or [M, D]) extend the image / text key sets,
    ``*_mask`` (same leading shape, True = present) drops padded candidates.
    """
    if images.shape != texts.shape:
        raise ValueError(f"images {tuple(images.shape)} and texts {tuple(texts.shape)} must be paired [B, D]")
    rank, _ = _world()
    batch = images.shape[0]
    labels = rank * batch + torch.arange(batch, device=images.device)
    image_keys, image_key_mask = _with_negatives(
        gather_with_grad(images), image_negatives, image_negatives_mask
    )
    text_keys, text_key_mask = _with_negatives(gather_with_grad(texts), text_negatives, text_negatives_mask)
    image_to_text = info_nce(images, text_keys, temperature, labels, text_key_mask)
    text_to_image = info_nce(texts, image_keys, temperature, labels, image_key_mask)
    return (image_to_text + text_to_image) / 2
