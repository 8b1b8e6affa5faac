"""Reproduction targets: one per paper table, each a Hydra multirun of the paper's runs on its real model.

``python -m mmpo.repro <target>`` (``make repro-<target>``) composes every point of the target's sweep
with the real ``conf/``, runs the start-up checks a run would (module kind, trainer, benchmark data), and
- if anything is missing, prints what to download, the exact place the composed config reads it from,
  and the GPU hours the target needs, then exits 2 without starting a run;
- otherwise runs ``python train.py -m <sweep>`` into ``outputs/repro/<target>`` and writes its table.

GPU hours are the paper's own figure where it gives one; otherwise :func:`estimated_gpu_hours`.
``python -m mmpo.repro --list`` lists the targets. The shapes world's CPU versions of the same tables are
``make repro-shapes`` (the Makefile).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[2]
A100_BF16_FLOPS = 312e12  # dense bf16 peak of one A100
MFU = 0.35  # model FLOPs utilisation assumed for the estimate
FORWARDS_PER_POLICY_BRANCH = 4  # forward + recomputed forward (checkpointing) + backward (about 2 forwards)


@dataclass(frozen=True)
class Download:
    """One thing to fetch: ``how`` is a shell command with ``{path}`` = the composed value of ``key``."""

    key: str
    what: str
    how: str


@dataclass(frozen=True)
class Target:
    """A paper table: the sweep that reproduces it, what it reads and what it costs."""

    paper: str
    table: str
    sweep: tuple[str, ...]  # train.py multirun overrides
    downloads: tuple[Download, ...]
    records: int  # training examples (pairs) per epoch
    tokens_per_branch: int  # image tokens + prompt + response of one branch
    parameters: float  # model parameters, for the estimate
    gpu_hours_reported: float | None = None
    note: str = ""


LLAVA7B = Download(
    "model.path",
    "LLaVA-1.5-7B in HF layout (llava-hf/llava-1.5-7b-hf)",
    "huggingface-cli download llava-hf/llava-1.5-7b-hf --local-dir {path}",
)
MDPO_DATA = Download(
    "data.path",
    "the mDPO preference set (fwnlp/mDPO-preference-data, 10K VLFeedback pairs), converted to records",
    "huggingface-cli download fwnlp/mDPO-preference-data --repo-type dataset --local-dir {path}.raw && "
    "python scripts/convert.py --format mdpo --input {path}.raw/vlfeedback_llava_10k.json "
    "--image-root {path}.raw/images --output {path}",
)
MDPO_BENCHMARKS = "benchmark=[mmhal,object_halbench,amber]"
MDPO_ON_LLAVA = "the paper runs its ablations on Bunny-v1.0-3B, which transformers 5 cannot load (README, Models); this target runs them on LLaVA-1.5-7B"
MDPO_COST = dict(records=10_000, tokens_per_branch=800, parameters=7.06e9)

TARGETS: dict[str, Target] = {
    "mdpo-table1": Target(
        "mDPO (arXiv 2406.11839)",
        "Table 1, LLaVA-v1.5-7B rows: DPO vs mDPO",
        ("experiment=mdpo_llava7b", "loss=dpo,mdpo", MDPO_BENCHMARKS),
        (LLAVA7B, MDPO_DATA),
        **MDPO_COST,
    ),
    "mdpo-table2": Target(
        "mDPO (arXiv 2406.11839)",
        "Table 2: full / - conditional term / - anchor term / - both",
        ("experiment=mdpo_llava7b", "loss.w_copo=1,0", "loss.w_anc=1,0", MDPO_BENCHMARKS),
        (LLAVA7B, MDPO_DATA),
        **MDPO_COST,
        note=MDPO_ON_LLAVA,
    ),
    "mdpo-table3": Target(
        "mDPO (arXiv 2406.11839)",
        "Table 3: rejected image = random image / crop 0-20% / crop 20-50% / MoCo v2",
        ("experiment=mdpo_llava7b", "negative_sampler=random_image,crop,crop_20_50,mocov2", MDPO_BENCHMARKS),
        (LLAVA7B, MDPO_DATA),
        **MDPO_COST,
        note=MDPO_ON_LLAVA,
    ),
    "mdpo-table4": Target(
        "mDPO (arXiv 2406.11839)",
        "Table 4: anchors y_w / y_w,y_l / y_w,y_l,m_l",
        (
            "experiment=mdpo_llava7b",
            "loss.anchors=[chosen],[chosen,rejected],[chosen,rejected,corrupted]",
            MDPO_BENCHMARKS,
        ),
        (LLAVA7B, MDPO_DATA),
        **MDPO_COST,
        note=MDPO_ON_LLAVA,
    ),
}


LLAVA16 = Download(
    "model.path",
    "LLaVA-1.6-Vicuna-7B in HF layout (llava-hf/llava-v1.6-vicuna-7b-hf)",
    "huggingface-cli download llava-hf/llava-v1.6-vicuna-7b-hf --local-dir {path}",
)
MCM_DPO_DATA = Download(
    "data.path",
    "MCM-DPO's TAlt preference pairs (not yet released by the authors: the repository holds 10 examples "
    "per platform), converted to records",
    "python scripts/convert.py --format mcm_dpo --input <the released TAlt pairs> --output {path}",
)
COCO_POOL = Download(
    "negative_sampler.pool",
    "the MISP-DPO pool: CLIP ViT-L/14 (openai/clip-vit-large-patch14) over COCO train2017 "
    "(cocodataset.org), top-64 per training record, and its SAE",
    "huggingface-cli download openai/clip-vit-large-patch14 --local-dir models/clip-vit-large-patch14 && "
    "python scripts/build_pool.py --model models/clip-vit-large-patch14 --images data/coco/train2017 "
    "--records data/mdpo/train.jsonl --out {path} --top-m 64 && "
    "python scripts/train_sae.py --pool {path} --out {path}/sae",
)
QWEN2VL_2B = Download(
    "model.path",
    "Qwen2-VL-2B-Instruct in HF layout (Qwen/Qwen2-VL-2B-Instruct), the retriever",
    "huggingface-cli download Qwen/Qwen2-VL-2B-Instruct --local-dir {path}",
)
QWEN2VL_7B_REWARD = Download(
    "reward_model.path",
    "Qwen2-VL-7B-Instruct in HF layout (Qwen/Qwen2-VL-7B-Instruct), the reward MLLM",
    "huggingface-cli download Qwen/Qwen2-VL-7B-Instruct --local-dir {path}",
)
MAPLE_DATA = Download(
    "data.path",
    "caption records with their candidate files (the paper's OpenImages subset is not released; any "
    "caption set, e.g. COCO train2017 captions)",
    "python scripts/convert.py ... --output {path} && python scripts/build_candidates.py data "
    "--records {path}/train.jsonl --kind caption --vision-model <local DINOv2 dir>",
)
TARGETS.update(
    {
        "misp-dpo-table1": Target(
            "MISP-DPO (arXiv 2509.25717)",
            "Table 1, LLaVA-1.5-7B rows: DPO / mDPO / MISP-DPO",
            (
                "experiment=misp_dpo_llava15",
                "loss=dpo,mdpo,misp_dpo",
                "benchmark=[mmhal,hallusionbench,pope,mmvp]",
            ),
            (LLAVA7B, MDPO_DATA, COCO_POOL),
            **MDPO_COST,
            note="the paper's training data, lr and epochs are not published: mDPO's recipe and data "
            "(experiment=misp_dpo_llava15); the mDPO row takes its one negative from the pool, not a diffusion "
            "image; the random multi-negative row is negative_sampler=random_image '~negative_sampler.pool'",
        ),
        "mcm-dpo-table1": Target(
            "MCM-DPO (arXiv 2510.00647)",
            "main table, LLaVA-1.6-7B on TAlt: DPO vs MCM-DPO from the alt-text SFT stage",
            (
                "experiment=mcm_dpo_llava16",
                "model.init_from=base:sft_alt_text_llava16",
                "loss=dpo,mcm_dpo",
                "benchmark=alt_text",
            ),
            (LLAVA16, MCM_DPO_DATA),
            records=10_000,
            tokens_per_branch=800,
            parameters=7.06e9,
            note="the SFT stage (experiment=sft_alt_text_llava16, 202K samples, not released) is built first as "
            "a cached base; full fine-tuning, so the estimate understates the optimizer's share",
        ),
        "maple-table1": Target(
            "MAPLE (arXiv 2506.06970)",
            "retrieval, Qwen2-VL-2B retriever with a Qwen2-VL-7B reward: COCO and Flickr30K R@1",
            ("experiment=maple_qwen2vl2b", "benchmark=[coco_retrieval,flickr30k_retrieval]"),
            (QWEN2VL_2B, QWEN2VL_7B_REWARD, MAPLE_DATA),
            records=0,
            tokens_per_branch=0,
            parameters=2.2e9,
            gpu_hours_reported=32 * 32,  # 32 A100-80GB for about 32 hours (methods.md §3.5)
        ),
    }
)


def estimated_gpu_hours(
    parameters: float, tokens: int, records: int, epochs: int, policy_branches: int, reference_branches: int
) -> float:
    """A100 hours of one run from the transformer FLOP count, 2·P FLOPs per token per forward::

        FLOPs = epochs · records · tokens · 2P · (4 · policy_branches + reference_branches)
        hours = FLOPs / (312e12 · MFU) / 3600,   MFU = 0.35

    A policy branch costs 4 forwards (forward, the forward that gradient checkpointing recomputes, and a
    backward of about two), a reference branch one. An estimate, to size the job; not a measurement."""
    flops = epochs * records * tokens * 2 * parameters
    flops *= FORWARDS_PER_POLICY_BRANCH * policy_branches + reference_branches
    return flops / (A100_BF16_FLOPS * MFU) / 3600


def sweep_points(sweep: tuple[str, ...]) -> list[list[str]]:
    """The override list of every point of a multirun, expanded as Hydra's basic sweeper expands it."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep))
    return [point for batch in BasicSweeper.split_arguments(parsed, None) for point in batch]


def point_problems(cfg: DictConfig) -> list[str]:
    """What stops this run at start-up: the module kind's and the trainer's checks and the benchmarks'."""
    from mmpo.config import ConfigError, module_class
    from mmpo.evaluate import load_benchmarks
    from mmpo.train import check_run

    checks = [check_run] + (
        [lambda cfg: load_benchmarks(cfg, module_class(cfg))] if cfg.get("benchmarks") else []
    )
    problems: list[str] = []
    for check_ in checks:
        try:
            check_(cfg)
        except ConfigError as error:
            problems += error.problems
    return problems


def branch_count(cfg: DictConfig) -> int:
    """Branches per record of the composed loss; the policy and the reference each forward all of them."""
    from mmpo.losses import build_loss
    from mmpo.modules.preference import plan

    return len(plan(cfg, build_loss(cfg.loss).requirements).branches["train"])


def gpu_hours(target: Target, points: list[DictConfig]) -> tuple[float, str]:
    if target.gpu_hours_reported is not None:
        return target.gpu_hours_reported, "reported by the paper"
    total = 0.0
    for cfg in points:
        branches = branch_count(cfg)
        epochs = int(cfg.trainer.max_epochs)
        total += estimated_gpu_hours(
            target.parameters, target.tokens_per_branch, target.records, epochs, branches, branches
        )
    return (
        total,
        f"estimated (mmpo.repro.estimated_gpu_hours, {len(points)} runs, A100 bf16 at {MFU:.0%} MFU)",
    )


def report(
    name: str, target: Target, points: list[DictConfig], problems: list[str], sweep: tuple[str, ...]
) -> str:
    hours, basis = gpu_hours(target, points)
    lines = [f"{name}: {target.paper}, {target.table}", f"GPU hours: {hours:.0f} A100 hours, {basis}"]
    if target.note:
        lines.append(f"Note: {target.note}")
    first = points[0]
    lines.append("Download once (nothing is downloaded at run time):")
    for download in target.downloads:
        path = OmegaConf.select(first, download.key)
        state = "present" if path and Path(path).exists() else "MISSING"
        lines.append(f"  - [{state}] {download.what}\n      to {download.key}={path}")
        lines.append("      " + download.how.format(path=path))
    if problems:
        lines.append("What the runs' start-up checks report now:")
        lines += ["  - " + problem.replace("\n", "\n    ") for problem in dict.fromkeys(problems)]
    lines.append(f"Sweep: python train.py -m {' '.join(sweep)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS))
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--check", action="store_true", help="print what the target needs; never run it")
    parser.add_argument("overrides", nargs="*", help="added to every run, e.g. paths.model_dir=/models")
    args = parser.parse_args(argv)
    if args.list or args.target is None:
        for name, target in TARGETS.items():
            print(f"repro-{name}: {target.paper}, {target.table}")
        return 0
    from mmpo.config import compose_job

    target = TARGETS[args.target]
    sweep = (*target.sweep, *args.overrides)
    points = [compose_job(overrides) for overrides in sweep_points(sweep)]
    problems = [problem for cfg in points for problem in point_problems(cfg)]
    print(report(args.target, target, points, problems, sweep))
    if problems:
        return 2
    if args.check:
        return 0
    sweep_dir = ROOT / "outputs" / "repro" / args.target
    command = [sys.executable, "train.py", "-m", *sweep, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
