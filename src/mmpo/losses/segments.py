"""Segment weights from the diff of a chosen and a rejected response (RLHF-V's DDPO, CHiP's segment level).

The two token sequences are aligned with :class:`difflib.SequenceMatcher` (what the official code calls,
with its defaults: no junk function, ``autojunk`` on). Matching blocks shorter than ``min_match`` tokens
are dropped; the gaps before, between and after the kept blocks pair a span of the rejected response with
a span of the chosen one. A pair whose spans are both non-empty is a *modified segment*: its tokens weigh
``weight``, every other token 1 (a pure insertion or deletion, one span empty, keeps weight 1), padding 0::

    rejected  a b c  X Y  d e f g        chosen  a b c  Z  d e f g      (min_match 3)
    weights   1 1 1  w w  1 1 1 1                1 1 1  w  1 1 1 1
"""

from __future__ import annotations

from difflib import SequenceMatcher

from torch import Tensor

from mmpo.branches import TokenLogProbs


def modified_tokens(rejected: list[int], chosen: list[int], min_match: int) -> tuple[list[int], list[int]]:
    """Indices of the tokens of ``rejected`` and of ``chosen`` that lie in modified segments."""
    blocks = SequenceMatcher(None, rejected, chosen).get_matching_blocks()
    kept = [m for m in blocks[:-1] if m.size >= min_match] + [blocks[-1]]  # the last is the (len, len, 0) end
    in_rejected, in_chosen = [], []
    start_rejected = start_chosen = 0
    for block in kept:
        if block.a > start_rejected and block.b > start_chosen:
            in_rejected += range(start_rejected, block.a)
            in_chosen += range(start_chosen, block.b)
        start_rejected, start_chosen = block.a + block.size, block.b + block.size
    return in_rejected, in_chosen


def segment_weights(
    chosen: TokenLogProbs, rejected: TokenLogProbs, weight: float, min_match: int = 3
) -> tuple[Tensor, Tensor]:
    """Per-token weights ``([batch, T_chosen], [batch, T_rejected])`` of each record's pair of responses."""
    weights = (chosen.mask.float(), rejected.mask.float())
    for row in range(chosen.ids.shape[0]):
        pair = [t.ids[row][t.mask[row]].tolist() for t in (rejected, chosen)]
        in_rejected, in_chosen = modified_tokens(*pair, min_match)
        weights[1][row, in_rejected] = weight
        weights[0][row, in_chosen] = weight
    return weights[0], weights[1]
