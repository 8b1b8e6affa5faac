"""What a user runs, run as the user runs it: the README's commands (shrunk with overrides), interrupted
and killed runs, concurrent runs, diverging runs, the values conf/ writes reaching the code."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from .conftest import CONF_DIR, ROOT

SMALL = [
    "model=tiny_llava",  # the random tiny model; the default (the shapes SFT base) is the slow test's
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.shapes.num_scenes=40",
    "data.limit_train=4",
    "data.limit_val=2",
    "data.batch_size=2",
]
NOISE = (
    "FutureWarning",
    "Previous log files",
    "litlogger",
    "anonymous setting",
    "LeafSpec",
    "transfer_batch_to_device",
    "GPU available",
    "Seed set to",
    "Traceback",
)


def command(*args: str, log_dir: Path, script: str = "train.py") -> list[str]:
    """``python <script> <args>`` with its runs under ``log_dir`` and its data beside it (no hydra.run.dir)."""
    return [
        sys.executable,
        script,
        *args,
        f"paths.log_dir={log_dir}",
        f"paths.data_dir={log_dir.parent / 'data'}",
    ]


def cli(
    *args: str, log_dir: Path, script: str = "train.py", timeout: int = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args, log_dir=log_dir, script=script),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen(*args: str, log_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args, log_dir=log_dir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def runs_under(directory: Path) -> list[Path]:
    return sorted(p.parent for p in directory.rglob("config.yaml") if p.parent.name != ".hydra")


def readme_command(marker: str) -> list[str]:
    """The arguments of the README line ``python train.py ... # <marker>``."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("python train.py") and marker in line:
            return line.split("#")[0].split()[2:]
    raise AssertionError(f"the README has no `python train.py` line marked {marker!r}")


# ---- the README's sweeps ------------------------------------------------------------------------------
@pytest.mark.parametrize("marker", ["a Hydra multirun sweep", "a predefined sweep"])
def test_the_readme_sweep_commands_run(tmp_path, marker):
    args = readme_command(marker)
    out = cli(*args, *SMALL, "trainer.max_steps=1", "data.limit_val=1", log_dir=tmp_path / "outputs")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = runs_under(tmp_path / "outputs")
    assert len(runs) == 9 and all((r / "summary.txt").is_file() for r in runs)
    assert len({r.name for r in runs}) == 9  # each job its own directory, named by its overrides
    assert any("loss.beta:0.5" in r.name for r in runs)


# ---- what conf/ writes is what runs ---------------------------------------------------------------------
def yaml_leaves(node, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "defaults":
                yield from yaml_leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def package_of(path: Path) -> str:
    """Where a group file's content lands: its ``# @package`` header, else its group."""
    header = re.search(r"^# @package (\S+)", path.read_text(), re.M)
    package = header.group(1) if header else path.parent.name
    return "" if package == "_global_" else package + "."


def unresolved(cfg, key: str):
    """The composed value at ``key`` as written (interpolations unresolved, ``???`` when missing)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return OmegaConf.to_container(node, resolve=False).get(leaf, "<absent>")


def assert_written_values_reach(cfg, path: Path, package: str) -> None:
    written = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for key, value in yaml_leaves(written):
        full = package + key
        if full.startswith("hydra."):
            continue  # Hydra's own node: not part of the job config
        if full in ("paths.output_dir", "paths.data_dir") or (
            full == "data.path" and cfg.data.source == "shapes"
        ):
            continue  # the test fixture points these at temporary directories
        assert unresolved(cfg, full) == value, (
            f"{path.relative_to(ROOT)}: {full} is {unresolved(cfg, full)!r}, the file says {value!r}"
        )


GROUP_FILES = sorted(p for p in CONF_DIR.glob("*/*.yaml") if p.parent.name != "hydra")


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}={p.stem}")
def test_every_value_a_group_file_writes_reaches_the_composed_config(compose, path):
    """Schema defaults never override a value written in conf/ (the `engine.mode: auto` bug)."""
    assert_written_values_reach(
        compose([f"{path.parent.name}={path.stem}"], small=False, quiet=False), path, package_of(path)
    )


def test_every_value_train_yaml_writes_reaches_the_composed_config(compose):
    assert_written_values_reach(compose([], small=False, quiet=False), CONF_DIR / "train.yaml", "")


def test_the_default_run_prints_and_records_the_choices_that_matter(tmp_path):
    out = cli(*SMALL, "data.limit_train=8", "trainer.max_steps=2", log_dir=tmp_path / "outputs")
    assert out.returncode == 0, out.stderr[-3000:]
    # model.attn_implementation=auto: FlexAttention only where it trains (a GPU), sdpa on this CPU
    assert (
        "run: engine shared_prefix (engine.mode=auto), reference adapter_off, attention sdpa," in out.stdout
    )
    assert "precision 32-true" in out.stdout and "trainable params 16,384 / 176,960" in out.stdout
    (run,) = runs_under(tmp_path / "outputs")
    summary = (run / "summary.txt").read_text()
    assert "status=finished engine=shared_prefix reference=adapter_off steps=2" in summary
    for noise in NOISE:  # nothing a user cannot act on
        assert noise not in out.stderr + out.stdout, noise
    # validated before the first step, and (max_steps=2 ended the 4-batch epoch early) once at the end of fit
    metrics = (run / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in metrics[1:]]
    assert [r["step"] for r in rows if r.get("val/loss")] == ["0", "2"]
    assert re.search(r"val/loss=[0-9.]+->[0-9.]+", summary)


def test_two_runs_started_together_get_their_own_directories(tmp_path):
    first, second = (
        popen(*SMALL, "trainer.max_steps=1", "seed=3", log_dir=tmp_path / "outputs") for _ in "ab"
    )
    assert first.wait(300) == 0 and second.wait(300) == 0
    runs = runs_under(tmp_path / "outputs")
    assert len(runs) == 2 and runs[0] != runs[1]
    assert all(len((r / "summary.txt").read_text().splitlines()) == 1 for r in runs)


def test_a_run_never_writes_into_another_runs_directory(tmp_path):
    first = cli(*SMALL, "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}", log_dir=tmp_path / "o")
    assert first.returncode == 0, first.stderr[-2000:]
    again = cli(*SMALL, "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}", log_dir=tmp_path / "o")
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr


# ---- interrupted, killed, resumed ------------------------------------------------------------------------
def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return popen(
        *SMALL, "data.limit_train=null", "trainer.max_epochs=50", *args, log_dir=tmp_path / "outputs"
    )


def wait_for(path_glob: str, root: Path, timeout: float = 240) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(root.glob(path_glob))
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"{path_glob} never appeared under {root}")


def test_sigterm_saves_a_checkpoint_the_weights_and_a_summary_and_exits_nonzero(tmp_path):
    proc = start(tmp_path, "callbacks.model_checkpoint.every_n_train_steps=1000")
    wait_for("outputs/*/*/metrics.csv", tmp_path)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    (run,) = runs_under(tmp_path / "outputs")
    assert (run / "checkpoints" / "last.ckpt").is_file() and (
        run / "adapter" / "adapter_config.json"
    ).is_file()
    assert "status=interrupted" in (run / "summary.txt").read_text()
    assert f"ckpt_path={run}" in stderr


def test_kill_9_keeps_the_periodic_checkpoint_and_the_run_resumes_from_it(tmp_path):
    proc = start(tmp_path, "callbacks.model_checkpoint.every_n_train_steps=3")
    checkpoint = wait_for("outputs/*/*/checkpoints/last.ckpt", tmp_path)
    time.sleep(1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    step = torch.load(checkpoint, weights_only=False, map_location="cpu")["global_step"]
    assert step >= 3
    same = [
        *SMALL,
        "data.limit_train=null",
        "trainer.max_epochs=50",
        "callbacks.model_checkpoint.every_n_train_steps=3",
    ]
    out = cli(
        *same,
        f"trainer.max_steps={step + 2}",
        f"ckpt_path={checkpoint.parents[1]}",
        log_dir=tmp_path / "resumed",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (resumed,) = runs_under(tmp_path / "resumed")
    assert f"steps={step + 2}" in (resumed / "summary.txt").read_text()
    # the same resume with a limit the checkpoint has already reached trains nothing, and says so
    stale = cli(
        *same, f"trainer.max_steps={step}", f"ckpt_path={checkpoint.parents[1]}", log_dir=tmp_path / "stale"
    )
    assert stale.returncode == 0 and "trained no step: the checkpoint is at step" in stale.stdout


def test_a_requeued_slurm_job_resumes_from_its_sigterm_checkpoint_in_its_own_run_directory(tmp_path):
    """SLURM requeues a job by SIGTERM, then starts it again with SLURM_RESTART_COUNT=1 and the same config
    (the submitit launcher's sweep subdirectory is the job number): it continues where it stopped."""
    run = tmp_path / "run"
    same = [
        "callbacks.model_checkpoint.every_n_train_steps=5",
        "trainer.max_steps=30",
        f"hydra.run.dir={run}",
    ]
    proc = start(tmp_path, *same)
    wait_for("run/checkpoints/last.ckpt", tmp_path)  # training is under way
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")[
        "global_step"
    ]
    assert 5 <= step < 30
    again = command(
        *SMALL, "data.limit_train=null", "trainer.max_epochs=50", *same, log_dir=tmp_path / "outputs"
    )
    requeued = subprocess.run(
        again,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SLURM_RESTART_COUNT": "1"},
    )
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert (
        f"requeued job (SLURM_RESTART_COUNT=1): {run / 'checkpoints' / 'last.ckpt'}"
        in requeued.stdout + requeued.stderr
    )
    summary = (run / "summary.txt").read_text()
    assert "status=finished" in summary and "steps=30" in summary
    # the same command outside a requeue is another run, refused in that directory
    refused = cli(
        *SMALL, "data.limit_train=null", "trainer.max_epochs=50", *same, log_dir=tmp_path / "outputs"
    )
    assert refused.returncode == 2 and "already holds a run" in refused.stderr


def test_resuming_from_a_run_without_a_checkpoint_is_a_clear_error(tmp_path):
    out = cli(*SMALL, f"ckpt_path={tmp_path}", log_dir=tmp_path / "o")
    assert out.returncode == 2 and "no checkpoint at" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("override", ["optim.lr=1e30", "loss.beta=1e38"])
def test_a_diverging_run_stops_with_the_step_and_the_records_and_saves_nothing_non_finite(tmp_path, override):
    out = cli(*SMALL, override, "callbacks.model_checkpoint.every_n_train_steps=1", log_dir=tmp_path / "o")
    assert out.returncode == 3, out.stderr[-3000:]
    assert re.search(r"training diverged at step \d+: .* for the batch of records \['s0-", out.stderr)
    assert "Traceback" not in out.stderr
    (run,) = runs_under(tmp_path / "o")
    assert not (run / "adapter").exists() and "status=diverged" in (run / "summary.txt").read_text()
    for checkpoint in run.glob("checkpoints/*.ckpt"):
        state = torch.load(checkpoint, weights_only=False, map_location="cpu")["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values())


def test_on_nonfinite_skip_skips_and_counts_the_steps_with_their_records(tmp_path):
    out = cli(
        *SMALL, "loss.beta=1e38", "optim.on_nonfinite=skip", "trainer.max_steps=2", log_dir=tmp_path / "o"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = runs_under(tmp_path / "o")
    skipped = json.loads((run / "skipped_steps.json").read_text())
    assert [s["step"] for s in skipped] == [0, 1] and all(
        s["records"] and "gradient norm" in s["what"] for s in skipped
    )
    assert "skipped_steps=2" in (run / "summary.txt").read_text()
    from safetensors.torch import load_file

    weights = load_file(run / "adapter" / "adapter_model.safetensors")  # nothing applied: LoRA B still zero
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert all(not t.any() for k, t in weights.items() if "lora_B" in k)


# ---- start-up errors say what to fix -------------------------------------------------------------------
def test_data_files_without_a_path_says_so_and_leaves_no_directory(tmp_path):
    out = cli("data=files", log_dir=tmp_path / "o")
    assert out.returncode == 2 and "data.path must be set" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("train.log"))  # no stub run dir


@pytest.fixture
def model_dir(tmp_path) -> Path:
    from mmpo.models.tiny import build_tiny_llava

    model, processor = build_tiny_llava()
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    return tmp_path / "llava"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (lambda d: (d / "processor_config.json").unlink(), "has no processor file"),
        (lambda d: (d / "model.safetensors").unlink(), "has no weights file"),
    ],
    ids=["broken-config", "no-processor", "no-weights"],
)
def test_a_broken_model_directory_names_the_file(model_dir, damage, message):
    from mmpo.models.loading import model_dir_problems

    assert model_dir_problems(model_dir) == []
    damage(model_dir)
    (problem,) = model_dir_problems(model_dir)
    assert message in problem and str(model_dir) in problem


def test_a_broken_model_directory_stops_train_py_with_an_mmpo_message(model_dir, tmp_path):
    (model_dir / "config.json").write_text("{not json")
    out = cli("model=llava7b", f"model.path={model_dir}", log_dir=tmp_path / "o", timeout=120)
    assert out.returncode == 2 and "mmpo:" in out.stderr and "config.json is not valid JSON" in out.stderr
    assert "Traceback" not in out.stderr


def test_evaluate_reports_every_start_up_problem_at_once(tmp_path):
    out = cli(
        "run=null",
        "model=llava7b",
        "benchmark=pope",
        f"benchmarks.pope.path={tmp_path / 'pope'}",
        script="evaluate.py",
        log_dir=tmp_path / "o",
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "model.path=" in out.stderr and "is not a model directory" in out.stderr
    assert "benchmarks.pope.path" in out.stderr and "`benchmark.path`" not in out.stderr
    assert "gemm_4bit" not in out.stderr


def test_help_lists_the_groups_options_without_the_schemas():
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "model: " in out.stdout
    assert "_schema" not in out.stdout.split("== Config ==")[0]


def test_the_run_directory_names_the_overrides_that_define_the_run(tmp_path):
    out = cli("data.image=none", *SMALL, "trainer.max_steps=1", log_dir=tmp_path / "o")
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = runs_under(tmp_path / "o")
    assert run.parent.name == "dpo_tiny_llava" and "data.image:none" in run.name
    assert "logger" not in run.name and "paths" not in run.name


def test_the_default_run_is_a_preference_stage_on_the_cached_sft_base(tmp_path):
    """What `python train.py` composes (the slow test below runs it)."""
    out = subprocess.run(
        [sys.executable, "train.py", "--cfg", "job"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    job = OmegaConf.create(out.stdout)
    assert job.model.name == "tiny_llava_shapes_sft" and job.model.init_from == "base:sft_shapes"
    assert job.val_negative_sampler._target_.endswith("CropSampler") and job.validate_before_training
    assert job.engine.mode == "auto" and job.reference.strategy == "adapter_off"
    assert job.model.attn_implementation == "auto" and job.data.token_budget is None


@pytest.mark.slow
def test_the_main_job_builds_the_base_once_and_shows_learning(tmp_path):
    """`python train.py` as a new user types it: the SFT base is built (once), then DPO moves the validation
    metrics away from where they started."""
    where = [f"paths.base_dir={tmp_path / 'bases'}"]
    first = cli(*where, log_dir=tmp_path / "outputs", timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "building the cached base" in first.stdout + first.stderr
    summary = next((tmp_path / "outputs").rglob("summary.txt")).read_text()
    for key in ("val/rewards/accuracies", "val/image_reliance/accuracy"):
        before, after = re.search(rf"{re.escape(key)}=([0-9.]+)->([0-9.]+)", summary).groups()
        assert before != after, (key, summary)
    again = cli(*where, "trainer.max_steps=1", log_dir=tmp_path / "again", timeout=600)
    assert again.returncode == 0 and "building the cached base" not in again.stdout + again.stderr


def test_packed_rows_train_like_one_group_per_row(tmp_path):
    """``data.token_budget``: the packed run's log-probs and losses equal the unpacked run's, at every
    validation and for the training epoch (so the updates between them were the same too)."""

    def logged(*extra: str) -> list[float]:
        outputs = tmp_path / f"outputs{len(extra)}"
        out = cli(
            *SMALL, "loss=mdpo", "negative_sampler=crop", "trainer.max_steps=2", *extra, log_dir=outputs
        )
        assert out.returncode == 0, out.stderr[-3000:]
        (run,) = runs_under(outputs)
        lines = (run / "metrics.csv").read_text().splitlines()
        header = lines[0].split(",")
        rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
        return [float(r[k]) for r in rows for k in header if ("logps" in k or "loss" in k) and r[k]]

    packed, unpacked = logged("data.token_budget=4096"), logged()
    assert len(packed) >= 3 * 7  # two validations and the training epoch: 3 log-probs and 4 losses each
    assert packed == pytest.approx(unpacked, rel=1e-5)
