"""Hydra entry point: check the config, build the module kind and its data, fit, save, summarise.

Everything generic about a run lives here (seed, run directory, loggers, callbacks, fit, interruption and
divergence, save, summary, post-training evaluation); what differs between module kinds lives with the
module class ``module._target_`` names (:mod:`mmpo.modules.base`).

    python train.py                                   # DPO, tiny LLaVA, shapes world, CPU
    python train.py loss=mdpo negative_sampler=crop model=tiny_qwen2vl
    python train.py loss=dpo model=llava7b trainer=ddp

A run directory ``outputs/<run_name>/<timestamp>/`` receives the composed config (``config.yaml`` and
``.hydra/``), ``metrics.csv``, ``checkpoints/``, the LoRA adapter in peft format (``adapter/``) or the
full weights (``model/``), ``data_report.json`` and a one-line ``summary.txt``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmpo.bases import BaseBuildError, resolve_init_from
from mmpo.config import CONF_DIR, ConfigError, check, module_class
from mmpo.loggers import continue_wandb_run, finish_wandb_runs, wandb_mode
from mmpo.models.sharding import sharding_problems
from mmpo.modules.base import TrainingDiverged, TrainingModule

REQUEUE_COUNT = "SLURM_RESTART_COUNT"  # set by SLURM in a requeued job: how often it was requeued
log = logging.getLogger("mmpo")


def _instantiate_all(node: DictConfig | None) -> list:
    return [instantiate(v) for v in (node or {}).values() if isinstance(v, DictConfig) and "_target_" in v]


def summary_line(
    cfg: DictConfig,
    metrics: dict,
    seconds: float,
    steps: int,
    choices: dict,
    keys,
    before: dict | None = None,
) -> str:
    """One line: the run, its loss and model, the choices that decide what ran (status, engine mode,
    reference: the first word of each; the skipped steps, if any), steps, the module kind's summary metrics (``start->end`` where the
    run validated before training) and the time."""

    def value(key: str) -> str:
        end = f"{float(metrics[key]):.4f}"
        return f"{float(before[key]):.4f}->{end}" if before and key in before else end

    values = " ".join(f"{k}={value(k)}" for k in keys if k in metrics)
    setting = " ".join(
        f"{k}={v.split()[0]}"
        for k, v in choices.items()
        if k in ("status", "engine", "reference", "skipped_steps")
    )
    loss = (cfg.get("choices") or {}).get("loss")
    return f"{cfg.run_name}: loss={loss} model={cfg.model.name} {setting} steps={steps} {values} time={seconds:.1f}s"


def resume_checkpoint(ckpt_path: str | None) -> str | None:
    """``ckpt_path`` as a checkpoint file: a ``.ckpt`` file, or a run directory (its
    ``checkpoints/last.ckpt``); ConfigError when there is none."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt" if (path / "checkpoints").is_dir() else path / "last.ckpt"
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r}: no checkpoint at {path}. Pass a run directory written by train.py "
            "(it resumes from checkpoints/last.ckpt, written every callbacks.model_checkpoint."
            "every_n_train_steps steps and on SIGTERM) or a .ckpt file."
        )
    return str(path)


def checkpoint_step(path: str) -> int:
    """The optimizer step a Lightning checkpoint was saved at (memory-mapped: its tensors are not read)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"]


def claim_run_dir(out: Path, cfg: DictConfig) -> str | None:
    """Write ``config.yaml``, failing if the directory already holds a run: two runs never share one.
    Only the process of global rank 0 claims: the other ranks of a DDP job share its directory.

    A SLURM job requeued after pre-emption or its time limit (``SLURM_RESTART_COUNT`` > 0; the submitit
    launcher with ``hydra.launcher.max_num_timeout`` > 0) starts again in the directory of its first start
    with the same config: it gets back the checkpoint to resume from (``checkpoints/last.ckpt``, written on
    SIGTERM and periodically), or None to train again from the start."""
    from lightning.pytorch.utilities import rank_zero_only

    out.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    claimed = out / "config.yaml"
    if int(os.environ.get(REQUEUE_COUNT) or 0) > 0 and claimed.is_file() and claimed.read_text() == text:
        last = out / "checkpoints" / "last.ckpt"
        log.info(
            "requeued job (%s=%s): %s",
            REQUEUE_COUNT,
            os.environ[REQUEUE_COUNT],
            last if last.is_file() else "no checkpoint yet, training from the start",
        )
        return str(last) if last.is_file() else None
    if rank_zero_only.rank != 0:
        return None
    try:
        with open(claimed, "x") as handle:
            handle.write(text)
    except FileExistsError:
        raise ConfigError(
            f"the run directory {out} already holds a run (config.yaml); a run never writes into another "
            "run's directory: drop hydra.run.dir to get a fresh one, or resume with ckpt_path=<that run>"
        ) from None
    return None


def remove_stub(out: Path) -> None:
    """A run that failed at start-up leaves no directory behind (Hydra creates it with ``.hydra/`` and
    the log before the checks run); a directory that holds anything else is left alone."""
    if out.is_dir() and {p.name for p in out.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(out, ignore_errors=True)


def trainer_problems(cfg: DictConfig) -> list[str]:
    """What the machine lacks for the ``trainer``: a GPU for a GPU trainer, DeepSpeed for its strategies."""
    import importlib.util

    import torch

    trainer, problems = cfg.trainer, []
    if trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        cpu = sorted(
            p.stem for p in (CONF_DIR / "trainer").glob("*.yaml") if "cpu" in p.stem or p.stem == "default"
        )
        problems.append(
            f"trainer.accelerator={trainer.accelerator} but this machine has no CUDA device; trainer allowed here: {cpu}"
        )
    strategy = trainer.get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    if "deepspeed" in target.lower() and importlib.util.find_spec("deepspeed") is None:
        problems.append(
            f"trainer.strategy={target} needs DeepSpeed: pip install deepspeed (on the GPU machine)"
        )
    return problems


def check_run(cfg: DictConfig) -> type[TrainingModule]:
    """The module kind ``module`` names, after its start-up checks and the trainer's passed (one
    ConfigError otherwise)."""
    kind = module_class(cfg)
    if not (isinstance(kind, type) and issubclass(kind, TrainingModule)):
        raise ConfigError(f"module._target_={cfg.module._target_!r} is not a mmpo.modules.TrainingModule")
    check(cfg, kind.problems, trainer_problems, lambda c: sharding_problems(c, kind.shards))
    return kind


def run(cfg: DictConfig) -> float | None:
    """Check, build the module kind ``module`` names and its data, fit, save, summarise, evaluate."""
    kind = check_run(cfg)
    ckpt_path = resume_checkpoint(cfg.ckpt_path)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    benchmarks = None
    if cfg.get("benchmarks"):
        from mmpo.evaluate import load_benchmarks

        benchmarks = load_benchmarks(cfg, kind)  # missing benchmark data fails now, not after training
    start = time.time()
    resolve_init_from(cfg.model, cfg.paths.base_dir)  # base:<experiment> -> its run directory
    out = Path(cfg.paths.output_dir)
    ckpt_path = claim_run_dir(out, cfg) or ckpt_path
    wandb_mode()
    continue_wandb_run(cfg, ckpt_path)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    module, datamodule = kind.build(cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=_instantiate_all(cfg.get("logger")) or False,
        callbacks=_instantiate_all(cfg.get("callbacks")),
    )
    choices = {
        "status": "finished",
        **module.describe(),
        "precision": str(trainer.precision),
        "seed": str(cfg.seed),
    }
    log.info("run: %s", ", ".join(f"{k} {v}" for k, v in list(choices.items())[1:]))
    stopped: BaseException | None = None
    before = None
    try:
        try:
            if cfg.get("validate_before_training") and not ckpt_path and trainer.limit_val_batches:
                trainer.validate(module, datamodule=datamodule, verbose=False)
                before = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except (SystemExit, TrainingDiverged) as stop:  # SIGTERM; Ctrl-C (Lightning exits 1); NaN
            stopped = stop
            what = "diverged" if isinstance(stop, TrainingDiverged) else "interrupted"
            choices["status"] = f"{what} at step {trainer.global_step}"
        else:
            if ckpt_path and trainer.global_step == checkpoint_step(ckpt_path):
                log.warning(
                    "trained no step: the checkpoint is at step %d (epoch %d), which trainer.max_steps=%s / "
                    "max_epochs=%s already reach; resume with the original run's limits, or raise them",
                    trainer.global_step,
                    trainer.current_epoch,
                    trainer.max_steps,
                    trainer.max_epochs,
                )
            if module.validated_at_step != trainer.global_step and trainer.limit_val_batches:
                trainer.validate(module, datamodule=datamodule, verbose=False)  # max_steps ended mid-epoch
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if not isinstance(stopped, TrainingDiverged):
            module.save(out, datamodule)  # every rank: sharded weights are gathered; global rank zero writes
        if trainer.is_global_zero:
            if module.skipped_steps:
                (out / "skipped_steps.json").write_text(json.dumps(module.skipped_steps, indent=1))
                choices["skipped_steps"] = str(len(module.skipped_steps))
            if benchmarks and stopped is None:
                module.cpu()  # the accelerator's memory goes to the reloaded copy that is evaluated
                evaluate_trained(cfg, out, trainer, benchmarks)
            line = summary_line(
                cfg, metrics, time.time() - start, trainer.global_step, choices, kind.summary_metrics, before
            )
            (out / "summary.txt").write_text(line + "\n")
            log.info("run directory: %s", out)
            print(line)
    finally:
        finish_wandb_runs(trainer)
    if isinstance(stopped, TrainingDiverged):
        raise stopped
    if stopped is not None:
        raise RunInterrupted(
            f"{choices['status']}; checkpoint, weights and summary are in {out}. "
            f"Resume with: python train.py <same overrides> ckpt_path={out}",
            143 if isinstance(stopped, SIGTERMException) else 130,
        )
    return metrics.get(cfg.get("optimized_metric"))


class RunInterrupted(RuntimeError):
    """SIGTERM or Ctrl-C stopped training; ``exit_code`` is 143 (SIGTERM) or 130 (Ctrl-C), as shells do."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def evaluate_trained(
    cfg: DictConfig, out: Path, trainer: L.Trainer, benchmarks: dict
) -> dict[str, dict[str, float]]:
    """``benchmark=[...]`` on the train command line: the saved run is evaluated exactly as
    ``python evaluate.py run=<out>`` would (results in ``<out>/benchmarks/<name>.json``), and the metrics
    go to the run's loggers as ``benchmark/<name>/<metric>`` at the last step."""
    from mmpo import evaluate

    eval_cfg = OmegaConf.create(
        {
            "run": str(out),
            "benchmarks": OmegaConf.to_container(cfg.benchmarks, resolve=True),
            "merge_adapter": False,
            "batch_size": 16,
            "device": "auto",
            "seed": cfg.seed,
            "progress": trainer.progress_bar_callback is not None,
        }
    )
    results = evaluate.run(eval_cfg, benchmarks)
    flat = {f"benchmark/{name}/{k}": v for name, metrics in results.items() for k, v in metrics.items()}
    for logger in trainer.loggers:
        logger.log_metrics(flat, step=trainer.global_step)
        logger.save()
    return results


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mmpo.benchmarks.base import BenchmarkDataMissing
    from mmpo.data.records import RecordError
    from mmpo.models.loading import ModelPathError

    try:
        return run(cfg)
    except RunInterrupted as stop:
        print(f"mmpo: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    except (ConfigError, RecordError, ModelPathError, BenchmarkDataMissing) as error:
        remove_stub(Path(cfg.paths.output_dir))  # bad input: the message says what to fix
        print(f"mmpo: {error}", file=sys.stderr)
        sys.exit(2)
    except (TrainingDiverged, BaseBuildError) as error:
        print(f"mmpo: {error}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
