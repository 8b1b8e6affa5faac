"""A module kind defined outside ``src/`` (the seam MAPLE's embedding module uses): an embedding retriever
trained through the same ``train.py``, with its own module, data and objective.

Stub objective: symmetric InfoNCE between each record's image embedding and its chosen caption's
embedding (mean-pooled final hidden states of the VLM, :class:`mmpo.embedding.embedder.Embedder`),
``L = (CE(S / tau, I) + CE(S^T / tau, I)) / 2`` with ``S = z_img z_txt^T``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mmpo.data.datamodule import data_problems, resolve_data_dir
from mmpo.data.records import read_records
from mmpo.embedding.embedder import Embedder
from mmpo.images import load_image
from mmpo.losses import Loss, LossOutput, Requirements, build_loss
from mmpo.models.loading import load_model, model_problems
from mmpo.modules import TrainingModule


class StubContrastive(Loss):
    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    @property
    def requirements(self) -> Requirements:
        return Requirements((), reference=False, module="stub_embedding")

    def forward(self, images: torch.Tensor, texts: torch.Tensor, inputs=None) -> LossOutput:
        logits = images @ texts.T / self.temperature
        target = torch.arange(len(images), device=images.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        accuracy = (logits.argmax(-1) == target).float().mean()
        return LossOutput(loss, {"infonce": loss.detach()}, {"retrieval/accuracy": accuracy})


class CaptionPairs(L.LightningDataModule):
    """(image, chosen caption) pairs of the records under ``data.path``."""

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg = cfg
        self.splits: dict[str, list] = {}

    def setup(self, stage=None) -> None:
        directory = resolve_data_dir(self.cfg)
        for split, name in (("train", self.cfg.train_file), ("val", self.cfg.val_file)):
            records = [r for r in read_records(directory / name, require_rejected=0) if r.images]
            self.splits[split] = records[: self.cfg.get(f"limit_{split}") or None]

    def _loader(self, split: str) -> DataLoader:
        def collate(records):
            return [load_image(r.images[0]) for r in records], [r.chosen for r in records]

        return DataLoader(self.splits[split], batch_size=self.cfg.batch_size, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")


class StubEmbeddingModule(TrainingModule):
    kind = "stub_embedding"

    def __init__(self, embedder: Embedder, loss: Loss, optim):
        super().__init__(optim)
        self.embedder, self.loss_fn = embedder, loss

    @classmethod
    def problems(cls, cfg: DictConfig) -> list[str]:
        problems = model_problems(cfg.model) + data_problems(cfg.data)
        if build_loss(cfg.loss).requirements.module != cls.kind:
            problems.append(
                f"module=stub_embedding trains the stub contrastive loss, not {cfg.loss._target_}"
            )
        return problems

    @classmethod
    def build(cls, cfg: DictConfig):
        policy, processor, _ = load_model(cfg.model)
        return cls(Embedder(policy, processor), build_loss(cfg.loss), cfg.optim), CaptionPairs(cfg.data)

    def save(self, out: Path, datamodule) -> None:
        self.embedder.model.save_pretrained(out / "adapter")

    def _step(self, batch, stage: str):
        images, texts = batch
        out = self.loss_fn(self.embedder.encode_images(images), self.embedder.encode_texts(texts))
        self.log(f"{stage}/loss", out.loss, on_step=stage == "train", on_epoch=True, batch_size=len(texts))
        self.log_dict(
            {f"{stage}/{k}": v for k, v in out.metrics.items()}, on_epoch=True, batch_size=len(texts)
        )
        return out.loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
