"""Chunked response-only log-probs equal the full-logits ``sequence_logps`` (values and gradients), and
the head only ever sees response-predicting positions, ``chunk_rows`` at a time."""

from __future__ import annotations

import pytest
import torch

from mmpo.data.rows import IGNORE_INDEX
from mmpo.engine.chunked import response_token_logps
from mmpo.engine.logprobs import sequence_logps


def problem(seed: int = 0):
    """Hidden states [3, 12, 16], a 50-word head, and labels with prompts of 4, 7, 2 tokens and
    responses ending at 12, 9, 10 (right padding)."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 12, 16, generator=generator, requires_grad=True)
    head = torch.nn.Linear(16, 50, bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.randn(50, 16, generator=generator))
        head.bias.copy_(torch.randn(50, generator=generator))
    labels = torch.full((3, 12), IGNORE_INDEX)
    for row, (prompt, end) in enumerate([(4, 12), (7, 9), (2, 10)]):
        labels[row, prompt:end] = torch.randint(50, (end - prompt,), generator=generator)
    return hidden, head, labels


def response_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat source index t-1, target y_t, row) of every response token t."""
    rows, cols = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows * labels.shape[1] + cols - 1, labels[rows, cols], rows


@pytest.mark.parametrize("chunk_rows", [1, 5, 4096])
def test_chunked_equals_full_logits_values_and_gradients(chunk_rows):
    hidden, head, labels = problem()
    expected, counts = sequence_logps(head(hidden), labels)
    expected.sum().backward()
    want = [hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()]
    hidden.grad = head.weight.grad = head.bias.grad = None

    sources, targets, rows = response_positions(labels)
    token_logps = response_token_logps(hidden.flatten(0, 1)[sources], head, targets, chunk_rows)
    sums = torch.zeros(3).index_add(0, rows, token_logps)
    sums.sum().backward()

    assert token_logps.dtype == torch.float32
    torch.testing.assert_close(sums, expected, atol=1e-5, rtol=1.3e-6)
    assert torch.equal(torch.bincount(rows, minlength=3), counts)
    for got, grad in zip([hidden.grad, head.weight.grad, head.bias.grad], want, strict=True):
        torch.testing.assert_close(got, grad, atol=1e-5, rtol=1e-5)


def test_head_sees_only_response_positions_in_chunks():
    hidden, head, labels = problem()
    seen: list[int] = []
    head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    sources, targets, _ = response_positions(labels)
    response_token_logps(hidden.flatten(0, 1)[sources], head, targets, chunk_rows=8).sum().backward()
    assert int((labels != IGNORE_INDEX).sum()) == 8 + 2 + 8  # not the 3 x 12 positions of the rows
    assert seen[:3] == [6, 6, 6]  # forward, one chunk at a time: ceil(18 / 8) chunks of equal size
    assert seen[3:] == [6, 6, 6]  # logits recomputed per chunk in backward instead of stored


def test_no_graph_under_no_grad():
    hidden, head, labels = problem()
    sources, targets, _ = response_positions(labels)
    with torch.no_grad():
        out = response_token_logps(hidden.flatten(0, 1)[sources], head, targets, chunk_rows=4)
    assert not out.requires_grad
