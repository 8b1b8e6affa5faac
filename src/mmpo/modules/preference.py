"""The generative preference module: one batched policy forward, one reference pass, a pure loss.

Trains a VLM ``policy`` on a :class:`~mmpo.losses.Loss` over the branches the loss declares. Logged
(``train/`` and ``val/`` prefixes, ``sync_dist`` so DDP reports global numbers): ``loss``, each term
``loss/<term>``, the loss's own metrics (per-branch log-probs, rewards, margins, accuracies and image
reliance, :mod:`mmpo.losses.metrics`) and the response tokens per sample. With a negative sampler configured,
validation also scores the chosen response under the first negative image, so every run (DPO included)
reports image reliance on held-out pairs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from mmpo.branches import CHOSEN_NEGATIVE, Branch, negatives_needed
from mmpo.data.datamodule import data_problems
from mmpo.data.examples import draws_per_epoch
from mmpo.data.rows import PreferenceBatch
from mmpo.engine.forward import branch_logps, branch_token_logps, engine_problems, resolve_mode
from mmpo.engine.reference import build_reference, reference_problems
from mmpo.engine.vision import ImageFeatures
from mmpo.generation import Generator
from mmpo.losses import Loss, LossInputs, Requirements, build_loss
from mmpo.models.loading import load_model, model_problems
from mmpo.models.sharding import is_sharded, shard
from mmpo.modules.base import TrainingModule, build_from, optim_problems
from mmpo.negatives import NegativeSampler, build_negative_sampler, sampler_options

SAMPLER_KEYS = {"train": "negative_sampler", "val": "val_negative_sampler"}
"""The config node of each split's sampler; validation falls back to training's."""


@dataclass
class DataPlan:
    """What a run's data will hold, known before anything loads: the branches and the sampler of each
    split, from the loss's requirements and the sampler configs."""

    loss_name: str
    requirements: Requirements
    branches: dict[str, list[Branch]]
    samplers: dict[str, NegativeSampler | None]
    context_swap: str = "per_epoch"

    def epoch_dependent(self, split: str, branch: Branch) -> bool:
        return draws_per_epoch(branch, self.samplers[split], self.context_swap)


def loss_name(cfg: DictConfig) -> str:
    """The loss's option name (``loss=<name>``): its config file's name, written nowhere else."""
    return (cfg.get("choices") or {}).get("loss") or str(cfg.loss.get("_target_", "?")).rsplit(".", 1)[-1]


def plan(cfg: DictConfig, requirements: Requirements) -> DataPlan:
    """The data plan of ``cfg``; a sampler config that does not build raises ``ValueError`` naming it."""
    samplers: dict[str, NegativeSampler | None] = {}
    for split, key in SAMPLER_KEYS.items():
        try:
            samplers[split] = build_negative_sampler(cfg.get(key))
        except ValueError as error:
            raise ValueError(f"{key}: {error}") from None
    samplers["val"] = samplers["val"] or samplers["train"]
    val = list(requirements.branches)
    if samplers["val"] is not None and CHOSEN_NEGATIVE not in val:
        val.append(CHOSEN_NEGATIVE)  # image-reliance diagnostics on held-out pairs
    return DataPlan(
        loss_name(cfg),
        requirements,
        {"train": list(requirements.branches), "val": val},
        samplers,
        cfg.data.context_swap,
    )


def requirement_problems(cfg: DictConfig, plan: DataPlan) -> list[str]:
    """Whether the data can give the loss what its requirements ask for."""
    need = plan.requirements.negatives
    if not need:
        return []
    if cfg.data.image == "none":
        return [
            f"loss={plan.loss_name} contrasts the image with {need} negative one(s); it cannot run with data.image=none"
        ]
    if plan.samplers["train"] is None:
        return [
            f"loss={plan.loss_name} needs {need} negative image(s) per record; negative_sampler allowed: "
            f"{sampler_options()}"
        ]
    return []


def sampler_problems(plan: DataPlan) -> list[str]:
    """Each sampler's own start-up problems (:meth:`NegativeSampler.problems`) for the negatives its splits
    draw; a validation sampler that falls back to training's is checked once."""
    checks: dict[int, list] = {}  # id(sampler) -> [config key, sampler, most negatives of its splits]
    for split, key in SAMPLER_KEYS.items():
        sampler, count = plan.samplers[split], negatives_needed(plan.branches[split])
        if sampler is not None and count:
            check = checks.setdefault(id(sampler), [key, sampler, 0])
            check[2] = max(check[2], count)
    return [
        f"{key}: {problem}" for key, sampler, count in checks.values() for problem in sampler.problems(count)
    ]


class PreferenceModule(TrainingModule):
    kind = "preference"
    shards = True
    benchmark_kinds = ("generative",)
    summary_metrics = (
        "train/loss_epoch",
        "val/loss",
        "val/rewards/accuracies",
        "val/rewards/margins",
        "val/image_reliance/accuracy",
    )

    def __init__(
        self,
        policy: torch.nn.Module,
        loss: Loss,
        reference: DictConfig | dict,
        optim,
        engine_mode="auto",
        processor=None,
        family=None,
    ):
        super().__init__(optim)
        self.policy = policy
        self.loss_fn = loss
        self.engine_mode = engine_mode
        self.processor, self.family = processor, family
        self.reference = build_reference(reference, policy, engine_mode, loss.requirements.reference)
        self.dropped: Counter[str] = Counter()

    # ---- the contract ----------------------------------------------------------------------------------
    @classmethod
    def problems(cls, cfg: DictConfig) -> list[str]:
        problems = model_problems(cfg.model) + data_problems(cfg.data)
        problems += engine_problems(cfg.engine, cfg.model, cfg.data.token_budget) + optim_problems(cfg.optim)
        try:
            requirements = build_loss(cfg.loss).requirements
        except Exception as error:  # noqa: BLE001 - reported with the key
            return [*problems, f"loss={loss_name(cfg)}: {getattr(error, '__cause__', None) or error}"]
        if requirements.module != cls.kind:
            return [
                *problems,
                f"loss={loss_name(cfg)} trains a {requirements.module!r} module; module={cls.kind} cannot",
            ]
        try:
            data = plan(cfg, requirements)
        except ValueError as error:
            return [*problems, str(error)]
        problems += requirement_problems(cfg, data) + sampler_problems(data)
        return problems + reference_problems(cfg, data)

    @classmethod
    def build(cls, cfg: DictConfig) -> tuple[PreferenceModule, object]:
        loss = build_loss(cfg.loss)
        data = plan(cfg, loss.requirements)
        policy, processor, family = load_model(cfg.model)
        datamodule = build_from(
            cfg.module.datamodule,
            cfg=cfg.data,
            processor=processor,
            family=family,
            branches=data.branches,
            samplers=data.samplers,
            seed=cfg.seed,
        )
        return cls(policy, loss, cfg.reference, cfg.optim, cfg.engine.mode, processor, family), datamodule

    def describe(self) -> dict[str, str]:
        mode = resolve_mode(self.engine_mode, self.policy)
        return {
            "engine": mode if mode == self.engine_mode else f"{mode} (engine.mode={self.engine_mode})",
            "reference": self.reference.name,
            "attention": self.policy.get_decoder().config._attn_implementation,
            **super().describe(),
        }

    def save(self, out: Path, datamodule) -> None:
        """LoRA policies save their adapter in peft format, others their full weights; both with the
        processor. Non-finite trainable weights are never saved."""
        self.save_pretrained(self.policy, self.processor, out)
        if self.trainer.is_global_zero:
            datamodule.write_report(out, self.dropped)

    @classmethod
    def load_for_evaluation(cls, cfg: DictConfig, trained, device: torch.device) -> Generator:
        from mmpo.checkpoint import load_run, load_untrained

        if trained is None:
            model, processor, family = load_untrained(cfg.model)
        else:
            model, processor, family = load_run(trained, merge=cfg.get("merge_adapter", False))
        return Generator(
            model.to(device), processor, family, cfg.get("batch_size", 16), cfg.get("progress", True)
        )

    def evaluation_handle(self, batch_size: int, progress: bool = False) -> Generator:
        return Generator(self.policy, self.processor, self.family, batch_size, progress)

    # ---- one step ----------------------------------------------------------------------------------
    def compute(self, batch: PreferenceBatch, stage: str):
        """``(loss output, response-token metric)`` of one batch: the policy forward with grad, the
        reference pass or look-up, the loss (used by the steps and by ``scripts/bench_step.py``);
        ``(None, None)`` for a training batch whose loss is non-finite and skipped."""
        self.batch_ids = batch.ids
        features = ImageFeatures.for_step(self.policy)  # each image encoded once, for policy and reference
        needs = self.loss_fn.requirements
        if needs.token_logps:  # token-level terms: per-token tables too (else the engine's fast path)
            tokens = (needs.token_logps, needs.token_distributions)
            policy, counts, policy_tokens = branch_token_logps(
                self.policy, batch, self.engine_mode, features, *tokens
            )
            reference, reference_tokens = self.reference.token_logps(
                self.policy, batch, features, stage, *tokens
            )
            inputs = LossInputs(counts, batch.negative_log_q, policy_tokens, reference_tokens)
        else:
            policy, counts = branch_logps(self.policy, batch, self.engine_mode, features)
            reference = self.reference.logps(self.policy, batch, features, stage)
            inputs = LossInputs(counts, batch.negative_log_q)
        out = self.loss_fn(policy, reference, inputs)
        if stage == "train" and not torch.isfinite(out.loss):
            tables = {"policy": policy, "reference": reference or {}}
            broken = [f"{n} {b}" for n, t in tables.items() for b, v in t.items() if not v.isfinite().all()]
            self.diverged(
                f"the loss is {out.loss.item()}",
                f" (non-finite log-probs: {', '.join(broken)})" if broken else "",
            )
        return out, sum(c.float().mean() for c in counts.values())

    def _step(self, batch: PreferenceBatch, stage: str) -> torch.Tensor | None:
        self.dropped.update(batch.dropped)
        if len(batch) == 0:
            return None
        out, tokens = self.compute(batch, stage)
        if out is None:  # a non-finite loss, skipped (optim.on_nonfinite=skip)
            return None
        metrics = {**{f"loss/{k}": v for k, v in out.terms.items()}, **out.metrics, "tokens/response": tokens}
        options = {"sync_dist": True, "batch_size": len(batch), "on_step": stage == "train", "on_epoch": True}
        self.log(f"{stage}/loss", out.loss.detach(), prog_bar=True, **options)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, **options)
        return out.loss

    def training_step(self, batch: PreferenceBatch, batch_idx: int):
        return self._step(batch, "train")

    def validation_step(self, batch: PreferenceBatch, batch_idx: int):
        self._step(batch, "val")

    # ---- plumbing ----------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Under Lightning's ``ModelParallelStrategy`` (``trainer=fsdp2``, ``fsdp2_cpu``): FSDP2 on the policy
        and on the reference's own model (:mod:`mmpo.models.sharding`); once per process (Lightning calls
        this hook again for every ``validate`` and ``fit``)."""
        from lightning.pytorch.strategies import ModelParallelStrategy

        if isinstance(self.trainer.strategy, ModelParallelStrategy) and not is_sharded(self.policy):
            mesh, precision = self.device_mesh["data_parallel"], self.trainer.precision
            shard(self.policy, mesh, precision)
            self.reference.shard(mesh, precision)

    def on_fit_start(self) -> None:
        # from_pretrained returns eval-mode models; HF enables gradient checkpointing only in train mode
        self.policy.train()
        self.reference.to(self.device)
        self._start_epoch(resumed=self.trainer.ckpt_path is not None)

    def on_train_epoch_start(self) -> None:
        self._start_epoch()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "validate":  # trainer.validate outside fit (before training starts)
            self.reference.to(self.device)
            self._start_epoch()

    def _start_epoch(self, resumed: bool = False) -> None:
        """Seed the data with the epoch and let the reference prepare for it (reference=precomputed fills
        or checks its cache entries)."""
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
