"""LightningDataModule: records on disk -> examples (draws made) -> collated preference batches."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mmpo.branches import Branch, negatives_needed, rejected_needed
from mmpo.data import shapes
from mmpo.data.collator import IMAGE_MODES, TRUNCATION_MODES, PreferenceCollator
from mmpo.data.examples import PreferenceDataset
from mmpo.data.records import ON_ERROR, ReadReport, read_records
from mmpo.data.rows import PreferenceBatch
from mmpo.data.sampling import EpochSampler
from mmpo.models.families import Family
from mmpo.negatives.base import NegativeSampler

log = logging.getLogger(__name__)

SOURCES = ("shapes", "files")
"""``data.source``: the generated shapes world (under ``data.path``) or JSONL records under ``data.path``."""
SPLITS = ("train", "val")


def data_problems(cfg: DictConfig) -> list[str]:
    """Start-up problems of a ``data`` config node."""
    problems = [
        f"data.{key}={cfg[key]!r}; allowed: {list(allowed)}"
        for key, allowed in (
            ("source", SOURCES),
            ("truncation", TRUNCATION_MODES),
            ("on_error", ON_ERROR),
            ("image", IMAGE_MODES),
        )
        if cfg[key] not in allowed
    ]
    if cfg.source == "files" and not (Path(cfg.path) / cfg.train_file).is_file():
        problems.append(
            f"data.path={cfg.path!r} has no {cfg.train_file}; data.source=files reads "
            "JSONL records (README, 'Record format') from there"
        )
    return problems


def resolve_data_dir(cfg: DictConfig) -> Path:
    """``data.source: shapes`` generates the shapes world under ``data.path`` (once); ``files`` reads it."""
    if cfg.source == "shapes":
        return shapes.generate(
            cfg.path, num_scenes=cfg.shapes.num_scenes, seed=cfg.shapes.seed, image_size=cfg.shapes.image_size
        )
    return Path(cfg.path)


class PreferenceDataModule(L.LightningDataModule):
    """The data of a preference run: the rows of ``branches[split]`` for every record of each split.

    ``samplers[split]`` draws the negatives of that split's records (validation may fix another one so
    that runs which train with different corruptions compare image reliance on the same held-out inputs).
    The reference precompute stage reads the data through :meth:`record_ids`, :meth:`branches_of`,
    :meth:`batches`, :meth:`epoch_dependent` and :meth:`fingerprint_fields`.
    """

    def __init__(
        self,
        cfg: DictConfig,
        processor,
        family: Family,
        branches: dict[str, Sequence[Branch]],
        samplers: dict[str, NegativeSampler | None] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.cfg = cfg
        self.processor = processor
        self.family = family
        self.branches = {split: list(branches[split]) for split in SPLITS}
        self.samplers = {split: (samplers or {}).get(split) for split in SPLITS}
        self.seed = seed
        self.report = ReadReport()
        self.datasets: dict[str, PreferenceDataset] = {}
        self.collators: dict[str, PreferenceCollator] = {}
        self._resume: tuple[int, int] | None = None

    def prepare_data(self) -> None:
        """Generate the shapes world once per node (Lightning calls this on local rank 0, then a barrier)."""
        resolve_data_dir(self.cfg)

    @property
    def directory(self) -> Path:
        return resolve_data_dir(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        directory = self.directory
        for split, name in (("train", self.cfg.train_file), ("val", self.cfg.val_file)):
            branches = self.branches[split]
            records = read_records(
                directory / name, self.cfg.on_error, rejected_needed(branches), self.report
            )
            limit = self.cfg.get(f"limit_{split}")
            self.datasets[split] = PreferenceDataset(
                records[:limit] if limit else records,
                self.samplers[split],
                negatives_needed(branches),
                swap_context=any(b.context == "swapped" for b in branches),
                seed=self.seed,
            )
            # data.image=none (the "DPO (No Image)" ablation) removes images from training rows only:
            # validation keeps them, so that every run is compared on the same held-out inputs.
            self.collators[split] = PreferenceCollator(
                self.processor,
                self.family,
                branches,
                max_length=self.cfg.max_length,
                truncation=self.cfg.truncation,
                image=self.cfg.image if split == "train" else "original",
                context_template=self.cfg.context_template,
            )
        sizes = " / ".join(f"{len(self.datasets[s])} {s}" for s in SPLITS)
        log.info("data: %s records from %s", sizes, directory)

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets.values():
            dataset.epoch = epoch

    def resume_at(self, epoch: int, batches: int) -> None:
        """Continue training after the first ``batches`` batches of ``epoch`` (a checkpoint saved mid-epoch;
        a checkpoint of a finished epoch starts the next one from its first batch, as Lightning does)."""
        self._resume = (epoch, batches)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = EpochSampler(len(self.datasets[split]), shuffle, self.seed)
        if split == "train" and self._resume is not None:
            epoch, batches = self._resume
            if batches * self.cfg.batch_size < len(sampler):
                sampler.resume_at(epoch, batches * self.cfg.batch_size)
        return DataLoader(
            self.datasets[split],
            batch_size=self.cfg.batch_size,
            sampler=sampler,
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

    # ---- what the reference precompute stage reads ---------------------------------------------------
    def record_ids(self, split: str) -> list[str]:
        return [r.id for r in self.datasets[split].records]

    def branches_of(self, split: str) -> list[Branch]:
        return self.branches[split]

    def epoch_dependent(self, split: str, branch: Branch) -> bool:
        return self.datasets[split].epoch_dependent(branch)

    def batches(
        self, split: str, indices: Sequence[int], epoch: int
    ) -> Iterator[tuple[list[str], PreferenceBatch]]:
        """The records ``indices`` of ``split`` as drawn in ``epoch``, in batches of ``data.batch_size``:
        ``(ids asked for, batch)`` (the batch lacks the records the collator dropped for length)."""
        dataset, collator = self.datasets[split], self.collators[split]
        saved, dataset.epoch = dataset.epoch, epoch
        try:
            for start in range(0, len(indices), self.cfg.batch_size):
                examples = [dataset[i] for i in indices[start : start + self.cfg.batch_size]]
                yield [e.record.id for e in examples], collator(examples)
        finally:
            dataset.epoch = saved

    def fingerprint_fields(self) -> dict[str, Any]:
        """What determines the inputs of every row: the record files (by content) and images (by path,
        size and mtime: hashing every image would take minutes on large sets), the processor and chat
        template, each split's draws and row settings."""
        directory = self.directory
        files = [directory / self.cfg.train_file, directory / self.cfg.val_file]
        images = sorted(
            {p for d in self.datasets.values() for r in d.records for p in (*r.images, *r.negative_images)}
        )
        tokenizer = self.processor.tokenizer
        tokenizer_state = (
            tokenizer.backend_tokenizer.to_str()
            if hasattr(tokenizer, "backend_tokenizer")
            else json.dumps(tokenizer.get_vocab(), sort_keys=True)
        )
        return {
            "data": {
                "files": {p.name: hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest() for p in files},
                "images": _digest(
                    "".join(f"{p}|{os.stat(p).st_size}|{os.stat(p).st_mtime_ns}" for p in images)
                ),
                "summary": f"{', '.join(p.name for p in files)} + {len(images)} images",
            },
            "processor": {
                "digest": _digest(
                    self.processor.to_json_string() + tokenizer_state + str(self.processor.chat_template)
                ),
                "summary": type(self.processor).__name__,
            },
            **{f"inputs.{s}": self.datasets[s].fingerprint_fields() for s in SPLITS},
            **{f"rows.{s}": self.collators[s].fingerprint_fields() for s in SPLITS},
        }

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


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
