"""Benchmark one preference training step per engine mode on a LLaVA-1.5-7B-proportioned proxy.

    python scripts/bench_step.py                      # DPO, mDPO and MISP-DPO (K = 3), every mode
    python scripts/bench_step.py --layers 4 --batch-size 1 --repeats 5 --losses dpo
    python scripts/bench_step.py --losses dpo,mcm_dpo        # MCM-DPO's 8-branch step against DPO's
    python scripts/bench_step.py --proxy 7b-shaped    # LM head ~2% of the linear FLOPs, as at 7B
    python scripts/bench_step.py --losses misp_k1,misp,misp_k5   # MISP-DPO with K = 1, 3, 5 negative images

The proxy keeps what decides the step's cost structure at 7B: 576 image tokens from a CLIP-style tower
(336 px, patch 14), ~70 prompt text tokens, ~100-token responses, a 32k vocabulary and a Llama LM
(hidden 512 by default), LoRA on every LLM linear, non-reentrant gradient checkpointing, fp32. Weights
are random and rows synthetic (random token ids around real placeholder runs): nothing is downloaded.
With a 32k head on 2 layers the head is ~70% of the LLM's linear FLOPs per token (1 - share of the body);
``--proxy 7b-shaped`` keeps the rows and swaps in 8 layers and a 1024-token vocabulary, so the head's
share (``V h / (V h + L (4 h^2 + 3 h i))``, :func:`head_share`) is 2.0%, LLaVA-1.5-7B's being 2.0%.

A step is ``PreferenceModule``'s own (``compute``: policy log-probs with grad, reference log-probs or the
cache look-up, loss), then backward.
Configurations (``mode + reference``) run on the same pre-built batches, interleaved round-robin after
warm-up; every ratio compares to ``batched + live`` (one padded forward, adapters-off reference forward:
the TRL-style step) measured in the same round.

TRL's own step is a further configuration of the ``dpo`` loss, in the same rounds (column ``vs TRL``;
``n/a`` for the other losses, which TRL has no trainer for): ``trl.DPOTrainer.training_step`` of trl 1.16
(``pip install -e .[bench]``; without it one line says the column is skipped) on the same policy object
(same LoRA, fp32, the same non-reentrant checkpointing), beta 0.1, sigmoid loss, the same batch size, and
the same token ids and pixels in the format TRL's vision collator returns; its reference is the policy
with the adapters off, like ours (:mod:`bench_trl` says how it is built). Before timing, the script checks
that TRL's first loss and ours are both log 2 at LoRA B = 0 (exits otherwise) and prints the largest
difference between TRL's per-branch log-probs (policy and reference, chosen and rejected; batch means)
and our naive mode's with the benchmark's adapter. Its memory is measured like the others'; its LM head
is fused (``add_fused_lm_head``), so the head-row hooks of the counts never fire ("fused").

Reported:

- step time (median, IQR), samples/s and its ratio to batched and to TRL's step (median and IQR of
  per-round ratios);
- peak memory: growth of peak RSS over one step after a warm-up step (VmHWM reset by
  ``/proc/self/clear_refs``; tracemalloc cannot see torch's allocations), each configuration in a child
  process started with glibc's mmap/trim thresholds fixed, so freed tensors leave RSS at once;
- hardware-independent counts: LLM token positions per sample (policy + reference, padding included)
  against the minimum ``sum over (image, prompt) groups of P + sum_j n_j``, vision-tower calls and
  images, LM-head rows, FLOPs of the whole step (``FlopCounterMode``; masked SDPA counts dense) split
  into LM head / vision / the rest (LLM layers and attention);
- with ``dpo`` among the losses, each loss's step time relative to DPO's in the same configuration
  (MCM-DPO: 8 branches in 4 (image, context) groups against DPO's 2 branches in 1);
- the ideal speedup of the §1 work model of docs/reference/performance.md (LoRA + checkpointing: a
  policy token costs 3 token-forwards, a reference token 1), which ignores the LM head: it is the
  projection to 7B, where the head is ~2% of the FLOPs instead of the default proxy's ~50%; and the
  achieved speed-up over the ideal one (goal >= 0.8), meaningful on the 7b-shaped proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from mmpo.branches import Branch
from mmpo.data.rows import IGNORE_INDEX, PreferenceBatch, Rows, concat_rows
from mmpo.engine.cache import ReferenceCache, fingerprint
from mmpo.losses import DPOLoss, MCMDPOLoss, MDPOLoss, MISPDPOLoss, PreferenceLoss
from mmpo.models.families import get_family
from mmpo.models.loading import attach_lora
from mmpo.modules.preference import PreferenceModule

# bench_trl.py lies beside this script, which tests load by path
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_trl  # noqa: E402

BOS, EOS = 1, 2
LOSS_FACTORIES: dict[str, Callable[[], PreferenceLoss]] = {
    "dpo": DPOLoss,
    "mdpo": MDPOLoss,
    "mcm_dpo": MCMDPOLoss,
    "misp": MISPDPOLoss,  # K = 3 negative images (the paper's)
    "misp_k1": lambda: MISPDPOLoss(num_negatives=1),
    "misp_k5": lambda: MISPDPOLoss(num_negatives=5),
}
BASELINE = ("batched", "live")
CONFIGS: tuple[tuple[str, str], ...] = (
    BASELINE,
    ("naive", "live"),
    ("shared_prefix", "live"),
    ("batched", "precomputed"),
    ("shared_prefix", "precomputed"),
)
PACKED = "packed"
"""``--token-budget N``: shared_prefix with the groups of the batch's records packed into rows of at most N
tokens (``data.token_budget``), the configuration ``(packed, precomputed)``."""
TRL = ("trl", "live")
"""TRL's ``DPOTrainer`` step (:mod:`bench_trl`), timed beside the configurations of the ``dpo`` loss."""
TRL_LOSS = "dpo"
TARGETS = {"dpo": 1.6, "mdpo": 1.4}
"""Speed-up targets of shared_prefix + precomputed over batched + live; the other losses are measured only."""
MEMORY_TARGET, TOKEN_TOLERANCE, IDEAL_GOAL = 0.6, 0.05, 0.8
LOG2_TOLERANCE = 1e-6
"""|first loss - log 2| allowed for TRL's step and ours (fp32 rounding of the same numbers)."""
PROXIES: dict[str, dict[str, int]] = {"default": {}, "7b-shaped": {"layers": 8, "vocab": 1024}}
"""``--proxy``: the defaults it changes (explicit flags still win)."""
LLAVA_15_7B = {"hidden": 4096, "layers": 32, "intermediate": 11008, "vocab": 32000}
INTERMEDIATE_RATIO = 11008 / 4096


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_argument_group("proxy model and rows")
    size.add_argument("--proxy", choices=sorted(PROXIES), default="default", help="see module docstring")
    size.add_argument("--hidden", type=int, default=512)
    size.add_argument("--layers", type=int, default=2)
    size.add_argument("--heads", type=int, default=8)
    size.add_argument("--vocab", type=int, default=32064)
    size.add_argument("--vision-hidden", type=int, default=256)
    size.add_argument("--vision-layers", type=int, default=2)
    size.add_argument("--image-size", type=int, default=336, help="336 / patch 14 = 576 image tokens")
    size.add_argument("--prompt-text", type=int, default=70, help="text tokens around the image")
    size.add_argument("--response", type=int, default=100, help="mean response length (eos included)")
    size.add_argument("--jitter", type=int, default=10, help="response lengths are uniform in +-jitter")
    size.add_argument("--batch-size", type=int, default=1)
    size.add_argument("--lora-r", type=int, default=8)
    size.add_argument("--token-budget", type=int, help="add a packed shared_prefix configuration (PACKED)")
    size.add_argument("--no-checkpointing", action="store_true", help="gradient checkpointing off")
    run = parser.add_argument_group("measurement")
    run.add_argument("--losses", default="dpo,mdpo,misp")
    run.add_argument(
        "--skip-naive", action="store_true", help="leave out naive + live (the tests' ground truth)"
    )
    run.add_argument("--warmup", type=int, default=2)
    run.add_argument("--repeats", type=int, default=10)
    run.add_argument("--threads", type=int, default=2)
    run.add_argument("--skip-memory", action="store_true")
    run.add_argument("--skip-flops", action="store_true")
    run.add_argument("--memory-child", nargs=3, metavar=("LOSS", "MODE", "REFERENCE"), help=argparse.SUPPRESS)
    parser.set_defaults(**PROXIES[parser.parse_args(argv).proxy])
    return parser.parse_args(argv)


def head_share(hidden: int, layers: int, vocab: int, intermediate: int) -> float:
    """The LM head's share of a Llama LM's linear FLOPs per token: ``V h / (V h + L (4 h^2 + 3 h i))``
    (q, k, v, o projections and the SwiGLU MLP per layer; embeddings are look-ups)."""
    head = vocab * hidden
    return head / (head + layers * (4 * hidden**2 + 3 * hidden * intermediate))


# ---- proxy model and synthetic rows ----------------------------------------------------------------
def special_ids(args: argparse.Namespace) -> tuple[int, int]:
    """(image placeholder, pad) at the top of the vocabulary."""
    return args.vocab - 2, args.vocab - 1


def build_policy(args: argparse.Namespace) -> torch.nn.Module:
    """A LLaVA-1.5 layout with 7B proportions where they matter (see module docstring), LoRA attached."""
    image_token, pad = special_ids(args)
    vision = CLIPVisionConfig(
        hidden_size=args.vision_hidden,
        intermediate_size=4 * args.vision_hidden,
        num_hidden_layers=args.vision_layers,
        num_attention_heads=4,
        image_size=args.image_size,
        patch_size=14,
        projection_dim=args.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=int(INTERMEDIATE_RATIO * args.hidden),
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=pad,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=image_token,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=(args.image_size // 14) ** 2,
        pad_token_id=pad,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    if not args.no_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    lora = OmegaConf.create(
        {
            "lora": {
                "r": args.lora_r,
                "alpha": 2 * args.lora_r,
                "dropout": 0.0,
                "target_modules": "all-llm-linear",
            },
            "freeze": {"projector": True},
        }
    )
    policy = attach_lora(model, get_family("llava"), lora)
    with torch.no_grad():  # a trained-looking adapter, so the policy differs from the reference
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.01)
    return policy.train()


def synthetic_batch(args: argparse.Namespace, branches: tuple[Branch, ...], seed: int = 0) -> PreferenceBatch:
    """Rows ``[bos | text | 576 image tokens | text | response | eos]`` per branch; chosen and rejected
    share prompt ids and pixels, a corrupted or negative image gets its own pixels, a swapped context its
    own text tokens (of the same length)."""
    generator = torch.Generator().manual_seed(seed)
    image_tokens = (args.image_size // 14) ** 2
    image_token, pad = special_ids(args)

    def words(n: int) -> torch.Tensor:
        return torch.randint(3, image_token, (n,), generator=generator)

    def pixels() -> torch.Tensor:
        return torch.randn(1, 3, args.image_size, args.image_size, generator=generator)

    per_branch: dict[Branch, list[Rows]] = {b: [] for b in branches}
    for _ in range(args.batch_size):
        before = 5
        prompt = torch.cat(
            [
                torch.tensor([BOS]),
                words(before),
                torch.full((image_tokens,), image_token),
                words(args.prompt_text - before),
            ]
        )
        lengths = torch.randint(
            args.response - args.jitter, args.response + args.jitter + 1, (2,), generator=generator
        )
        responses = {
            "chosen": torch.cat([words(int(lengths[0]) - 1), torch.tensor([EOS])]),
            "rejected": torch.cat([words(int(lengths[1]) - 1), torch.tensor([EOS])]),
        }
        prompts = {"original": prompt}
        if any(b.context == "swapped" for b in branches):
            prompts["swapped"] = torch.where(prompt == image_token, prompt, words(len(prompt)))
            prompts["swapped"][0] = BOS
        images: dict[tuple[str, int], torch.Tensor] = {}
        for branch in branches:
            image = images.setdefault((branch.image, branch.k), pixels())
            response = responses[branch.response]
            context = prompts[branch.context]
            ids = torch.cat([context, response])[None]
            labels = torch.cat([torch.full_like(context, IGNORE_INDEX), response])[None]
            per_branch[branch].append(
                Rows(
                    {
                        "input_ids": ids,
                        "attention_mask": torch.ones_like(ids),
                        "labels": labels,
                        "pixel_values": image,
                    }
                )
            )
    rows = {b: concat_rows(parts, pad) for b, parts in per_branch.items()}
    return PreferenceBatch([f"synthetic-{i}" for i in range(args.batch_size)], rows, pad)


def minimum_tokens(batch: PreferenceBatch) -> int:
    """The least token positions a forward needs: each (image, prompt) group's prefix once, each response
    once but its last token (nothing is predicted from it), ``sum_groups P + sum_j (n_j - 1)``."""
    total = 0
    for record in range(len(batch)):
        seen = set()
        for branch, rows in batch.rows.items():
            is_response = rows.labels[record] != IGNORE_INDEX
            total += int(is_response.sum()) - 1
            if (branch.image, branch.k, branch.context) not in seen:
                seen.add((branch.image, branch.k, branch.context))
                total += int(is_response.int().argmax())
    return total


# ---- one step --------------------------------------------------------------------------------------
def run_step(module: PreferenceModule | bench_trl.TRLStep, batch: PreferenceBatch) -> None:
    """A configuration's step is the training module's own: ``PreferenceModule.compute`` (policy forward
    with grad, reference pass or cache look-up, loss), then backward; TRL's is ``DPOTrainer.training_step``."""
    if isinstance(module, bench_trl.TRLStep):
        module.run()
        return
    out, _ = module.compute(batch, "train")
    out.loss.backward()
    module.policy.zero_grad(set_to_none=True)


def make_step(
    policy: torch.nn.Module,
    loss: PreferenceLoss,
    mode: str,
    reference: str,
    batch: PreferenceBatch,
    cache_dir: str,
) -> PreferenceModule | bench_trl.TRLStep:
    """The module of ``mode`` and ``reference``; ``reference=precomputed`` reads a cache that the live
    adapters-off reference filled beforehand; :data:`TRL` is TRL's trainer step (``cache_dir`` its output);
    :data:`PACKED` is the shared_prefix engine (the packing is the batch's, :func:`batch_of`)."""
    if (mode, reference) == TRL:
        return bench_trl.build_trl_step(policy, batch, loss.beta, cache_dir)
    mode = "shared_prefix" if mode == PACKED else mode
    if reference == "live":
        return PreferenceModule(policy, loss, {"strategy": "adapter_off"}, {}, mode)
    module = PreferenceModule(policy, loss, {"strategy": "precomputed"}, {}, mode)
    live = PreferenceModule(policy, loss, {"strategy": "adapter_off"}, {}, mode).reference
    cache = ReferenceCache(
        cache_dir,
        fingerprint({"bench": {"loss": type(loss).__name__, "mode": mode}}),
        lambda split, branch: False,
    )
    cache.add("train", batch.ids, live.logps(policy, batch), batch.epoch)
    module.reference.cache = cache
    return module


def batch_of(config: tuple[str, str], batch: PreferenceBatch, args: argparse.Namespace) -> PreferenceBatch:
    """The batch a configuration steps on: :data:`PACKED` packs rows up to ``--token-budget`` tokens."""
    return replace(batch, token_budget=args.token_budget) if config[0] == PACKED else batch


# ---- hardware-independent counts -------------------------------------------------------------------
@dataclass
class Counts:
    policy_tokens: int = 0
    reference_tokens: int = 0
    vision_calls: int = 0
    vision_images: int = 0
    head_rows: int = 0
    """Rows through the LM head, forward passes (recomputes included) plus backward passes."""
    flops: float = 0.0
    head_flops: float = 0.0


def count_step(
    policy: torch.nn.Module, step: PreferenceModule, batch: PreferenceBatch, with_flops: bool
) -> Counts:
    """One instrumented step: decoder inputs (policy with grad, reference without), vision-tower calls,
    LM-head rows, and the FLOPs of the whole step; the head's share is ``2 * hidden * vocab`` per row pass
    (its weight is frozen, so backward costs one matmul per row, like forward)."""
    counts = Counts()
    head = policy.get_output_embeddings()

    def on_decoder(module, args, kwargs):
        embeds = kwargs["inputs_embeds"]
        if torch.is_grad_enabled():
            counts.policy_tokens += embeds.shape[0] * embeds.shape[1]
        else:
            counts.reference_tokens += embeds.shape[0] * embeds.shape[1]

    def on_tower(module, args):
        counts.vision_calls += 1
        counts.vision_images += args[0].shape[0]

    def on_head(module, args):
        counts.head_rows += args[0].numel() // args[0].shape[-1]

    def on_head_backward(module, grad_output):
        counts.head_rows += grad_output[0].numel() // grad_output[0].shape[-1]

    hooks = [
        policy.get_decoder().register_forward_pre_hook(on_decoder, with_kwargs=True),
        policy.get_base_model().model.vision_tower.register_forward_pre_hook(on_tower),
        head.register_forward_pre_hook(on_head),
        head.register_full_backward_pre_hook(on_head_backward),
    ]
    counter = FlopCounterMode(display=False)
    try:
        with counter if with_flops else contextlib.nullcontext():
            run_step(step, batch)
    finally:
        for hook in hooks:
            hook.remove()
    counts.flops = counter.get_total_flops() if with_flops else math.nan
    counts.head_flops = 2 * head.in_features * head.out_features * counts.head_rows
    return counts


# ---- memory (one child process per configuration) -------------------------------------------------
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
"""Fixed glibc thresholds: every allocation above 128 KiB is mapped and unmapped on its own, so freed
tensors leave RSS at once (by default glibc keeps them for reuse and a later step's peak hides in them)."""


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1))


def peak_step_mib(policy: torch.nn.Module, step: PreferenceModule, batch: PreferenceBatch) -> float:
    """Growth of peak RSS over one step: VmHWM reset to the current RSS through ``/proc/self/clear_refs``."""
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    run_step(step, batch)
    return (_status_kib("VmHWM") - before) / 1024


def memory_child(args: argparse.Namespace) -> None:
    """``--memory-child LOSS MODE REFERENCE``: one warm-up step, then print the measured step's peak."""
    name, mode, reference = args.memory_child
    torch.set_num_threads(args.threads)
    policy = build_policy(args)
    loss = LOSS_FACTORIES[name]()
    batch = batch_of((mode, reference), synthetic_batch(args, loss.requirements.branches), args)
    with tempfile.TemporaryDirectory() as cache_dir:
        step = make_step(policy, loss, mode, reference, batch, cache_dir)
        run_step(step, batch)
        print(f"peak_mib={peak_step_mib(policy, step, batch)}")


def measure_memory(argv: list[str], name: str, config: tuple[str, str]) -> float:
    command = [sys.executable, __file__, *argv, "--memory-child", name, *config]
    out = subprocess.run(
        command, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1].removeprefix("peak_mib="))


# ---- timing ----------------------------------------------------------------------------------------
def time_configs(
    steps: dict[tuple[str, str], PreferenceModule | bench_trl.TRLStep],
    batches: dict[tuple[str, str], PreferenceBatch],
    warmup: int,
    repeats: int,
) -> dict[tuple[str, str], list[float]]:
    """Round-robin over the configurations (start rotated each round), ``warmup`` rounds discarded."""
    names = list(steps)
    times: dict[tuple[str, str], list[float]] = {n: [] for n in names}
    for round_ in range(warmup + repeats):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            start = time.perf_counter()
            run_step(steps[name], batches[name])
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def label(config: tuple[str, str]) -> str:
    return "TRL DPOTrainer + adapters-off ref" if config == TRL else f"{config[0]} + {config[1]} ref"


@dataclass
class LossBench:
    """Everything measured for one loss: the batch, one step per configuration, and the measurements."""

    name: str
    batch: PreferenceBatch
    """Unpacked: the records and branches every configuration steps on."""
    batches: dict[tuple[str, str], PreferenceBatch]
    """What each configuration steps on (:func:`batch_of`)."""
    steps: dict[tuple[str, str], PreferenceModule | bench_trl.TRLStep]
    times: dict[tuple[str, str], list[float]] | None = None
    counts: dict[tuple[str, str], Counts] | None = None
    peaks: dict[tuple[str, str], float] | None = None

    def speedup(self, reference: tuple[str, str], config: tuple[str, str]) -> tuple[float, float, float]:
        """Quartiles of the per-round samples/s ratio of ``config`` to ``reference`` (its time / ours)."""
        return quartiles([r / t for r, t in zip(self.times[reference], self.times[config], strict=True)])

    def results(self) -> list[dict]:
        out = []
        for config in self.steps:
            q1, median, q3 = quartiles(self.times[config])
            r1, ratio, r3 = self.speedup(BASELINE, config)
            c = self.counts[config]
            n = len(self.batch)
            out.append(
                {
                    "loss": self.name,
                    "config": config,
                    "median_s": median,
                    "iqr_s": (q1, q3),
                    "samples_per_s": n / median,
                    "ratio": ratio,
                    "ratio_iqr": (r1, r3),
                    "vs_trl": self.speedup(TRL, config) if TRL in self.steps else None,
                    "policy_tokens": c.policy_tokens / n,
                    "reference_tokens": c.reference_tokens / n,
                    "minimum_tokens": minimum_tokens(self.batch) / n,
                    "vision": (c.vision_calls, c.vision_images),
                    "head_rows": c.head_rows,
                    "flops": c.flops,
                    "head_flops": c.head_flops,
                    "peak_mib": None if self.peaks is None else self.peaks[config],
                }
            )
        return out


def check_trl_parity(step: bench_trl.TRLStep, batch: PreferenceBatch) -> None:
    """Print TRL's step against ours on the same batch; exit unless both first losses are log 2."""
    check = bench_trl.parity(step, batch)
    print(
        f"[TRL parity on the {TRL_LOSS} batch: first loss (LoRA B = 0) TRL {check.first_losses[0]:.7f}, mmpo "
        f"{check.first_losses[1]:.7f}, log 2 = {math.log(2):.7f}; with the benchmark's adapter: loss TRL "
        f"{check.losses[0]:.7f}, mmpo {check.losses[1]:.7f}, per-branch log-probs (policy and reference, "
        f"chosen and rejected) max |TRL - mmpo naive| = {check.max_logp_difference:.1e}]",
        flush=True,
    )
    if any(abs(loss - math.log(2)) > LOG2_TOLERANCE for loss in check.first_losses):
        raise SystemExit(f"TRL parity failed: a first loss differs from log 2 by more than {LOG2_TOLERANCE}")


def run_benchmark(
    args: argparse.Namespace, argv: list[str], policy: torch.nn.Module, cache_dir: str, with_trl: bool
) -> list[dict]:
    """Timing of every loss (TRL's step beside DPO's configurations when ``with_trl``), then the counts,
    then memory in child processes (none runs during timing)."""
    benches = []
    for name in args.losses.split(","):
        loss = LOSS_FACTORIES[name]()
        batch = synthetic_batch(args, loss.requirements.branches)
        configs = tuple(c for c in CONFIGS if not (args.skip_naive and c[0] == "naive"))
        configs += ((PACKED, "precomputed"),) if args.token_budget else ()
        configs += (TRL,) if with_trl and name == TRL_LOSS else ()
        batches = {c: batch_of(c, batch, args) for c in configs}
        steps = {
            c: make_step(policy, loss, *c, batches[c], os.path.join(cache_dir, f"{name}_{c[0]}_{c[1]}"))
            for c in configs
        }
        if TRL in steps:
            check_trl_parity(steps[TRL], batch)
        started = time.perf_counter()
        bench = LossBench(
            name, batch, batches, steps, times=time_configs(steps, batches, args.warmup, args.repeats)
        )
        print(f"[{name}: timed in {time.perf_counter() - started:.0f} s]", flush=True)
        benches.append(bench)
    for bench in benches:
        bench.counts = {
            c: count_step(policy, bench.steps[c], bench.batches[c], not args.skip_flops) for c in bench.steps
        }
    if not args.skip_memory:
        for bench in benches:
            bench.peaks = {c: measure_memory(argv, bench.name, c) for c in bench.steps}
    return [r for bench in benches for r in bench.results()]


def ideal_ratio(result: dict, baseline: dict) -> float:
    """§1 work model: policy token = 3 token-forwards (LoRA + checkpointing), reference token = 1."""

    def work(r: dict) -> float:
        return 3 * r["policy_tokens"] + r["reference_tokens"]

    return work(baseline) / work(result)


def report(args, results: list[dict]) -> None:
    print(
        "\n## Time and memory (same run, same batches; ratios against batched + live ref, and against TRL's "
        f"DPOTrainer step for {TRL_LOSS})\n"
    )
    print(
        "| loss | config | step s (IQR) | samples/s | x batched (IQR) | vs TRL x (IQR) | ideal x (7B work model) "
        "| achieved / ideal | peak MiB | x batched mem |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    by_loss: dict[str, dict] = {}
    for r in results:
        base = by_loss.setdefault(r["loss"], r)  # the baseline comes first
        memory = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        mem_ratio = "n/a" if r["peak_mib"] is None else f"{r['peak_mib'] / base['peak_mib']:.2f}"
        vs_trl = "n/a" if r["vs_trl"] is None else "{1:.2f} ({0:.2f}-{2:.2f})".format(*r["vs_trl"])
        print(
            f"| {r['loss']} | {label(r['config'])} | {r['median_s']:.2f} ({r['iqr_s'][0]:.2f}-{r['iqr_s'][1]:.2f}) "
            f"| {r['samples_per_s']:.3f} | {r['ratio']:.2f} ({r['ratio_iqr'][0]:.2f}-{r['ratio_iqr'][1]:.2f}) "
            f"| {vs_trl} | {ideal_ratio(r, base):.2f} | {r['ratio'] / ideal_ratio(r, base):.2f} | {memory} | {mem_ratio} |"
        )
    print("\n## Hardware-independent counts per step (tokens per sample; FLOPs fwd+bwd of the whole step)\n")
    print(
        "| loss | config | LLM tok/sample policy + ref | min | policy/min | vision calls (images) "
        "| head rows | GFLOP step (of which head) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        fused = r["config"] == TRL  # TRL's fused LM head reads lm_head.weight: the head hooks never fire
        head_rows, head_flops = (
            ("fused", "fused") if fused else (r["head_rows"], f"{r['head_flops'] / 1e9:.0f}")
        )
        print(
            f"| {r['loss']} | {label(r['config'])} | {r['policy_tokens']:.0f} + {r['reference_tokens']:.0f} "
            f"| {r['minimum_tokens']:.0f} | {r['policy_tokens'] / r['minimum_tokens']:.3f} "
            f"| {r['vision'][0]} ({r['vision'][1]}) | {head_rows} | {r['flops'] / 1e9:.0f} ({head_flops}) |"
        )
    print(
        "\npeak MiB: growth of peak RSS over one step (VmHWM reset by /proc/self/clear_refs) after a warm-up "
        "step, one child process per row, glibc mmap/trim thresholds fixed at 128 KiB (freed tensors leave RSS)"
    )
    if "dpo" in by_loss and len(by_loss) > 1:
        print("\n## Step time relative to DPO's in the same configuration (median step s, ratio)\n")
        dpo = {r["config"]: r["median_s"] for r in results if r["loss"] == "dpo" and r["config"] != TRL}
        print("| loss | " + " | ".join(label(c) for c in dpo) + " |")
        print("|---|" + "---|" * len(dpo))
        for loss_name in by_loss:
            if loss_name != "dpo":
                own = {r["config"]: r["median_s"] for r in results if r["loss"] == loss_name}
                cells = [f"{own[c]:.2f} (x{own[c] / dpo[c]:.2f})" for c in dpo]
                print(f"| {loss_name} | " + " | ".join(cells) + " |")
    negative_cost(args, results)
    print("\n## Targets (shared_prefix + precomputed ref against batched + live ref)\n")
    for loss_name, base in by_loss.items():
        best = next(
            r for r in results if r["loss"] == loss_name and r["config"] == ("shared_prefix", "precomputed")
        )
        target = TARGETS.get(loss_name)
        achieved = best["ratio"] / ideal_ratio(best, base)
        lines = [
            f"achieved / ideal {achieved:.2f} (goal >= {IDEAL_GOAL}) {'met' if achieved >= IDEAL_GOAL else 'MISSED'}"
        ]
        if target is not None:
            lines.insert(
                0,
                f"samples/s x{best['ratio']:.2f} (target >= {target}) {'met' if best['ratio'] >= target else 'MISSED'}",
            )
        if best["vs_trl"] is not None:
            lines.insert(1, f"samples/s x{best['vs_trl'][1]:.2f} over TRL's DPOTrainer step")
        if best["peak_mib"] is not None:
            ratio = best["peak_mib"] / base["peak_mib"]
            lines.append(
                f"peak memory x{ratio:.2f} (target <= {MEMORY_TARGET}) "
                f"{'met' if ratio <= MEMORY_TARGET else 'MISSED'}"
            )
        excess = best["policy_tokens"] / best["minimum_tokens"] - 1
        lines.append(
            f"tokens/sample {excess:+.1%} vs minimum (target within {TOKEN_TOLERANCE:.0%}) "
            f"{'met' if abs(excess) <= TOKEN_TOLERANCE else 'MISSED'}"
        )
        print(f"- {loss_name}: " + "; ".join(lines))


def negative_cost(args: argparse.Namespace, results: list[dict]) -> None:
    """What one more negative image costs (MISP-DPO, K = 1 -> 5, shared_prefix + precomputed): per extra
    image the policy forward should grow by one prefix plus one response, ``P + n`` token positions, one
    image, and no vision call, never by a whole extra sample."""
    by_k = {
        k: next(
            (r for r in results if r["loss"] == name and r["config"] == ("shared_prefix", "precomputed")),
            None,
        )
        for k, name in ((1, "misp_k1"), (5, "misp_k5"))
    }
    if None in by_k.values():
        return
    low, high = by_k[1], by_k[5]
    per_image = (high["policy_tokens"] - low["policy_tokens"]) / 4
    prefix_and_response = 1 + args.prompt_text + (args.image_size // 14) ** 2 + args.response - 1
    print(
        "\n## One more negative image (MISP-DPO, K = 1 -> 5, shared_prefix + precomputed ref)\n\n"
        f"- LLM tokens/sample per extra image {per_image:.0f}, one prefix + one response = {prefix_and_response} "
        f"(x{per_image / prefix_and_response:.2f}); a whole extra DPO sample under batched + live ref: "
        f"{next(r for r in results if r['loss'] == 'dpo' and r['config'] == BASELINE)['policy_tokens']:.0f}\n"
        f"- vision calls {low['vision'][0]} -> {high['vision'][0]}, images {low['vision'][1]} -> {high['vision'][1]}"
        f"\n- step s {low['median_s']:.2f} -> {high['median_s']:.2f}: "
        f"{(high['median_s'] - low['median_s']) / 4:.2f} s per extra image"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} cores "
        f"({platform.machine()}), load average {os.getloadavg()[0]:.1f} at start"
        f", fp32; proxy {args.proxy}: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab} (LM head "
        f"{head_share(args.hidden, args.layers, args.vocab, int(INTERMEDIATE_RATIO * args.hidden)):.1%} of "
        f"the linear FLOPs per token; LLaVA-1.5-7B: {head_share(**LLAVA_15_7B):.1%}), "
        f"{(args.image_size // 14) ** 2} image tokens, prompt text {args.prompt_text}, responses "
        f"{args.response}+-{args.jitter}, batch {args.batch_size}, LoRA r={args.lora_r}, gradient checkpointing "
        f"{'off' if args.no_checkpointing else 'on'}; {args.warmup} warm-up + {args.repeats} interleaved rounds"
    )
    unknown = [name for name in args.losses.split(",") if name not in LOSS_FACTORIES]
    if unknown:
        raise SystemExit(f"--losses: {unknown} not benchmarked; allowed: {sorted(LOSS_FACTORIES)}")
    trl_missing = bench_trl.unavailable()
    if trl_missing:
        print(f"TRL column skipped: {trl_missing}")
    policy = build_policy(args)
    with tempfile.TemporaryDirectory() as cache_dir:
        results = run_benchmark(args, argv, policy, cache_dir, with_trl=trl_missing is None)
    report(args, results)


if __name__ == "__main__":
    main()
