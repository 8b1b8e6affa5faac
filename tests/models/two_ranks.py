"""Worker of a 2-process gloo test (:mod:`tests.models.test_sharding`), in a module of its own: each spawned
process imports only what this one does."""

from __future__ import annotations

import copy
from datetime import timedelta

import torch
from torch import distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from mmpo.engine.chunked import response_token_logps

RESPONSE_TOKENS = (5, 1)
"""Per rank: rank 0 has 5 response tokens, rank 1 one."""


def chunk_unequally(rank: int, store: str, out: str) -> None:
    """Each rank scores its response tokens with a sharded head, 2 rows at a time, and saves the head's
    input sizes per call, its log-probs and the head's full gradient next to the unsharded expectations."""
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=30)
    )
    torch.manual_seed(0)
    head = nn.Linear(8, 11)
    unsharded = copy.deepcopy(head)
    fully_shard(head, mesh=init_device_mesh("cpu", (2,)))
    generator = torch.Generator().manual_seed(1)
    hidden = [torch.randn(n, 8, generator=generator) for n in RESPONSE_TOKENS]
    targets = [torch.randint(11, (n,), generator=generator) for n in RESPONSE_TOKENS]
    calls = []
    head.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    logps = response_token_logps(hidden[rank].requires_grad_(), head, targets[rank], chunk_rows=2)
    logps.sum().backward()
    pairs = zip(hidden, targets, strict=True)
    (sum(response_token_logps(h, unsharded, y, 2).sum() for h, y in pairs) / 2).backward()  # FSDP averages
    torch.save(
        {
            "calls": calls,
            "logps": logps.detach(),
            "expected": response_token_logps(hidden[rank], unsharded, targets[rank], 2).detach(),
            "grad": head.weight.grad.full_tensor(),
            "expected_grad": unsharded.weight.grad,
        },
        f"{out}/{rank}.pt",
    )
    dist.destroy_process_group()
