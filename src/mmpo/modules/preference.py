"""The generative preference module: one batched policy forward, one reference pass, a pure loss."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import lightning as L
import torch
from omegaconf import DictConfig
from transformers import get_scheduler

from mmpo.data.rows import PreferenceBatch
from mmpo.engine.forward import branch_logps, resolve_mode
from mmpo.engine.reference import Reference
from mmpo.engine.vision import ImageFeatures
from mmpo.losses import PreferenceLoss, preference_metrics


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient or weight: training stops before anything non-finite is saved."""


class PreferenceModule(L.LightningModule):
    """Trains ``policy`` on ``loss`` over the branches the loss declares.

    Logged (train/ and val/ prefixes): ``loss``, each term ``loss/<term>``, and per-branch log-probs,
    rewards, margins, accuracies and image-reliance metrics (:mod:`mmpo.losses.metrics`), all with
    ``sync_dist`` so DDP reports global numbers.
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        loss: PreferenceLoss,
        reference: str | Mapping,
        optim: DictConfig,
        engine_mode: str = "batched",
    ):
        super().__init__()
        self.policy = policy
        self.loss_fn = loss
        self.optim = optim
        self.engine_mode = engine_mode
        options = {"strategy": reference} if isinstance(reference, str) else dict(reference)
        strategy = options["strategy"] if loss.needs_reference else "none"
        self.reference = Reference(strategy, policy, engine_mode, options.get("on_missing", "fill"))
        self.dropped: Counter[str] = Counter()
        self.batch_ids: list[str] = []
        self.validated_at_step: int | None = None

    # ---- one step ----------------------------------------------------------------------------------
    def _step(self, batch: PreferenceBatch, stage: str) -> torch.Tensor | None:
        self.dropped.update(batch.dropped)
        if len(batch) == 0:
            return None
        self.batch_ids = batch.ids
        features = ImageFeatures.for_step(self.policy)  # each image encoded once, for policy and reference
        policy, counts = branch_logps(self.policy, batch, self.engine_mode, features)
        reference = self.reference.logps(self.policy, batch, features, stage)
        out = self.loss_fn(policy, reference, counts)
        if stage == "train" and not torch.isfinite(out.loss):
            self._diverged(f"the loss is {out.loss.item()}", policy, reference)
        metrics = {f"loss/{k}": v for k, v in out.terms.items()}
        metrics.update(preference_metrics(policy, reference, self.loss_fn.beta))
        metrics["tokens/response"] = sum(c.float().mean() for c in counts.values())
        options = {"sync_dist": True, "batch_size": len(batch), "on_step": stage == "train", "on_epoch": True}
        self.log(f"{stage}/loss", out.loss.detach(), prog_bar=True, **options)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, **options)
        return out.loss

    def training_step(self, batch: PreferenceBatch, batch_idx: int):
        return self._step(batch, "train")

    def validation_step(self, batch: PreferenceBatch, batch_idx: int):
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validated_at_step = self.trainer.global_step

    # ---- divergence: stop before a non-finite update is applied or saved ---------------------------
    def _diverged(self, what: str, policy=None, reference=None) -> None:
        tables = {"policy": policy or {}, "reference": reference or {}}
        broken = [f"{name} {b}" for name, t in tables.items() for b, v in t.items() if not v.isfinite().all()]
        where = f" (non-finite log-probs: {', '.join(broken)})" if broken else ""
        raise TrainingDiverged(
            f"training diverged at step {self.trainer.global_step}: {what} for the batch of records "
            f"{self.batch_ids}{where}. Nothing non-finite was saved; lower optim.lr or the loss's beta, or "
            "resume from the last checkpoint with ckpt_path=<run dir>."
        )

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        if not torch.isfinite(norm):
            self._diverged(f"the gradient norm is {norm.item()}")
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if not all(p.isfinite().all() for p in self.policy.parameters() if p.requires_grad):
            self._diverged("a trainable weight is non-finite")

    def describe(self) -> dict[str, str]:
        """The resolved choices a run logs and summarises: engine mode, reference, trainable parameters."""
        trainable = sum(p.numel() for p in self.policy.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.policy.parameters())
        mode = resolve_mode(self.engine_mode, self.policy)
        return {
            "engine": mode if mode == self.engine_mode else f"{mode} (engine.mode={self.engine_mode})",
            "reference": self.reference.strategy,
            "trainable params": f"{trainable:,} / {total:,} ({100 * trainable / total:.2f}%)",
        }

    # ---- plumbing ----------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # from_pretrained returns eval-mode models; HF enables gradient checkpointing only in train mode
        self.policy.train()
        self.reference.to(self.device)
        self._start_epoch(resumed=self.trainer.ckpt_path is not None)

    def on_train_epoch_start(self) -> None:
        self._start_epoch()

    def _start_epoch(self, resumed: bool = False) -> None:
        """Seed the data with the epoch and, for reference=precomputed, fill or check its cache entries."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            datamodule.set_epoch(self.current_epoch)
            self.reference.prepare(
                self.policy,
                datamodule,
                self.current_epoch,
                write=self.trainer.is_global_zero,
                resumed=resumed,
            )

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
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
