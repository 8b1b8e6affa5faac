"""Sweeps: the summary of a multirun, Optuna searches, submitit's local executor, the SLURM job script,
and the refusal of DDP inside a multirun on one machine."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict

from mmpo.sweeps import SweepSummary, best_point, process_layout_problem, read_points, write_summary

from .conftest import CONF_DIR, ROOT

# the tiny default run, shrunk: 2 optimizer steps, one validation batch
SHRINK = [
    "model=tiny_llava",  # the default model's cached SFT base takes minutes to build in a fresh data dir
    "trainer.max_steps=2",
    "data.limit_train=4",
    "data.limit_val=2",
    "data.batch_size=2",
    "data.shapes.num_scenes=40",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
# differs between points after 2 steps (the accuracy on 2 held-out pairs is 0 for all of them)
METRIC = "val/rewards/margins"


def sweep(tmp_path: Path, *args: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, Path]:
    """``python train.py <args>`` as a user runs it, with its sweep directory under ``tmp_path``."""
    sweep_dir = tmp_path / "sweep"
    out = subprocess.run(
        [
            sys.executable,
            "train.py",
            *args,
            *SHRINK,
            f"paths.log_dir={tmp_path / 'outputs'}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out, sweep_dir


def last_logged(run: Path, key: str) -> float:
    """The last value of ``key`` in a run's metrics.csv, read independently of mmpo.rundirs."""
    with open(run / "metrics.csv", newline="") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)][-1]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "sweep_summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ---- the summary, on run directories written by hand ---------------------------------------------------
def fake_job(sweep_dir: Path, num: int, overrides: list[str], margins: list[float] | None, status="finished"):
    run = sweep_dir / f"{num}_x"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if margins is not None:
        lines = ["epoch,step,train/loss_step,val/loss,val/rewards/margins"]
        lines += [f"0,{i},0.69,," for i in range(2)]
        lines += [f"0,{i},,0.7,{m}" for i, m in enumerate(margins)]
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
        (run / "summary.txt").write_text(f"dpo_tiny_llava: loss=dpo status={status} steps=2 time=1.0s\n")
    return run


def test_the_summary_lists_each_point_its_swept_values_final_metric_and_the_best(tmp_path):
    fake_job(tmp_path, 2, ["loss.beta=0.5", "seed=0", "logger=csv"], [0.1, 0.3])
    fake_job(tmp_path, 0, ["loss.beta=0.1", "seed=0", "logger=csv"], [0.9, 0.2])
    fake_job(tmp_path, 1, ["loss.beta=0.1", "seed=1", "logger=csv"], [0.0, 0.3])
    fake_job(tmp_path, 3, ["loss.beta=0.5", "seed=1", "logger=csv"], None)  # crashed before its summary
    points = write_summary(tmp_path, METRIC, "maximize")
    assert [p.job for p in points] == [0, 1, 2, 3]  # job order, not directory order
    rows = summary_rows(tmp_path)
    # swept keys only: logger=csv is common to every point
    assert list(rows[0])[:6] == ["job", "directory", "loss.beta", "seed", "status", METRIC]
    assert [float(r[METRIC]) for r in rows[:3]] == [0.2, 0.3, 0.3]  # the last logged value, not the best
    assert [r["status"] for r in rows] == ["finished", "finished", "finished", "incomplete"]
    # 0.3 twice: the earliest job is the best one
    assert [r["best"] for r in rows] == ["False", "True", "False", "False"]
    assert float(rows[0]["val/loss"]) == 0.7
    markdown = (tmp_path / "sweep_summary.md").read_text()
    assert "| 1 | 0.1 | 1 | finished | 0.3 (best) |" in markdown
    assert "best (maximize val/rewards/margins): job 1 loss.beta=0.1 seed=1 = 0.3" in markdown
    assert (tmp_path / "sweep_summary.png").read_bytes()[:4] == b"\x89PNG"


def test_the_best_point_follows_the_direction_and_ignores_points_without_the_metric(tmp_path):
    fake_job(tmp_path, 0, ["optim.lr=1"], [0.5])
    fake_job(tmp_path, 1, ["optim.lr=2"], [math.nan])
    fake_job(tmp_path, 2, ["optim.lr=3"], [-0.25])
    points = read_points(tmp_path)
    assert best_point(points, METRIC, "minimize").job == 2
    assert best_point(points, METRIC, "maximize").job == 0
    assert best_point(points, "val/absent", "maximize") is None


# ---- the process layout of a sweep ---------------------------------------------------------------------
@pytest.fixture
def sweep_config():
    """``sweep_config(overrides)``: the composed train config with its hydra node, as a multirun sees it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import mmpo.config  # noqa: F401

    def _compose(overrides: list[str]):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=True)

    yield _compose
    GlobalHydra.instance().clear()


SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=720"]


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ([], False),
        (["trainer=ddp_cpu"], True),  # 2 processes on this machine
        (["trainer=ddp"], True),  # devices=-1: all GPUs of the machine
        (["trainer.num_nodes=2"], True),
        (["hydra/launcher=submitit_local", "trainer=ddp_cpu"], True),
        ([*SLURM, "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"], False),
        ([*SLURM, "trainer=ddp"], True),  # srun cannot start -1 tasks per node
        # the plugin's own config starts 1 task per node: Lightning would refuse 4 devices in the job
        (["hydra/launcher=submitit_slurm", "trainer=ddp", "trainer.devices=4"], True),
        (["hydra/launcher=submitit_slurm", "trainer=gpu"], False),
    ],
)
def test_a_multirun_refuses_trainer_processes_that_no_launcher_starts(sweep_config, overrides, refused):
    problem = process_layout_problem(sweep_config(overrides))
    assert (problem is not None) == refused, problem


def test_the_check_stops_a_multirun_before_any_job_with_an_mmpo_message(sweep_config, capsys, tmp_path):
    cfg = sweep_config(["trainer=ddp_cpu", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_start(cfg)
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("mmpo: a multirun with trainer.devices=2")
    assert not (tmp_path / "sweep").exists()
    with open_dict(cfg):
        cfg.optimized_direction = "up"
        cfg.trainer.devices = 1
    with pytest.raises(SystemExit):
        SweepSummary().on_multirun_start(cfg)
    assert "optimized_direction='up'; allowed: ['maximize', 'minimize']" in capsys.readouterr().err


def test_a_ddp_job_of_a_sweep_over_the_trainer_is_refused_and_its_directory_removed(
    sweep_config, capsys, tmp_path
):
    """``-m trainer=ddp_cpu,default``: the composed sweep config has the default trainer, the job's has DDP."""
    from hydra.types import RunMode

    job = tmp_path / "sweep" / "0_trainer:ddp_cpu"
    cfg = sweep_config(["trainer=ddp_cpu", f"hydra.run.dir={job}"])
    (job / ".hydra").mkdir(parents=True)  # what Hydra writes before a job starts
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job)
    SweepSummary().on_job_start(cfg)  # a single run (no -m) may use DDP
    assert job.is_dir()
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    with pytest.raises(SystemExit) as stop:
        SweepSummary().on_job_start(cfg)
    assert stop.value.code == 2 and "mmpo: a multirun with trainer.devices=2" in capsys.readouterr().err
    assert not job.exists()


# ---- SLURM: the job script of a 2-node point, composed here and never submitted ------------------------
def test_the_slurm_launcher_writes_one_2_node_job_per_point_with_one_task_per_gpu(
    sweep_config, tmp_path, monkeypatch
):
    """The plugin's own launch path (config -> submitit executor parameters -> sbatch text), stopped where
    submitit would call sbatch."""
    import submitit
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit's check that it runs on a cluster
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{Path(sys.executable).parent}")
    scripts: list[str] = []

    class NotSubmitted(Exception):
        pass

    def capture(executor, command):
        scripts.append(executor._make_submission_file_text(command, "preview"))
        raise NotSubmitted

    monkeypatch.setattr(submitit.SlurmExecutor, "_submit_command", capture)
    cfg = sweep_config(
        [
            *SLURM,
            "hydra.launcher.cpus_per_task=8",
            "trainer=ddp",
            "trainer.devices=8",
            "trainer.num_nodes=2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
    )
    assert process_layout_problem(cfg) is None
    HydraConfig.instance().set_config(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(NotSubmitted):
        launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    (script,) = scripts
    sbatch = {
        line.split("=", 1)[0]: line.split("=", 1)[1] for line in script.splitlines() if "#SBATCH" in line
    }
    assert sbatch["#SBATCH --nodes"] == "2"
    assert sbatch["#SBATCH --ntasks-per-node"] == "8" and sbatch["#SBATCH --gpus-per-node"] == "8"
    assert sbatch["#SBATCH --cpus-per-task"] == "8"
    assert sbatch["#SBATCH --partition"] == "gpu" and sbatch["#SBATCH --time"] == "720"
    assert sbatch["#SBATCH --array"] == "0-1%2"  # one array task (one job) per point, both at once
    assert sbatch["#SBATCH --output"].startswith(str(tmp_path / "sweep" / ".submitit"))
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert srun.endswith(f"-u -m submitit.core._submit {tmp_path / 'sweep' / '.submitit' / '%j'}")


# ---- real sweeps of the tiny run -----------------------------------------------------------------------
def test_a_2x2_multirun_writes_4_run_directories_and_a_summary_with_the_best_point(tmp_path):
    out, sweep_dir = sweep(tmp_path, "-m", "loss.beta=0.1,0.5", "seed=0,1", f"optimized_metric={METRIC}")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = job_dirs(sweep_dir)
    assert len(runs) == 4 and all((r / "summary.txt").is_file() for r in runs)
    rows = summary_rows(sweep_dir)
    assert [(r["loss.beta"], r["seed"]) for r in rows] == [
        ("0.1", "0"),
        ("0.1", "1"),
        ("0.5", "0"),
        ("0.5", "1"),
    ]
    values = {Path(r["directory"]): float(r[METRIC]) for r in rows}
    assert values == {run: last_logged(run, METRIC) for run in runs}
    best = max(values, key=values.get)
    assert [Path(r["directory"]) for r in rows if r["best"] == "True"] == [best]
    assert str(best) in (sweep_dir / "sweep_summary.md").read_text()
    assert (sweep_dir / "sweep_summary.png").is_file()


def test_an_optuna_search_of_3_trials_stores_its_study_and_records_the_best_point(tmp_path):
    import optuna

    out, sweep_dir = sweep(
        tmp_path, "hparams_search=dpo_optuna", "hydra.sweeper.n_trials=3", f"optimized_metric={METRIC}"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = job_dirs(sweep_dir)
    assert len(runs) == 3
    study = optuna.load_study(study_name="dpo_optuna", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    rows = summary_rows(sweep_dir)
    for trial, row in zip(study.trials, rows, strict=True):  # trial n is job n
        assert float(row["loss.beta"]) == trial.params["loss.beta"]
        assert float(row[METRIC]) == pytest.approx(trial.value) == last_logged(Path(row["directory"]), METRIC)
        assert 0.01 <= trial.params["loss.beta"] <= 1.0 and 1e-5 <= trial.params["optim.lr"] <= 1e-3
    (best,) = [r for r in rows if r["best"] == "True"]
    assert float(best[METRIC]) == pytest.approx(study.best_value) == max(t.value for t in study.trials)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)


def test_submitits_local_executor_runs_each_point_as_its_own_job(tmp_path):
    out, sweep_dir = sweep(
        tmp_path, "-m", "hydra/launcher=submitit_local", "seed=0,1", f"optimized_metric={METRIC}"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = job_dirs(sweep_dir)
    assert len(runs) == 2 and all((r / "adapter").is_dir() and (r / "summary.txt").is_file() for r in runs)
    # each point ran in its own submitit job, with its own logs
    assert len([d for d in (sweep_dir / ".submitit").iterdir() if d.name.isdigit()]) == 2
    rows = summary_rows(sweep_dir)
    assert [r["seed"] for r in rows] == ["0", "1"] and all(r["status"] == "finished" for r in rows)
    assert [float(r[METRIC]) for r in rows] == [last_logged(run, METRIC) for run in runs]
