"""The data of an embedding run (MAPLE, methods.md §3.3): caption records with their candidate sets.

An **anchor** is a record with exactly one image and its caption (``chosen``), joined by record id with
the row of the candidate file of its split (``scripts/build_candidates.py``; format in
:mod:`mmpo.embedding.candidates`): ``k`` hard-negative images and ``k`` candidate texts. A batch holds
``data.batch_size`` anchors with their candidates (:class:`CandidateBatch`); the module embeds them, the
reward MLLM ranks them.

- The first ``k`` candidates of a row are used; a row with fewer is padded and its padding masked.
- A row must describe its record (the same image file and text), else the candidate file was built
  from other records: a :class:`~mmpo.data.records.RecordError` names the file, line and id (skipped
  and counted with ``data.on_error=skip``, as are rows naming missing files).
- Records without a row (e.g. the yes/no records of the shapes world, images dropped as
  near-duplicates) are not anchors; their number is logged and written to ``data_report.json``.
- The shapes world (``data.source=shapes``) builds its candidate files when absent, or when they were
  built for another world, ``k`` or ``seed`` (a ``<file>.manifest.json`` beside each says which): every
  scene's one-attribute variants (:func:`mmpo.embedding.candidates.build_from_shapes`). Other data
  needs the files at start-up (:func:`candidate_problems`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch
from filelock import FileLock
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from mmpo.data import shapes
from mmpo.data.datamodule import SPLITS, resolve_data_dir
from mmpo.data.records import ReadReport, Record, RecordError, read_records
from mmpo.data.sampling import ResumableTrainOrder
from mmpo.images import load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchor:
    """A record's image and caption with its candidate images and texts (paths absolute and resolved, so
    that one file has one cache key wherever it appears)."""

    id: str
    image: str
    text: str
    image_candidates: tuple[str, ...]
    text_candidates: tuple[str, ...]


@dataclass
class CandidateBatch:
    """Anchors with their candidates; ``k`` columns of candidates per anchor, the missing ones masked.

    Image paths key the reward cache (``image_keys``, ``candidate_image_keys``)."""

    ids: list[str]
    images: list[Image.Image]
    image_keys: list[str]
    texts: list[str]
    candidate_images: list[list[Image.Image]]
    candidate_image_keys: list[list[str]]
    candidate_texts: list[list[str]]
    k: int

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, candidates: Sequence[Sequence]) -> Tensor:
        """``[B, k + 1]``: column 0 (the anchor's own pair) and each present candidate."""
        present = torch.zeros(len(self), self.k + 1, dtype=torch.bool)
        present[:, 0] = True
        for row, found in enumerate(candidates):
            present[row, 1 : 1 + len(found)] = True
        return present


def collate(anchors: list[Anchor], k: int) -> CandidateBatch:
    return CandidateBatch(
        ids=[a.id for a in anchors],
        images=[load_image(a.image) for a in anchors],
        image_keys=[a.image for a in anchors],
        texts=[a.text for a in anchors],
        candidate_images=[[load_image(p) for p in a.image_candidates] for a in anchors],
        candidate_image_keys=[list(a.image_candidates) for a in anchors],
        candidate_texts=[list(a.text_candidates) for a in anchors],
        k=k,
    )


def _absolute(path: str, base: Path) -> str:
    return str((base / path).resolve())


def read_anchors(
    records: Sequence[Record], candidate_file: Path, k: int, on_error: str, report: ReadReport
) -> list[Anchor]:
    """The anchors of ``records`` that have a row in ``candidate_file`` (module docstring), in record order."""
    by_id = {r.id: r for r in records if len(r.images) == 1}
    found: dict[str, Anchor] = {}
    with open(candidate_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{candidate_file}:{number}"
            try:
                anchor = _anchor(json.loads(line), by_id, candidate_file.parent, k, where)
            except (RecordError, KeyError, TypeError, json.JSONDecodeError) as error:
                message = (
                    str(error)
                    if isinstance(error, RecordError)
                    else f"{where}: bad candidate row ({error!r})"
                )
                if on_error == "raise":
                    raise RecordError(message) from None
                report.skipped.append(message)
                continue
            if anchor is not None:
                found[anchor.id] = anchor
    return [found[r.id] for r in records if r.id in found]


def _anchor(row: dict, records: dict[str, Record], base: Path, k: int, where: str) -> Anchor | None:
    record = records.get(row["id"])
    if record is None:
        return None  # a row of a record this split does not hold (another split, a limit)
    image = _absolute(row["image"], base)
    if image != str(Path(record.images[0]).resolve()) or row["text"] != record.chosen:
        raise RecordError(
            f"{where}: candidate row {row['id']!r} describes {row['image']!r} / {row['text']!r}, but the "
            f"record holds {record.images[0]!r} / {record.chosen!r}: the candidate file was built from other "
            "records; build it again (scripts/build_candidates.py)"
        )
    images = [_absolute(p, base) for p in row["image_candidates"][:k]]
    if missing := [p for p in images if not Path(p).is_file()]:
        raise RecordError(
            f"{where}: candidate row {row['id']!r} names image files that do not exist: {missing}"
        )
    return Anchor(record.id, image, record.chosen, tuple(images), tuple(row["text_candidates"][:k]))


def shapes_candidates(
    world: Path, split: str, out_file: Path, world_cfg: DictConfig, k: int, seed: int
) -> None:
    """Build ``out_file`` for a split of the shapes world unless its manifest says it is this one's."""
    from mmpo.benchmarks.shapes import ShapesWorld
    from mmpo.embedding.candidates import build_from_shapes, write_rows

    manifest = {"world": shapes.fingerprint(world), "split": split, "k": k, "seed": seed}
    manifest_file = out_file.with_name(out_file.name + ".manifest.json")

    def built() -> bool:
        return manifest_file.is_file() and json.loads(manifest_file.read_text()) == manifest

    if built():
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_file) + ".lock"):
        if built():
            return
        held = ShapesWorld(world, world_cfg.num_scenes, world_cfg.seed, world_cfg.image_size).scenes(split)
        rows = build_from_shapes(
            [(h.scene, h.image) for h in held], out_file.parent, k, seed, world_cfg.image_size
        )
        write_rows(rows, out_file)
        manifest_file.write_text(json.dumps(manifest))
        log.info("data: built %d shapes candidate sets of %s into %s", len(rows), split, out_file)


def candidate_file(data: DictConfig, candidates: DictConfig, split: str) -> Path:
    """``module.candidates.<split>``, by default ``<data.path>/candidates_<split>.jsonl``."""
    return Path(candidates[split] or Path(data.path) / f"candidates_{split}.jsonl")


def candidate_problems(data: DictConfig, candidates: DictConfig) -> list[str]:
    """Start-up problems of ``module.candidates`` for the ``data`` node."""
    problems = []
    if not isinstance(candidates.k, int) or isinstance(candidates.k, bool) or candidates.k < 1:
        problems.append(
            f"module.candidates.k={candidates.k!r}: give a positive number of candidates per anchor"
        )
    if data.source != "shapes":  # the shapes world builds its own
        for split in SPLITS:
            if not (path := candidate_file(data, candidates, split)).is_file():
                problems.append(
                    f"module.candidates.{split}: {str(path)!r} does not exist; build it from the {split} "
                    f"records: python scripts/build_candidates.py data --records "
                    f"{Path(data.path) / data[f'{split}_file']} --kind caption --vision-model <local DINOv2 dir> "
                    f"--out {path}"
                )
    return problems


class CandidateDataModule(ResumableTrainOrder, L.LightningDataModule):
    """Batches of anchors with their candidates for each split (module docstring).

    Args:
        cfg: the ``data`` node (records, batch size, limits, ``on_error``).
        candidates: ``module.candidates``: the candidate file of each split (:func:`candidate_file`),
            ``k``, and ``seed`` (the shapes world's choice among a scene's variants).
        seed: the run's seed: the anchors' order of each epoch, sharded over ranks and resumable
            mid-epoch (:class:`~mmpo.data.sampling.EpochSampler`).
    """

    def __init__(self, cfg: DictConfig, candidates: DictConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.candidates = candidates
        self.seed = seed
        self.report = ReadReport()
        self.without_candidates: dict[str, int] = {}
        self.datasets: dict[str, list[Anchor]] = {}

    def prepare_data(self) -> None:
        """The shapes world and its candidate files, once per node (Lightning: local rank 0, then a barrier)."""
        directory = resolve_data_dir(self.cfg)
        if self.cfg.source == "shapes":
            for split in SPLITS:
                shapes_candidates(
                    directory,
                    split,
                    candidate_file(self.cfg, self.candidates, split),
                    self.cfg.shapes,
                    self.candidates.k,
                    self.candidates.seed,
                )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        directory = resolve_data_dir(self.cfg)
        for split in SPLITS:
            records = read_records(directory / self.cfg[f"{split}_file"], self.cfg.on_error, 0, self.report)
            path = candidate_file(self.cfg, self.candidates, split)
            anchors = read_anchors(records, path, self.candidates.k, self.cfg.on_error, self.report)
            if not anchors:
                raise RecordError(
                    f"no record of {directory / self.cfg[f'{split}_file']} has a row in the candidate file "
                    f"{str(path)!r} (module.candidates.{split}): it was built from other records"
                )
            self.without_candidates[split] = len(records) - len(anchors)
            limit = self.cfg.get(f"limit_{split}")
            self.datasets[split] = anchors[:limit] if limit else anchors
        log.info(
            "data: %s anchors with up to %d candidates each (%s records without candidates)",
            " / ".join(f"{len(self.datasets[s])} {s}" for s in SPLITS),
            self.candidates.k,
            " / ".join(f"{self.without_candidates[s]} {s}" for s in SPLITS),
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.cfg.batch_size,
            sampler=self.sampler_of(split, shuffle),
            num_workers=self.cfg.num_workers,
            collate_fn=partial(collate, k=self.candidates.k),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.cfg.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # images and texts: the embedder and the scorer process them on their device

    def write_report(self, run_dir: Path) -> dict:
        """Records read, skipped as invalid, and left out for lack of candidates: ``data_report.json``."""
        report = {
            "read": self.report.read,
            "skipped": self.report.skipped,
            "without_candidates": self.without_candidates,
        }
        (run_dir / "data_report.json").write_text(json.dumps(report, indent=2))
        if self.report.skipped:
            log.warning(
                "data: %d records or candidate rows skipped as invalid (see data_report.json)",
                len(self.report.skipped),
            )
        return report
