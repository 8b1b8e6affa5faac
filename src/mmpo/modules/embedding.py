"""The embedding module kind (MAPLE, methods.md §3): a VLM retriever trained on a frozen MLLM's preferences.

- **retriever**: the ``model`` VLM as an :class:`~mmpo.embedding.embedder.Embedder` (mean pooling,
  bidirectional attention; ``module.embedder``), LoRA on the LLM, vision tower and connector frozen
  (``conf/model/*_embed.yaml``);
- **reward**: the ``reward_model`` VLM, loaded on its own (base and ``init_from``; its ``lora`` is not
  used), frozen, asked yes/no questions (:class:`~mmpo.embedding.scorer.AlignmentScorer` through
  :class:`~mmpo.embedding.questions.QuestionScorer`, ``module.scorer``), every answer cached on disk
  (``module.scorer.cache``, keyed by the scorer's fingerprint: runs of one reward model share it);
- **data**: anchors with their candidates (:mod:`mmpo.data.candidate_sets`, ``module.candidates``);
- **loss**: :class:`~mmpo.embedding.objective.MapleLoss` (``loss=rpa``).

One step over B anchors with k candidates each, per direction of ``module.directions``::

    t2i: anchor = the caption,  candidates = [its image, k candidate images],  alpha(candidate image, caption)
    i2t: anchor = the image,    candidates = [its caption, k candidate texts], alpha(image, candidate text)

Every image of the batch (anchors and candidates) is embedded in one forward and every text in another;
the rewards of all pairs of both directions come from one scorer call (cache first). Under DDP the loss
gathers every rank's pairs and candidates as contrastive keys (:mod:`mmpo.embedding.contrastive`).

Logged (``train/``, ``val/``; ``sync_dist``): ``loss``, ``loss/<term>``, the loss's metrics; per training
epoch the reward cache's lookups of the training steps ``reward_cache/hits``, ``misses`` and
``hit_rate`` (a second epoch over the same data is all hits). Each validation also measures the
modality gap (:mod:`mmpo.benchmarks.modality_gap`) between matched (anchor, own pair) and unmatched
(anchor, hard negative) pairs of the validation candidates, both directions pooled: ``gap/W_disc`` of
the retriever (cosine mapped to ``(1 + cos) / 2``), ``gap/reward_W_disc`` of the reward MLLM and
``gap/W_dist`` between the two; :meth:`EmbeddingModule.save` plots the last one to
``<run>/modality_gap.png``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from mmpo.data.candidate_sets import CandidateBatch, candidate_problems
from mmpo.data.datamodule import data_problems
from mmpo.embedding.attention import ATTENTION_IMPLEMENTATIONS, FAMILIES
from mmpo.embedding.embedder import Embedder
from mmpo.embedding.objective import CandidateSet
from mmpo.embedding.questions import QUESTIONS, QuestionScorer
from mmpo.losses import Loss, build_loss
from mmpo.models.loading import load_model, model_problems
from mmpo.modules.base import TrainingModule, build_from, optim_problems
from mmpo.modules.preference import loss_name

DIRECTIONS = ("t2i", "i2t")
"""``module.directions``: text-to-image (caption anchors, image candidates) and image-to-text."""
RETRIEVER, REWARD = "retriever (1 + cos) / 2", "reward MLLM"


def embedding_problems(cfg: DictConfig) -> list[str]:
    """The retriever's and the reward model's families, the retriever's attention, the module's options."""
    problems = []
    for key in ("model", "reward_model"):
        if cfg[key].family not in FAMILIES:
            problems.append(f"module=embedding: {key}.family={cfg[key].family!r}; allowed: {list(FAMILIES)}")
    if cfg.model.attn_implementation not in ("auto", *ATTENTION_IMPLEMENTATIONS):
        problems.append(
            f"model.attn_implementation={cfg.model.attn_implementation!r} takes no bidirectional 4-D mask; "
            f"allowed: {['auto', *ATTENTION_IMPLEMENTATIONS]}"
        )
    directions = list(cfg.module.directions)
    if not directions or set(directions) - set(DIRECTIONS):
        problems.append(f"module.directions={directions}; allowed: a non-empty list of {list(DIRECTIONS)}")
    scorer = cfg.module.scorer
    if scorer.questions not in QUESTIONS:
        problems.append(f"module.scorer.questions={scorer.questions!r}; allowed: {list(QUESTIONS)}")
    if "{text}" not in scorer.prompt:
        problems.append(f"module.scorer.prompt={scorer.prompt!r} must contain {{text}}")
    if scorer.batch_size < 1:
        problems.append(f"module.scorer.batch_size={scorer.batch_size}: give a positive number of pairs")
    if cfg.get("negative_sampler"):
        problems.append(
            "module=embedding takes its negatives from module.candidates; negative_sampler must be none"
        )
    if cfg.data.image != "original":
        problems.append(
            f"module=embedding embeds the records' images; data.image={cfg.data.image!r} must be original"
        )
    return problems


def columns(anchors: Tensor, candidates: Tensor, mask: Tensor) -> Tensor:
    """``[B, k + 1, ...]``: column 0 the anchors' own rows, then each anchor's present candidates
    (``candidates`` in row-major order of ``mask``'s True entries after column 0), zeros where absent."""
    out = anchors.new_zeros(*mask.shape, *anchors.shape[1:])
    out[:, 0] = anchors
    rest = mask.clone()
    rest[:, 0] = False
    out[rest] = candidates
    return out


def flat(lists: list[list]) -> list:
    return [x for inner in lists for x in inner]


class EmbeddingModule(TrainingModule):
    kind = "embedding"
    benchmark_kinds = ("embedding",)
    summary_metrics = (
        "train/loss_epoch",
        "val/loss",
        "val/t2i/positive_top1",
        "val/i2t/positive_top1",
        "val/t2i/reward_agreement",
        "train/reward_cache/hit_rate",
    )

    def __init__(
        self,
        embedder: Embedder,
        reward: QuestionScorer,
        loss: Loss,
        optim,
        directions=DIRECTIONS,
        reward_name: str = "",
    ):
        super().__init__(optim)
        self.embedder = embedder
        self.reward = reward  # not a submodule: never trained, saved or moved with the retriever
        self.loss_fn = loss
        self.directions = tuple(directions)
        self.reward_name = reward_name
        self.epoch_lookups = torch.zeros(2, dtype=torch.float64)
        self.gap_scores: dict[str, list[Tensor]] = {}
        self.gap: dict[str, tuple[Tensor, Tensor]] | None = None

    # ---- the contract ----------------------------------------------------------------------------------
    @classmethod
    def problems(cls, cfg: DictConfig) -> list[str]:
        problems = model_problems(cfg.model) + model_problems(cfg.reward_model, "reward_model")
        problems += data_problems(cfg.data) + optim_problems(cfg.optim)
        problems += embedding_problems(cfg) + candidate_problems(cfg.data, cfg.module.candidates)
        try:
            requirements = build_loss(cfg.loss).requirements
        except Exception as error:  # noqa: BLE001 - reported with the key
            return [*problems, f"loss={loss_name(cfg)}: {getattr(error, '__cause__', None) or error}"]
        if requirements.module != cls.kind:
            problems.append(
                f"loss={loss_name(cfg)} trains a {requirements.module!r} module; module={cls.kind} cannot"
            )
        return problems

    @classmethod
    def build(cls, cfg: DictConfig) -> tuple[EmbeddingModule, object]:
        from mmpo.bases import resolve_init_from
        from mmpo.checkpoint import load_untrained
        from mmpo.embedding.scorer import AlignmentScorer

        loss = build_loss(cfg.loss)
        policy, processor, _ = load_model(cfg.model, flex_attention=False)  # its masks are dense
        embedder = Embedder(policy, processor, **cfg.module.embedder)
        resolve_init_from(cfg.reward_model, cfg.paths.base_dir)  # base:<experiment> -> its run directory
        reward_model, reward_processor, _ = load_untrained(cfg.reward_model)
        settings = cfg.module.scorer
        scorer = AlignmentScorer(
            reward_model,
            reward_processor,
            prompt=settings.prompt,
            yes=settings["yes"],
            no=settings["no"],
            batch_size=settings.batch_size,
            cache=settings.cache,
        )
        datamodule = build_from(
            cfg.module.datamodule, cfg=cfg.data, candidates=cfg.module.candidates, seed=cfg.seed
        )
        name = cfg.reward_model.name + (
            f" from {cfg.reward_model.init_from}" if cfg.reward_model.init_from else ""
        )
        reward = QuestionScorer(scorer, settings.questions)
        return cls(embedder, reward, loss, cfg.optim, cfg.module.directions, name), datamodule

    def describe(self) -> dict[str, str]:
        cache = self.reward.scorer.cache
        return {
            "reward": f"{self.reward_name}, questions {self.reward.questions}",
            "reward cache": str(cache.path) if cache is not None else "none",
            "directions": "+".join(self.directions),
            **super().describe(),
        }

    def save(self, out: Path, datamodule) -> None:
        """The retriever's LoRA adapter in peft format (full weights without LoRA) with its processor, the
        data report, and the modality-gap plot of the last validation."""
        from mmpo.benchmarks.modality_gap import plot_modality_gap

        model = self.embedder.model
        self.save_pretrained(model, self.embedder.processor, out)
        if not self.trainer.is_global_zero:
            return
        datamodule.write_report(out)
        if self.gap is not None:
            plot_modality_gap(self.gap, out / "modality_gap.png", reference=REWARD)

    @classmethod
    def load_for_evaluation(cls, cfg: DictConfig, trained, device: torch.device) -> Embedder:
        """The trained retriever (its base, ``init_from`` and adapter, as in training) or, without a run,
        the ``model`` of ``cfg`` untrained, as an encoder with the run's ``module.embedder`` settings."""
        from mmpo.checkpoint import load_run, load_untrained

        if trained is None:
            model, processor, _ = load_untrained(cfg.model)
            settings = cfg.module.embedder
        else:
            model, processor, _ = load_run(trained, merge=cfg.get("merge_adapter", False))
            settings = trained.config.module.embedder
        return Embedder(model.to(device).eval(), processor, **settings)

    def evaluation_handle(self, batch_size: int, progress: bool = False) -> Embedder:
        return self.embedder

    # ---- one step ----------------------------------------------------------------------------------
    def candidate_sets(self, batch: CandidateBatch) -> tuple[Tensor, Tensor, dict[str, CandidateSet]]:
        """The anchors' image and caption embeddings and each direction's candidate set."""
        n = len(batch)
        t2i, i2t = "t2i" in self.directions, "i2t" in self.directions
        images = self.embedder.encode_images(batch.images + (flat(batch.candidate_images) if t2i else []))
        texts = self.embedder.encode_texts(batch.texts + (flat(batch.candidate_texts) if i2t else []))
        pairs: list[tuple[str, str]] = []  # (image key, text): both directions' pairs, one scorer call
        masks = {}
        if t2i:
            masks["image_candidates"] = batch.mask(batch.candidate_images)
            for i in range(n):
                pairs += [
                    (key, batch.texts[i]) for key in [batch.image_keys[i], *batch.candidate_image_keys[i]]
                ]
        if i2t:
            masks["text_candidates"] = batch.mask(batch.candidate_texts)
            for i in range(n):
                pairs += [(batch.image_keys[i], text) for text in [batch.texts[i], *batch.candidate_texts[i]]]
        before = torch.tensor(self.reward.lookups, dtype=torch.float64)
        keys = [key for key, _ in pairs]
        scores = self.reward(keys, [text for _, text in pairs], keys)
        if self.training:
            self.epoch_lookups += torch.tensor(self.reward.lookups, dtype=torch.float64) - before
        sets, start = {}, 0
        for name, mask in masks.items():
            anchors, rest = (images, images[n:]) if name == "image_candidates" else (texts, texts[n:])
            rewards = torch.zeros(mask.shape)
            rewards[mask] = scores[start : start + int(mask.sum())]
            start += int(mask.sum())
            device = anchors.device
            sets[name] = CandidateSet(
                columns(anchors[:n], rest, mask.to(device)), rewards.to(device), mask.to(device)
            )
        return images[:n], texts[:n], sets

    def _step(self, batch: CandidateBatch, stage: str) -> Tensor:
        self.batch_ids = batch.ids
        images, texts, sets = self.candidate_sets(batch)
        out = self.loss_fn(images, texts, **sets)
        if stage == "train" and not torch.isfinite(out.loss):
            self.diverged(f"the loss is {out.loss.item()}")
        if stage == "val":
            self._collect_gap(images, texts, sets)
        metrics = {**{f"loss/{k}": v for k, v in out.terms.items()}, **out.metrics}
        options = {"sync_dist": True, "batch_size": len(batch), "on_step": stage == "train", "on_epoch": True}
        self.log(f"{stage}/loss", out.loss.detach(), prog_bar=True, **options)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, **options)
        return out.loss

    def training_step(self, batch: CandidateBatch, batch_idx: int):
        return self._step(batch, "train")

    def validation_step(self, batch: CandidateBatch, batch_idx: int):
        self._step(batch, "val")

    # ---- the reward model's device; the reward cache's lookups, per training epoch ---------------------
    def on_fit_start(self) -> None:
        self.embedder.model.train()  # HF enables gradient checkpointing only in train mode
        self.reward.scorer.model.to(self.device)

    def on_validation_start(self) -> None:
        self.reward.scorer.model.to(self.device)  # trainer.validate before fit (validate_before_training)

    def on_train_epoch_start(self) -> None:
        self.epoch_lookups.zero_()

    def on_train_epoch_end(self) -> None:
        hits, misses = self.trainer.strategy.reduce(self.epoch_lookups.to(self.device), reduce_op="sum")
        self.log("train/reward_cache/hits", hits.float(), on_epoch=True, sync_dist=True)
        self.log("train/reward_cache/misses", misses.float(), on_epoch=True, sync_dist=True)
        self.log("train/reward_cache/hit_rate", (hits / (hits + misses).clamp(min=1)).float(), on_epoch=True)

    # ---- the modality gap of each validation ------------------------------------------------------------
    def _collect_gap(self, images: Tensor, texts: Tensor, sets: dict[str, CandidateSet]) -> None:
        for name, candidates in sets.items():
            anchors = texts if name == "image_candidates" else images
            cosine = torch.einsum(
                "nd,ncd->nc", anchors.detach().float(), candidates.embeddings.detach().float()
            )
            for key, value in (
                ("cosine", cosine),
                ("reward", candidates.rewards),
                ("mask", candidates.mask.float()),
            ):
                self.gap_scores.setdefault(f"{name}/{key}", []).append(value.detach())

    def on_validation_epoch_start(self) -> None:
        self.gap_scores = {}

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        from mmpo.benchmarks.modality_gap import wasserstein_gaps

        if self.trainer.sanity_checking or not self.gap_scores:
            return
        gathered = {
            key: self.all_gather(torch.cat(parts)).reshape(-1, parts[0].shape[1]).cpu()
            for key, parts in self.gap_scores.items()
        }
        directions = sorted({key.split("/")[0] for key in gathered})
        mask = torch.cat([gathered[f"{d}/mask"].bool() for d in directions])  # [rows, k + 1]
        positive = torch.zeros_like(mask)
        positive[:, 0] = True  # the anchor's own pair
        retriever = (1 + torch.cat([gathered[f"{d}/cosine"] for d in directions])[mask]) / 2
        reward = torch.cat([gathered[f"{d}/reward"] for d in directions])[mask].float()
        self.gap = {RETRIEVER: (retriever, positive[mask]), REWARD: (reward, positive[mask])}
        gaps = wasserstein_gaps(retriever, positive[mask], reference=reward)
        gaps["reward_W_disc"] = wasserstein_gaps(reward, positive[mask])["W_disc"]
        # every rank computed the same numbers from the gathered scores
        self.log_dict({f"val/gap/{k}": v for k, v in gaps.items()}, sync_dist=True)
