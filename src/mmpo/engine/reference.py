"""Reference strategies: where the reference log-probs of a batch come from.

- ``adapter_off``: the policy with its LoRA adapters disabled (no extra memory; the mDPO/TRL default).
- ``copy``: a frozen copy of the initial policy (full fine-tuning).
- ``none``: reference-free losses (SFT).

All run the same engine as the policy, under ``no_grad``, in the same dtype, so at step 0 with
policy == reference every DPO-style term equals log 2.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch import nn

from mmpo.branches import LogProbs
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.forward import branch_logps

STRATEGIES = ("adapter_off", "copy", "none")


class Reference:
    def __init__(self, strategy: str, policy: nn.Module, mode: str = "batched"):
        if strategy not in STRATEGIES:
            raise ValueError(f"reference.strategy={strategy!r}; allowed: {list(STRATEGIES)}")
        if strategy == "adapter_off" and not hasattr(policy, "disable_adapter"):
            raise ValueError("reference=adapter_off needs a LoRA policy (model.lora.enabled=true); "
                             "use reference=copy for full fine-tuning")
        self.strategy = strategy
        self.mode = mode
        self.frozen = None
        if strategy == "copy":
            self.frozen = copy.deepcopy(policy).eval().requires_grad_(False)

    @torch.no_grad()
    def logps(self, policy: nn.Module, batch: PreferenceBatch) -> LogProbs | None:
        if self.strategy == "none":
            return None
        model = self.frozen if self.frozen is not None else policy
        context = policy.disable_adapter() if self.strategy == "adapter_off" else nullcontext()
        with context:
            logps, _ = branch_logps(model, batch.for_reference(), self.mode)
        return logps

    def to(self, device) -> "Reference":
        if self.frozen is not None:
            self.frozen.to(device)
        return self
