"""Hydra entry point: check the config, build data, policy and trainer, fit, save, summarise.

    python train.py                                   # DPO, tiny LLaVA, shapes world, CPU
    python train.py loss=mdpo negative_sampler=crop model=tiny_qwen2vl
    python train.py loss=dpo model=llava7b trainer=ddp

A run directory ``outputs/<run_name>/<timestamp>/`` receives the composed config (``config.yaml`` and
``.hydra/``), ``metrics.csv``, ``checkpoints/``, the LoRA adapter in peft format (``adapter/``) or the
full weights (``model/``), ``data_report.json`` and a one-line ``summary.txt``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mmpo.bases import BaseBuildError, resolve_init_from
from mmpo.config import CONF_DIR, ConfigError, check_config, wandb_mode

log = logging.getLogger("mmpo")


def _instantiate_all(node: DictConfig | None) -> list:
    return [instantiate(v) for v in (node or {}).values() if isinstance(v, DictConfig) and "_target_" in v]


def continue_wandb_run(cfg: DictConfig) -> None:
    """Resuming from ``<run>/checkpoints/last.ckpt`` logs to the wandb run of ``<run>`` (same id) unless
    ``logger.wandb.id`` is set. wandb names its run directories ``<run>/wandb/[offline-]run-<time>-<id>``."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if not cfg.get("ckpt_path") or wandb_cfg is None or wandb_cfg.get("id"):
        return
    runs = sorted(
        (Path(cfg.ckpt_path).resolve().parents[1] / "wandb").glob("*run-*-*"),
        key=lambda path: path.name.split("run-", 1)[1],  # by time, offline and online runs alike
    )
    if runs:
        with open_dict(cfg):
            wandb_cfg.id = runs[-1].name.rsplit("-", 1)[1]
        log.info("resuming wandb run %s", wandb_cfg.id)


def finish_wandb_runs(trainer: L.Trainer) -> None:
    """Close this run's wandb run: Lightning leaves it open, and the next job of a Hydra multirun in the
    same process would otherwise log into it."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        if wandb.run is not None and trainer.is_global_zero:
            directory = wandb.run.settings.sync_dir
            log.info(
                "wandb run %s (%s): %s; `wandb sync %s` uploads it",
                wandb.run.id,
                wandb_mode(),
                directory,
                directory,
            )
        wandb.finish()


def summary_line(cfg: DictConfig, metrics: dict, seconds: float, steps: int, choices: dict) -> str:
    keys = (
        "train/loss_epoch",
        "val/loss",
        "val/rewards/accuracies",
        "val/rewards/margins",
        "val/image_reliance/accuracy",
    )
    values = " ".join(f"{k}={float(metrics[k]):.4f}" for k in keys if k in metrics)
    setting = " ".join(f"{k}={choices[k].split()[0]}" for k in ("status", "engine", "reference"))
    return (
        f"{cfg.run_name}: loss={cfg.loss.name} model={cfg.model.name} {setting} steps={steps} {values} "
        f"time={seconds:.1f}s"
    )


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


def claim_run_dir(out: Path, cfg: DictConfig) -> None:
    """Write ``config.yaml``, failing if the directory already holds a run: two runs never share one.
    Only the process of global rank 0 claims: the other ranks of a DDP job share its directory."""
    from lightning.pytorch.utilities import rank_zero_only

    out.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank != 0:
        return
    try:
        with open(out / "config.yaml", "x") as handle:
            handle.write(OmegaConf.to_yaml(cfg, resolve=True))
    except FileExistsError:
        raise ConfigError(
            f"the run directory {out} already holds a run (config.yaml); a run never writes into another "
            "run's directory: drop hydra.run.dir to get a fresh one, or resume with ckpt_path=<that run>"
        ) from None


def remove_stub(out: Path) -> None:
    """A run that failed at start-up leaves no directory behind (Hydra creates it with ``.hydra/`` and
    the log before the checks run); a directory that holds anything else is left alone."""
    if out.is_dir() and {p.name for p in out.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(out, ignore_errors=True)


def run(cfg: DictConfig) -> float | None:
    check_config(cfg)
    ckpt_path = resume_checkpoint(cfg.ckpt_path)
    wandb_mode()
    continue_wandb_run(cfg)
    # heavy imports after the config check: a bad config fails in a second
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from mmpo.data.datamodule import PreferenceDataModule
    from mmpo.losses import build_loss
    from mmpo.models.loading import load_model
    from mmpo.modules.preference import PreferenceModule, TrainingDiverged
    from mmpo.negatives import build_negative_sampler

    benchmarks = None
    if cfg.get("benchmarks"):
        from mmpo.evaluate import load_benchmarks

        benchmarks = load_benchmarks(cfg)  # missing benchmark data fails now, not after training
    start = time.time()
    resolve_init_from(cfg.model, cfg.paths.base_dir)  # base:<experiment> -> its run directory
    out = Path(cfg.paths.output_dir)
    claim_run_dir(out, cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    loss = build_loss(cfg.loss)
    policy, processor, family = load_model(cfg.model)
    datamodule = PreferenceDataModule(
        cfg.data,
        processor,
        family,
        loss.branches,
        build_negative_sampler(cfg.get("negative_sampler")),
        cfg.seed,
        val_sampler=build_negative_sampler(cfg.get("val_negative_sampler")),
    )
    module = PreferenceModule(policy, loss, cfg.reference, cfg.optim, cfg.engine.mode)
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
    try:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except (SystemExit, TrainingDiverged) as stop:  # SIGTERM; Ctrl-C (Lightning exits 1); NaN
            stopped = stop
            what = "diverged" if isinstance(stop, TrainingDiverged) else "interrupted"
            choices["status"] = f"{what} at step {trainer.global_step}"
        else:
            if module.validated_at_step != trainer.global_step and trainer.limit_val_batches:
                trainer.validate(module, datamodule=datamodule, verbose=False)  # max_steps ended mid-epoch
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.is_global_zero:
            if not isinstance(stopped, TrainingDiverged):
                save_weights(module.policy, processor, out)
            datamodule.write_report(out, module.dropped)
            if benchmarks and stopped is None:
                module.cpu()  # the accelerator's memory goes to the reloaded copy that is evaluated
                evaluate_trained(cfg, out, trainer, benchmarks)
            line = summary_line(cfg, metrics, time.time() - start, trainer.global_step, choices)
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


def save_weights(policy, processor, out: Path) -> None:
    """LoRA policies save their adapter in peft format, others their full weights; both with the processor.
    Non-finite trainable weights are never saved."""
    from mmpo.modules.preference import TrainingDiverged

    if not all(p.isfinite().all() for p in policy.parameters() if p.requires_grad):
        raise TrainingDiverged(f"a trainable weight is non-finite; nothing was saved to {out}")
    target = out / ("adapter" if hasattr(policy, "peft_config") else "model")
    policy.save_pretrained(target)
    processor.save_pretrained(target)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mmpo.benchmarks.base import BenchmarkDataMissing
    from mmpo.data.records import RecordError
    from mmpo.models.loading import ModelPathError
    from mmpo.modules.preference import TrainingDiverged

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
