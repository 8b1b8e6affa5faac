"""The shapes demo: SFT a tiny VLM, then DPO, DPO without image, mDPO and MISP-DPO over seeds, benchmarks.

    python scripts/demo.py [--out outputs/demo/<time>] [--seeds 0 1 2] [--jobs 2]

Every stage is a plain ``train.py`` / ``evaluate.py`` / ``results_table.py`` command (printed before it
runs, its output in ``<out>/logs/``), so any row of the table can be reproduced by hand:

1. SFT from scratch on the shapes world: ``python -m mmpo.bases sft_shapes`` (the cached base of
   ``train.py experiment=sft_shapes``: built once per code version and recipe, reused afterwards); beside
   it, MISP-DPO's candidate pool and SAE: ``scripts/build_shapes_pool.py`` (``<out>/data/pools/shapes``);
2. from the SFT model (``experiment=demo_pref``: model ``tiny_llava_shapes_sft``; LoRA, so
   ``reference=adapter_off`` makes the SFT model the reference), one run per method and seed: ``dpo``;
   ``dpo_noimage`` (``data.image=none``); ``mdpo`` (``loss=mdpo negative_sampler=crop``); and
   ``misp_dpo`` with ``experiment=misp_dpo_shapes`` (demo_pref with ``loss=misp_dpo negative_sampler=sae``);
3. ``evaluate.py benchmark=[shapes_pope,shapes_chair]`` on the untrained model, the SFT model and every
   preference run (held-out test scenes);
4. ``scripts/results_table.py``: ``<out>/results/results.{md,csv,png}``.

Everything lives under ``--out`` (the shapes world too, in ``<out>/data``). Jobs run ``--jobs`` at a
time with one torch thread each: the tiny models are faster single-threaded, and two such jobs fill
two cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS: dict[str, list[str]] = {
    "dpo": ["experiment=demo_pref"],
    "dpo_noimage": ["experiment=demo_pref", "data.image=none"],
    "mdpo": ["experiment=demo_pref", "loss=mdpo", "negative_sampler=crop"],
    "misp_dpo": ["experiment=misp_dpo_shapes"],
}
"""Each method's ``train.py`` arguments (``misp_dpo_shapes`` is ``demo_pref`` with MISP-DPO's loss and
negatives)."""
BENCHMARKS = "benchmark=[shapes_pope,shapes_chair]"
COLUMNS = [
    "shapes_pope/avg/accuracy",
    "shapes_pope/adversarial/accuracy",
    "shapes_pope/avg/f1",
    "shapes_pope/avg/yes_ratio",
    "shapes_chair/CHAIRs",
    "shapes_chair/CHAIRi",
    "shapes_chair/recall",
]


Job = tuple[str, list[str]]  # (log name, command)


def job(name: str, script: str, *arguments: str) -> Job:
    return name, [sys.executable, str(ROOT / script), *arguments]


def run_jobs(jobs: Sequence[Job], workers: int, logs: Path) -> None:
    """Run ``jobs`` ``workers`` at a time (one torch thread each); a failed job raises with its log."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}

    def one(name: str, command: list[str]) -> None:
        print("  $", " ".join(command[1:]), flush=True)
        with open(logs / f"{name}.log", "w") as log:
            done = subprocess.run(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            raise RuntimeError(f"{name} failed (exit {done.returncode}); see {logs / f'{name}.log'}")

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(one, name, command) for name, command in jobs]:
            future.result()


def preference_jobs(out: Path, seeds: Sequence[int], data: str) -> dict[Path, Job]:
    """One training job per (method, seed), keyed by its run directory ``<out>/<method>/<seed>``."""
    jobs = {}
    for method, overrides in METHODS.items():
        for seed in seeds:
            directory = out / method / str(seed)
            jobs[directory] = job(
                f"{method}_{seed}",
                "train.py",
                *overrides,
                f"seed={seed}",
                data,
                f"hydra.run.dir={directory}",
            )
    return jobs


def benchmark_jobs(out: Path, runs: Sequence[Path], lanes: int, data: str, logs: Path) -> list[Job]:
    """The untrained model and the SFT model (``run=null``: its model config, the cached base merged), and
    the runs, split over ``lanes`` multirun processes."""
    jobs = [
        job(
            f"eval_{name}",
            "evaluate.py",
            "run=null",
            f"model={model}",
            BENCHMARKS,
            data,
            f"hydra.run.dir={out / name}",
        )
        for name, model in (("base", "tiny_llava_shapes"), ("sft", "tiny_llava_shapes_sft"))
    ]
    for lane in range(lanes):
        if runs[lane::lanes]:
            jobs.append(
                job(
                    f"eval_{lane}",
                    "evaluate.py",
                    "--multirun",
                    "run=" + ",".join(map(str, runs[lane::lanes])),
                    BENCHMARKS,
                    data,
                    f"hydra.sweep.dir={logs / f'eval_{lane}'}",
                )
            )
    return jobs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo" / stamp)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (one per core)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = f"paths.data_dir={out / 'data'}"
    start = time.time()

    sft = ("sft", [sys.executable, "-m", "mmpo.bases", "sft_shapes"])
    pool = job("misp_pool", "scripts/build_shapes_pool.py", "--data-dir", str(out / "data"), "--no-progress")
    preference = preference_jobs(out, args.seeds, data)
    table = job(
        "results_table",
        "scripts/results_table.py",
        str(out / "base"),
        str(out / "sft"),
        *(str(out / method) for method in METHODS),
        "--out",
        str(out / "results"),
        "--metrics",
        *COLUMNS,
        "--ignore",
        "model",
    )
    stages = [
        ("SFT base (cached) and MISP-DPO pool", [sft, pool], args.jobs),
        ("preference runs", list(preference.values()), args.jobs),
        ("benchmarks", benchmark_jobs(out, list(preference), args.jobs, data, logs), args.jobs),
        ("results table", [table], 1),
    ]
    for title, jobs, workers in stages:
        began = time.time()
        print(f"== {title} ({len(jobs)} jobs)", flush=True)
        run_jobs(jobs, workers, logs)
        print(f"   {time.time() - began:.0f}s", flush=True)
    print((out / "results" / "results.md").read_text(), end="")
    print(f"demo: {time.time() - start:.0f}s in total; results in {out / 'results'}")


if __name__ == "__main__":
    main()
