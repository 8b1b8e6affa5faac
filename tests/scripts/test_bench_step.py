"""scripts/bench_step.py: the 7b-shaped proxy's LM head takes LLaVA-1.5-7B's share of the linear FLOPs."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_step", ROOT / "scripts" / "bench_step.py")
bench_step = sys.modules["bench_step"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
spec.loader.exec_module(bench_step)


def test_the_proxy_flag_sets_defaults_that_explicit_flags_override():
    assert (bench_step.parse_args([]).layers, bench_step.parse_args([]).vocab) == (2, 32064)
    shaped = bench_step.parse_args(["--proxy", "7b-shaped"])
    assert (shaped.layers, shaped.vocab) == (8, 1024)
    assert bench_step.parse_args(["--proxy", "7b-shaped", "--layers", "4"]).layers == 4


def test_7b_shaped_proxy_head_share_is_llava_7b_and_what_the_flop_counter_measures():
    args = bench_step.parse_args(["--proxy", "7b-shaped", "--vision-layers", "1"])
    policy = bench_step.build_policy(args)
    ids = torch.randint(3, 100, (1, 16))
    decoder, head = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with torch.no_grad(), policy.disable_adapter():
        with decoder:
            policy.get_base_model().model.language_model(input_ids=ids)
        with head:
            policy.get_output_embeddings()(torch.zeros(1, 16, args.hidden))
    matmuls = (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm)
    decoder_flops, head_flops = (
        sum(c.get_flop_counts()["Global"].get(op, 0) for op in matmuls) for c in (decoder, head)
    )
    measured = head_flops / (head_flops + decoder_flops)
    intermediate = policy.config.text_config.intermediate_size
    assert measured == pytest.approx(
        bench_step.head_share(args.hidden, args.layers, args.vocab, intermediate)
    )
    llava = bench_step.head_share(**bench_step.LLAVA_15_7B)  # 4096 * 32000 / (that + 32 * 202,375,168)
    assert llava == pytest.approx(0.019838, abs=1e-6)
    assert measured == pytest.approx(llava, rel=0.05)
