"""What a module kind gives ``train.py`` and ``evaluate.py``, and the parts of training every kind shares.

``conf/module/<kind>.yaml`` names the LightningModule class (``_target_``); a loss's own config can select
it (``defaults: [override /module@_global_.module: <kind>]``), so ``python train.py loss=<x>`` still reads
like the experiment. ``train.py`` only calls what :class:`TrainingModule` declares:

- ``problems(cfg)``: every start-up problem of the run, before any model loads (classmethod);
- ``build(cfg)``: the module and its data module (classmethod);
- ``describe()``: the choices a run logs and summarises; ``save(out, datamodule)``: what the run keeps;
- ``load_for_evaluation(...)`` (classmethod) and ``evaluation_handle()``: the object benchmarks evaluate
  (a text generator for generative modules, an encoder for embedding modules; ``benchmark_kinds``).

Shared by every kind: AdamW on the trainable parameters with a warm-up schedule (``optim``), checkpoints of
the trainable weights only, a stop before any non-finite gradient is applied or weight is saved, and the
step of the last validation (``train.py`` validates at the end of fit when ``max_steps`` ended mid-epoch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from omegaconf import DictConfig
from torch.distributed.tensor import DTensor
from transformers import get_scheduler

from mmpo.models.sharding import full_state_dict, is_sharded, save_gathered

SCHEDULERS = ("cosine", "linear", "constant_with_warmup")
"""``optim.scheduler``: the learning-rate schedule after the linear warm-up."""
ON_NONFINITE = ("stop", "skip")
"""``optim.on_nonfinite``: a non-finite loss or gradient stops the run, or skips the step (counted, with the
batch's record ids, in ``skipped_steps.json``); a non-finite weight always stops it."""

log = logging.getLogger("mmpo")


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient or weight: training stops before anything non-finite is saved."""


def build_from(node: DictConfig, **objects: Any) -> Any:
    """``node._target_(**node's other keys, **objects)``: Hydra's ``instantiate`` would turn the live
    objects (processor, family, samplers) into configs on the way."""
    from hydra.utils import get_class

    params = {k: v for k, v in node.items() if k != "_target_"}
    return get_class(node._target_)(**params, **objects)


def optim_problems(optim: DictConfig) -> list[str]:
    return [
        f"optim.{key}={optim[key]!r}; allowed: {list(allowed)}"
        for key, allowed in (("scheduler", SCHEDULERS), ("on_nonfinite", ON_NONFINITE))
        if optim[key] not in allowed
    ]


class TrainingModule(L.LightningModule):
    """Base class of the module kinds (module docstring)."""

    kind: ClassVar[str]
    benchmark_kinds: ClassVar[tuple[str, ...]] = ()
    summary_metrics: ClassVar[tuple[str, ...]] = ("train/loss_epoch", "val/loss")
    shards: ClassVar[bool] = False
    """Whether ``configure_model`` applies FSDP2 under ``ModelParallelStrategy`` (:mod:`mmpo.models.sharding`)."""

    def __init__(self, optim: DictConfig | dict):
        super().__init__()
        self.strict_loading = False  # checkpoints hold the trainable weights only (state_dict)
        self.optim = optim
        self.batch_ids: list[str] = []
        """The record ids of the batch being trained on (named when training diverges)."""
        self.validated_at_step: int | None = None
        self.skipped_steps: list[dict] = []
        """The steps skipped for a non-finite loss or gradient (``optim.on_nonfinite=skip``)."""

    # ---- the contract ----------------------------------------------------------------------------------
    @classmethod
    def problems(cls, cfg: DictConfig) -> list[str]:
        raise NotImplementedError

    @classmethod
    def build(cls, cfg: DictConfig) -> tuple[TrainingModule, L.LightningDataModule]:
        raise NotImplementedError

    def save(self, out: Path, datamodule: L.LightningDataModule) -> None:
        """Called on every rank (gathering sharded weights is a collective); global rank zero writes."""
        raise NotImplementedError

    @classmethod
    def load_for_evaluation(cls, cfg: DictConfig, trained, device: torch.device) -> Any:
        """The evaluation handle of a finished run (``trained``: :class:`~mmpo.checkpoint.TrainedRun`), or
        of the ``model`` of ``cfg`` untrained when ``trained`` is None."""
        raise NotImplementedError

    def evaluation_handle(self, batch_size: int, progress: bool = False) -> Any:
        raise NotImplementedError

    def save_pretrained(self, model: torch.nn.Module, processor, out: Path) -> None:
        """``model`` and ``processor`` in Hugging Face layout under the run directory ``out``: a peft model's
        adapter in ``adapter/``, full weights in ``model/``. Written by global rank zero; a sharded model's
        full weights are gathered first (every rank calls this). A non-finite trainable weight stops the
        run instead."""
        target = out / ("adapter" if hasattr(model, "peft_config") else "model")
        if not finite_trainable_weights(model):
            self.diverged("a trainable weight is non-finite")
        weights = full_state_dict(model) if is_sharded(model) else None
        if self.trainer.is_global_zero:
            if weights is None:
                model.save_pretrained(target)
            else:
                save_gathered(model, weights, target)
            processor.save_pretrained(target)

    def describe(self) -> dict[str, str]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"trainable params": f"{trainable:,} / {total:,} ({100 * trainable / max(total, 1):.2f}%)"}

    # ---- divergence: stop before a non-finite update is applied or saved ---------------------------
    def diverged(self, what: str, detail: str = "") -> None:
        raise TrainingDiverged(
            f"training diverged at step {self.trainer.global_step}: {what} for the batch of records "
            f"{self.batch_ids}{detail}. Nothing non-finite was saved; lower optim.lr or the loss's beta, or "
            "resume from the last checkpoint with ckpt_path=<run dir>."
        )

    def nonfinite(self, what: str, detail: str = "") -> None:
        """A non-finite loss or gradient: stop (:meth:`diverged`), or with ``optim.on_nonfinite=skip`` count
        the step (the caller then skips it)."""
        if self.optim.get("on_nonfinite", "stop") != "skip":
            self.diverged(what, detail)
        self.skipped_steps.append(
            {"step": self.trainer.global_step, "what": what + detail, "records": list(self.batch_ids)}
        )
        log.warning(
            "step %d skipped: %s for records %s", self.trainer.global_step, what + detail, self.batch_ids
        )

    def on_before_optimizer_step(self, optimizer) -> None:
        params = [p for p in self.parameters() if p.grad is not None]
        norm = (
            torch.nn.utils.get_total_norm([p.grad for p in params])
            if params
            else torch.zeros((), device=self.device)
        )
        if isinstance(norm, DTensor):  # sharded gradients (FSDP2): the norm of the full gradient
            norm = norm.full_tensor()
        if not torch.isfinite(norm):
            self.nonfinite(f"the gradient norm is {norm.item()}")
            for p in params:  # the optimizer skips parameters without a gradient: no update, no moment change
                p.grad = None
            return
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if not finite_trainable_weights(self):
            self.diverged("a trainable weight is non-finite")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint saved mid-epoch: the data module continues at the next batch, batch for batch as
        the uninterrupted run (if it can: ``resume_at(epoch, batches)``, :mod:`mmpo.data.sampling`)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if progress and hasattr(datamodule, "resume_at"):
            datamodule.resume_at(checkpoint["epoch"], progress["current"]["processed"])

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validated_at_step = self.trainer.global_step

    # ---- optimisation and checkpoints ------------------------------------------------------------------
    def on_train_start(self) -> None:
        """A resumed run continues on the schedule of its own limits: with ``trainer.max_steps`` raised, the
        learning rate of each next step is the one an uninterrupted run with the new limits has there
        (the checkpoint restores the scheduler's step; its optimizer would otherwise keep the old rate for
        one step). A fresh run is unchanged: its rate is already the schedule's value at step 0."""
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            for group, base, factor in zip(
                scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
            ):
                group["lr"] = base * factor(scheduler.last_epoch)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: enable model.lora or unfreeze part of the model")
        optimizer = torch.optim.AdamW(
            params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, betas=tuple(self.optim.betas)
        )
        total = self.trainer.estimated_stepping_batches
        scheduler = get_scheduler(
            self.optim.scheduler,
            optimizer,
            num_warmup_steps=int(self.optim.warmup_ratio * total),
            num_training_steps=total,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        """Checkpoints hold the trainable weights only (LoRA adapters, unfrozen modules)."""
        full = super().state_dict(*args, **kwargs)
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in full.items() if k in trainable}

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        return super().load_state_dict(state_dict, strict=False, **kwargs)


def finite_trainable_weights(module: torch.nn.Module) -> bool:
    return all(p.isfinite().all() for p in module.parameters() if p.requires_grad)
