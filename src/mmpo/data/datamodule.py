"""LightningDataModule: records on disk -> checked once -> examples (draws made) -> collated preference batches.

``data.format`` says how the records lie under ``data.path``: JSONL files (``train.jsonl``, ``val.jsonl``)
or HF ``datasets`` folders (``train/``, ``val/``: the names of ``data.train_file`` / ``data.val_file``
without ``.jsonl``), both read a record at a time. Before training every record is checked once
(:mod:`mmpo.data.validation`); the data sets then hold only the rows that passed, parsed and decoded on
access in the dataloader workers (``data.num_workers``, persistent across epochs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mmpo.branches import Branch, negatives_needed, rejected_needed
from mmpo.data import shapes
from mmpo.data.collator import IMAGE_MODES, TRUNCATION_MODES, PreferenceCollator
from mmpo.data.examples import CONTEXT_SWAPS, PreferenceDataset
from mmpo.data.records import ON_ERROR, JsonlRecords, Records, RecordSource
from mmpo.data.rows import PreferenceBatch
from mmpo.data.sampling import ResumableTrainOrder
from mmpo.data.validation import CACHE_DIR, SplitInputs, Validation, image_markers, validate
from mmpo.models.families import Family
from mmpo.negatives.base import NegativeSampler

log = logging.getLogger(__name__)

SOURCES = ("shapes", "files")
"""``data.source``: the generated shapes world (under ``data.path``) or JSONL records under ``data.path``."""
FORMATS = ("jsonl", "arrow")
"""``data.format``: JSONL files, or HF ``datasets`` folders (``save_to_disk``, memory-mapped)."""
SPLITS = ("train", "val")


def split_path(cfg: DictConfig, split: str, directory: Path | None = None) -> Path:
    """Where the records of ``split`` lie: ``<data.path>/train.jsonl``, or the folder ``<data.path>/train``
    with ``data.format=arrow``."""
    name = cfg.train_file if split == "train" else cfg.val_file
    directory = Path(cfg.path) if directory is None else directory
    return directory / (name if cfg.format == "jsonl" else name.removesuffix(".jsonl"))


def open_source(cfg: DictConfig, split: str, directory: Path) -> RecordSource:
    path = split_path(cfg, split, directory)
    if cfg.format == "arrow":
        from mmpo.data.arrow import ArrowRecords

        return ArrowRecords(path)
    return JsonlRecords(path)


def data_problems(cfg: DictConfig) -> list[str]:
    """Start-up problems of a ``data`` config node."""
    problems = [
        f"data.{key}={cfg[key]!r}; allowed: {list(allowed)}"
        for key, allowed in (
            ("source", SOURCES),
            ("format", FORMATS),
            ("truncation", TRUNCATION_MODES),
            ("on_error", ON_ERROR),
            ("image", IMAGE_MODES),
            ("context_swap", CONTEXT_SWAPS),
        )
        if cfg[key] not in allowed
    ]
    if cfg.token_budget is not None and cfg.token_budget < 1:
        problems.append(
            f"data.token_budget={cfg.token_budget}; allowed: a positive number of tokens, or null"
        )
    if problems or cfg.source != "files":
        if cfg.source == "shapes" and cfg.format != "jsonl":
            problems.append(
                f"data.format={cfg.format!r}: the shapes world is written as JSONL (data.format=jsonl)"
            )
        return problems
    for split in SPLITS:
        path = split_path(cfg, split)
        found = path.is_file() if cfg.format == "jsonl" else (path / "dataset_info.json").is_file()
        if not found:
            what = "JSONL records (README, 'Record format')" if cfg.format == "jsonl" else "a datasets folder"
            problems.append(
                f"data.path={cfg.path!r} has no {path.name}{'' if cfg.format == 'jsonl' else '/'} ({split} split); "
                f"data.format={cfg.format} reads {what} from there (scripts/convert.py --val-size N holds out "
                "a validation split)"
            )
    return problems


def resolve_data_dir(cfg: DictConfig) -> Path:
    """``data.source: shapes`` generates the shapes world under ``data.path`` (once); ``files`` reads it."""
    if cfg.source == "shapes":
        return shapes.generate(
            cfg.path, num_scenes=cfg.shapes.num_scenes, seed=cfg.shapes.seed, image_size=cfg.shapes.image_size
        )
    return Path(cfg.path)


class PreferenceDataModule(ResumableTrainOrder, L.LightningDataModule):
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
        self.datasets: dict[str, PreferenceDataset] = {}
        self.collators: dict[str, PreferenceCollator] = {}
        self.sources: dict[str, RecordSource] = {}
        self.validation: Validation | None = None
        self.notes: dict[str, set[str]] = {}
        """Record ids of the length outcomes of training batches (rows drawn anew each epoch)."""

    def prepare_data(self) -> None:
        """Generate the shapes world and check the records once per node (Lightning calls this on local
        rank 0, then a barrier; the other ranks find the verdicts in the cache)."""
        resolve_data_dir(self.cfg)
        self.check()

    @property
    def directory(self) -> Path:
        return resolve_data_dir(self.cfg)

    def check(self) -> Validation:
        """Open each split, build its collator and check every record (:func:`mmpo.data.validation.validate`)."""
        if self.validation is not None:
            return self.validation
        directory = self.directory
        inputs = []
        for split in SPLITS:
            branches = self.branches[split]
            self.sources[split] = open_source(self.cfg, split, directory)
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
                token_budget=self.cfg.token_budget,
            )
            draws = PreferenceDataset([], self.samplers[split], negatives_needed(branches), seed=self.seed)
            inputs.append(
                SplitInputs(
                    split, self.sources[split], self.collators[split], draws, rejected_needed(branches)
                )
            )
        key = {
            "processor": self._processor_digest(),
            "family": self.family.name,
            **{f"rows.{i.name}": i.collator.fingerprint_fields() for i in inputs},
            **{f"draws.{i.name}": i.draws.fingerprint_fields() for i in inputs},
            **{f"rejected.{i.name}": i.require_rejected for i in inputs},
        }
        markers = image_markers(self.processor, self.family)
        cache = directory / CACHE_DIR
        self.validation = validate(inputs, key, self.cfg.on_error, markers, self.cfg.num_workers, cache)
        self._log_validation(self.validation)
        return self.validation

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        validation = self.check()
        for split in SPLITS:
            branches = self.branches[split]
            rows = validation.splits[split].kept_rows()
            limit = self.cfg.get(f"limit_{split}")
            self.datasets[split] = PreferenceDataset(
                Records(self.sources[split], rows[:limit] if limit else rows),
                self.samplers[split],
                negatives_needed(branches),
                swap_context=any(b.context == "swapped" for b in branches),
                seed=self.seed,
                context_swap=self.cfg.context_swap,
            )
        sizes = " / ".join(f"{len(self.datasets[s])} {s}" for s in SPLITS)
        log.info("data: %s records from %s (%s)", sizes, self.directory, self.cfg.format)

    @staticmethod
    def _log_validation(validation: Validation) -> None:
        report = validation.report()
        how = "verdicts from the cache" if validation.cached else f"checked in {validation.seconds:.1f}s"
        counts = [
            f"{report[key]['count']} records {what} {report[key]['by_reason']}"
            for key, what in (("skipped", "skipped"), ("altered", "kept altered"))
            if report[key]["count"]
        ]
        if counts:
            log.warning("data: %s (%s; ids in data_report.json)", ", ".join(counts), how)
        else:
            log.info("data: every record passed the checks (%s)", how)

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets.values():
            dataset.epoch = epoch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.cfg.batch_size,
            sampler=self.sampler_of(split, shuffle),
            num_workers=self.cfg.num_workers,
            collate_fn=self.collators[split],
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.cfg.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        for reason, ids in batch.notes.items():
            self.notes.setdefault(reason, set()).update(ids)
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
        for start in range(0, len(indices), self.cfg.batch_size):
            examples = [
                dataset.example(dataset.records[i], epoch)
                for i in indices[start : start + self.cfg.batch_size]
            ]
            yield [e.record.id for e in examples], collator(examples)

    def fingerprint_fields(self) -> dict[str, Any]:
        """What determines the inputs of every row: the record files (by content; an arrow folder by its
        files) and images (by path, size and mtime: hashing every image would take minutes on large sets),
        the processor and chat template, each split's draws and row settings."""
        validation = self.check()
        return {
            "data": {
                "files": {s: self.sources[s].fingerprint() for s in SPLITS},
                "images": validation.images,
                "summary": ", ".join(
                    f"{self.sources[s].path.name} ({len(self.datasets[s])} records)" for s in SPLITS
                ),
            },
            "processor": {"digest": self._processor_digest(), "summary": type(self.processor).__name__},
            **{f"inputs.{s}": self.datasets[s].fingerprint_fields() for s in SPLITS},
            **{f"rows.{s}": self.collators[s].fingerprint_fields() for s in SPLITS},
        }

    def _processor_digest(self) -> str:
        tokenizer = self.processor.tokenizer
        tokenizer_state = (
            tokenizer.backend_tokenizer.to_str()
            if hasattr(tokenizer, "backend_tokenizer")
            else json.dumps(tokenizer.get_vocab(), sort_keys=True)
        )
        return _digest(self.processor.to_json_string() + tokenizer_state + str(self.processor.chat_template))

    def write_report(self, run_dir: Path, dropped: dict[str, int]) -> dict:
        """``data_report.json``: the records read per split, those skipped before training (counts per
        reason, each with file, line, id, field and message), those kept altered, and the rows dropped
        for length during training (counted by the module from the batches, so it works with dataloader
        workers; their ids from the batches' notes)."""
        validation = self.check()
        report = {
            "read": sum(v.rows for v in validation.splits.values()),
            **validation.report(),
            "dropped_for_length": dict(dropped),
            "during_training": {reason: sorted(ids) for reason, ids in self.notes.items()},
        }
        (run_dir / "data_report.json").write_text(json.dumps(report, indent=2))
        if report["skipped"]["count"] or dropped or self.notes:
            log.warning(
                "data: %d records skipped before training %s, dropped for length during training %s "
                "(see data_report.json)",
                report["skipped"]["count"], report["skipped"]["by_reason"], dict(dropped),
            )  # fmt: skip
        return report


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
