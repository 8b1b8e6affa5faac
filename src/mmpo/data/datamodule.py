"""LightningDataModule: records on disk -> examples -> collated preference batches."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from mmpo.branches import CHOSEN_CORRUPTED, Branch
from mmpo.data import shapes
from mmpo.data.collator import Example, PreferenceCollator, load_image
from mmpo.data.records import ReadReport, Record, read_records
from mmpo.models.families import Family
from mmpo.negatives.base import NegativeSampler

log = logging.getLogger(__name__)


class PreferenceDataset(Dataset):
    """Records with their images loaded; ``epoch`` (set by the module) seeds the input randomness."""

    def __init__(self, records: Sequence[Record]):
        self.records = list(records)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example:
        record = self.records[index]
        return Example(
            record=record,
            images=[load_image(p) for p in record.images],
            negative_images=[load_image(p) for p in record.negative_images],
            epoch=self.epoch,
        )


def resolve_data_dir(cfg: DictConfig) -> Path:
    """``data.source: shapes`` generates the shapes world under ``data.path`` (once); ``files`` reads it."""
    if cfg.source == "shapes":
        return shapes.generate(
            cfg.path, num_scenes=cfg.shapes.num_scenes, seed=cfg.shapes.seed, image_size=cfg.shapes.image_size
        )
    return Path(cfg.path)


class PreferenceDataModule(L.LightningDataModule):
    def __init__(
        self,
        cfg: DictConfig,
        processor,
        family: Family,
        branches: Sequence[Branch],
        sampler: NegativeSampler | None = None,
        seed: int = 0,
        val_sampler: NegativeSampler | None = None,
    ):
        """``val_sampler`` corrupts the validation images (default: ``sampler``). One fixed validation
        sampler makes image reliance comparable across runs that train with different corruptions."""
        super().__init__()
        self.cfg = cfg
        self.processor = processor
        self.family = family
        self.branches = list(branches)
        self.sampler = sampler
        self.val_sampler = val_sampler or sampler
        self.seed = seed
        self.report = ReadReport()
        self.datasets: dict[str, PreferenceDataset] = {}
        self.collators: dict[str, PreferenceCollator] = {}

    def validation_branches(self) -> list[Branch]:
        """The loss's branches plus diagnostics: with a sampler configured, chosen@corrupted, so that every
        run (DPO included) reports the image-reliance metrics on held-out pairs."""
        extra = (
            [CHOSEN_CORRUPTED]
            if self.val_sampler is not None and CHOSEN_CORRUPTED not in self.branches
            else []
        )
        return self.branches + extra

    def prepare_data(self) -> None:
        """Generate the shapes world once per node (Lightning calls this on local rank 0, then a barrier)."""
        resolve_data_dir(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        directory = resolve_data_dir(self.cfg)
        needs_rejected = any(b.response == "rejected" for b in self.branches)
        for split, name in (("train", self.cfg.train_file), ("val", self.cfg.val_file)):
            records = read_records(directory / name, self.cfg.on_error, needs_rejected, self.report)
            limit = self.cfg.get(f"limit_{split}")
            self.datasets[split] = PreferenceDataset(records[:limit] if limit else records)
        train = self.datasets["train"].records
        common = dict(
            max_length=self.cfg.max_length,
            truncation=self.cfg.truncation,
            context_template=self.cfg.context_template,
            image_pool=sorted({r.images[0] for r in train if r.images}),
            context_pool=sorted({r.context for r in train if r.context}),
            seed=self.seed,
        )
        # data.image=none (the "DPO (No Image)" ablation) removes images from training rows only: validation
        # keeps them, so that every run is compared on the same held-out inputs.
        self.collators = {
            "train": PreferenceCollator(
                self.processor,
                self.family,
                self.branches,
                image=self.cfg.image,
                sampler=self.sampler,
                **common,
            ),
            "val": PreferenceCollator(
                self.processor, self.family, self.validation_branches(), sampler=self.val_sampler, **common
            ),
        }
        log.info("data: %d train / %d val records from %s", len(train), len(self.datasets["val"]), directory)

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets.values():
            dataset.epoch = epoch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=self.cfg.num_workers,
            collate_fn=self.collators[split],
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.cfg.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)

    def write_report(self, run_dir: Path, dropped: dict[str, int]) -> dict:
        """Records skipped while reading and rows dropped for length (counted by the module from the
        batches, so it works with dataloader workers), written to ``data_report.json``."""
        dropped = dict(dropped)
        report = {"read": self.report.read, "skipped": self.report.skipped, "dropped_for_length": dropped}
        (run_dir / "data_report.json").write_text(json.dumps(report, indent=2))
        if self.report.skipped or dropped:
            log.warning(
                "data: %d records skipped as invalid, dropped for length %s (see data_report.json)",
                len(self.report.skipped),
                dropped,
            )
        return report
