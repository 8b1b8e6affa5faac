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
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mmpo.config import ConfigError, check_config, wandb_mode

log = logging.getLogger("mmpo")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


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

        wandb.finish()


def summary_line(cfg: DictConfig, metrics: dict, seconds: float, steps: int) -> str:
    keys = (
        "train/loss_epoch",
        "val/loss",
        "val/rewards/accuracies",
        "val/rewards/margins",
        "val/image_reliance/accuracy",
    )
    values = " ".join(f"{k}={float(metrics[k]):.4f}" for k in keys if k in metrics)
    return f"{cfg.run_name}: loss={cfg.loss.name} model={cfg.model.name} steps={steps} {values} time={seconds:.1f}s"


def run(cfg: DictConfig) -> float | None:
    check_config(cfg)
    wandb_mode()
    continue_wandb_run(cfg)
    # heavy imports after the config check: a bad config fails in a second
    from mmpo.data.datamodule import PreferenceDataModule
    from mmpo.losses import build_loss
    from mmpo.models.loading import load_model
    from mmpo.modules.preference import PreferenceModule
    from mmpo.negatives import build_negative_sampler

    benchmarks = None
    if cfg.get("benchmarks"):
        from mmpo.evaluate import load_benchmarks

        benchmarks = load_benchmarks(cfg)  # missing benchmark data fails now, not after training
    start = time.time()
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True)

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
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.is_global_zero:
            save_weights(module.policy, processor, out)
            datamodule.write_report(out, module.dropped)
            if benchmarks:
                module.cpu()  # the accelerator's memory goes to the reloaded copy that is evaluated
                evaluate_trained(cfg, out, trainer, benchmarks)
            line = summary_line(cfg, metrics, time.time() - start, trainer.global_step)
            (out / "summary.txt").write_text(line + "\n")
            log.info("run directory: %s", out)
            print(line)
    finally:
        finish_wandb_runs(trainer)
    return metrics.get(cfg.get("optimized_metric"))


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
    """LoRA policies save their adapter in peft format, others their full weights; both with the processor."""
    target = out / ("adapter" if hasattr(policy, "peft_config") else "model")
    policy.save_pretrained(target)
    processor.save_pretrained(target)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mmpo.benchmarks.base import BenchmarkDataMissing
    from mmpo.data.records import RecordError
    from mmpo.models.loading import ModelPathError

    try:
        return run(cfg)
    except (
        ConfigError,
        RecordError,
        ModelPathError,
        BenchmarkDataMissing,
    ) as error:  # bad input: the message says what to fix
        print(f"mmpo: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
