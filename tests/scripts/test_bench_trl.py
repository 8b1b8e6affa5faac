"""scripts/bench_trl.py: TRL's DPOTrainer step on a tiny bench_step proxy is our DPO step.

TRL's own code runs (``DPOTrainer.training_step``, ``compute_ref_log_probs``) on the rows of
``synthetic_batch``; our side is the naive engine mode with the adapters-off reference.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch

from mmpo.branches import CHOSEN, REJECTED
from mmpo.data.rows import IGNORE_INDEX

from ..conftest import ROOT

pytest.importorskip("trl")

spec = importlib.util.spec_from_file_location("bench_step", ROOT / "scripts" / "bench_step.py")
bench_step = sys.modules["bench_step"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
spec.loader.exec_module(bench_step)
bench_trl = bench_step.bench_trl

TINY = (
    "--hidden 64 --layers 1 --vocab 256 --image-size 28 --vision-hidden 32 --prompt-text 8 --response 6 "
    "--jitter 2 --vision-layers 1"
).split()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(TRL step, batch) on the tiny proxy with its trained-looking adapter (LoRA B != 0)."""
    torch.set_num_threads(1)
    args = bench_step.parse_args(TINY)
    policy = bench_step.build_policy(args)
    batch = bench_step.synthetic_batch(args, bench_step.DPOLoss().requirements.branches)
    step = bench_trl.build_trl_step(policy, batch, beta=0.1, output_dir=str(tmp_path_factory.mktemp("trl")))
    return step, batch


def test_inputs_are_the_chosen_then_rejected_rows_in_trls_collator_layout(built):
    step, batch = built
    inputs = step.inputs
    for offset, branch in enumerate((CHOSEN, REJECTED)):
        rows = batch.rows[branch].tensors
        length = rows["input_ids"].shape[1]
        row = inputs["input_ids"][offset, :length]
        assert torch.equal(row, rows["input_ids"][0])
        assert (inputs["input_ids"][offset, length:] == batch.pad_token_id).all()
        assert inputs["attention_mask"][offset].sum() == length
        assert torch.equal(
            inputs["completion_mask"][offset, :length].bool(), rows["labels"][0] != IGNORE_INDEX
        )
        assert torch.equal(inputs["pixel_values"][offset], rows["pixel_values"][0])
    assert not inputs["attention_mask"].all()  # the shorter response is padded: TRL's masks are exercised


def test_trl_first_loss_is_log_2_and_its_log_probs_are_our_naive_ones(built):
    step, batch = built
    check = bench_trl.parity(step, batch)
    assert check.first_losses == pytest.approx((math.log(2), math.log(2)), abs=1e-6)
    assert check.trl_logps == pytest.approx(check.mmpo_logps, abs=1e-4)
    # with the trained-looking adapter the reference is the base model (adapters off), not a copy of the
    # adapter, so the policy's log-probs and the loss differ from the reference's and from log 2
    assert "ref" not in step.trainer.model.peft_config
    assert abs(check.trl_logps[0] - check.trl_logps[2]) > 1e-3
    assert check.losses[0] == pytest.approx(check.losses[1], abs=1e-6)
    assert abs(check.losses[0] - math.log(2)) > 1e-4
