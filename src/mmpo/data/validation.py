"""Every record of a run checked once before training, with a progress bar, and the verdicts cached.

Per row of each split: the line decodes (UTF-8, JSON); the record follows the schema
(:func:`~mmpo.data.records.parse_record`, with the image markers of the model family's template); every
image and negative image decodes (:func:`mmpo.images.inspect_image`); and the split's collator builds the
rows of every branch whose inputs do not change with the epoch (processor, image-token counts,
``data.max_length`` under ``data.truncation``). Rows drawn anew each epoch keep these token counts
(negative samplers keep the image sizes) except a swapped context, which the collator still handles as it
is built. Then, in file order: a repeated id is refused after its first record, and a validation record
whose id a training record has is refused from validation.

A record is *kept*, *kept altered* (decoding or truncation changed it: :data:`~mmpo.images.IMAGE_CHANGES`,
``response_truncated``) or *refused* (a reason of :data:`REASONS`). With ``on_error="raise"`` the first
refused record stops the run with its message (file, line, record id, field); with ``skip`` every one is
counted and listed in the data report. A split with no record left is an error either way.

The verdicts are cached under ``<data dir>/.mmpo-cache/``, keyed by :data:`VERSION`, each split's
fingerprint (JSONL content; arrow folder files), the size and mtime of every image file, and what the
checks depend on (processor and template, collator settings, sampler, the rejected responses the loss
reads): a cache hit costs one read of the record files and a stat of every image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmpo.branches import Branch
from mmpo.data.collator import LENGTH_REASONS, ROW_REASONS, PreferenceCollator, TooLong
from mmpo.data.examples import PreferenceDataset
from mmpo.data.records import (
    IMAGE_PLACEHOLDERS,
    RECORD_REASONS,
    RecordError,
    RecordSource,
    parse_record,
    record_error,
)
from mmpo.images import IMAGE_CHANGES, IMAGE_REASONS, BadImage, inspect_image, is_embedded

log = logging.getLogger(__name__)

VERSION = 1
"""Bumped whenever the checks change, so that older cached verdicts are not reused."""
CACHE_DIR = ".mmpo-cache"
SPLIT_REASONS = {
    "id_in_train": "a validation record whose id a training record has (refused from validation)"
}
REASONS = {**RECORD_REASONS, **IMAGE_REASONS, **ROW_REASONS, **LENGTH_REASONS, **SPLIT_REASONS}
"""Every outcome of the checks: reason -> what it means (the README's table)."""
CHANGES = {**IMAGE_CHANGES, "response_truncated": LENGTH_REASONS["response_truncated"]}
SKIP_HINT = "data.on_error=skip skips such records and lists them in data_report.json"


@dataclass
class SplitInputs:
    """What the checks of one split read: its rows, the collator that builds them, the data set whose
    sampler draws the negatives, and how many rejected responses the loss reads."""

    name: str
    source: RecordSource
    collator: PreferenceCollator
    draws: PreferenceDataset
    require_rejected: int

    @property
    def branches(self) -> list[Branch]:
        """The branches whose rows are fixed before training (inputs independent of the epoch)."""
        return [b for b in self.collator.branches if not self.draws.epoch_dependent(b)]


@dataclass
class SplitVerdict:
    rows: int
    refused: list[dict[str, Any]] = field(default_factory=list)
    altered: list[dict[str, Any]] = field(default_factory=list)

    def kept_rows(self) -> np.ndarray:
        keep = np.ones(self.rows, dtype=bool)
        keep[[entry["row"] for entry in self.refused]] = False
        return np.flatnonzero(keep)


@dataclass
class Validation:
    """The verdicts of every split, and the digest of the image files they name."""

    splits: dict[str, SplitVerdict]
    images: str
    seconds: float = 0.0
    cached: bool = False

    def report(self) -> dict[str, Any]:
        """Counts per reason and the records, for ``data_report.json``."""

        def listing(key: str) -> dict[str, Any]:
            entries = [
                {"split": s, **{k: v for k, v in e.items() if k not in ("row", "dropped")}}
                for s, verdict in self.splits.items()
                for e in getattr(verdict, key)
            ]
            return {"count": len(entries), "by_reason": dict(Counter(e["reason"] for e in entries)),
                    "records": entries}  # fmt: skip

        return {
            "splits": {s: {"read": v.rows, "kept": len(v.kept_rows())} for s, v in self.splits.items()},
            "skipped": listing("refused"),
            "altered": listing("altered"),
        }


def image_markers(processor, family) -> tuple[str, ...]:
    """Strings record text must not hold: LLaVA-style ``<image>`` and the added tokens the family's chat
    template inserts for an image (``<|vision_start|><|image_pad|><|vision_end|>`` for Qwen2-VL)."""
    with_image = family.chat_prompt(processor, "", 1)
    without = family.chat_prompt(processor, "", 0)
    added = [t.content for t in processor.tokenizer.added_tokens_decoder.values()]
    inserted = [t for t in [processor.image_token, *added] if t in with_image and t not in without]
    return tuple(dict.fromkeys([*IMAGE_PLACEHOLDERS, *inserted]))


def images_digest(sources: Sequence[RecordSource]) -> str:
    """Size and mtime of every image file the rows name (embedded images are part of the source)."""
    digest = hashlib.blake2b(digest_size=16)
    for source in sources:
        for ref in source.image_paths():
            if is_embedded(ref):
                continue
            path = ref if os.path.isabs(ref) else os.path.join(source.base_dir, ref)
            try:
                stat = os.stat(path)
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()


def check_row(split: SplitInputs, row: int, markers: Sequence[str]) -> dict[str, Any]:
    """The verdict of one row: ``{"row", "id", "refused": entry or None, "dropped": whether the refusal
    is data.truncation's (never an error), "altered": [entries]}``."""
    source = split.source
    location = source.location(row)
    record_id, altered = None, []
    try:
        record = parse_record(source.raw(row), location, source.base_dir, split.require_rejected, markers)
        record_id = record.id
        images = []
        for key in ("images", "negative_images"):
            for j, ref in enumerate(getattr(record, key)):
                name = f"{key}[{j}]"
                try:
                    image, changes = inspect_image(ref)
                except BadImage as error:
                    raise record_error(location, record.id, name, error.reason, f"({ref}) {error}") from None
                altered += [
                    _entry(location, record.id, name, c, f"({ref}) {IMAGE_CHANGES[c]}") for c in changes
                ]
                if key == "images":
                    images.append(image)
        negatives = any(b.image == "negative" for b in split.branches)
        example = split.draws.example(record, epoch=0, images=images, draw=negatives)
        built = split.collator.rows(example, split.branches)
    except TooLong as too_long:
        text = f"does not fit data.max_length={split.collator.max_length}: {LENGTH_REASONS[too_long.reason]}"
        dropped = _entry(location, record_id, too_long.field, too_long.reason, text)
        return {"row": row, "id": record_id, "refused": dropped, "dropped": True, "altered": []}
    except RecordError as error:
        return {"row": row, "id": record_id, "refused": error.entry(), "dropped": False, "altered": []}
    for name, kept, total in built.truncated:
        text = f"cut from {total} to {kept} tokens to fit data.max_length={split.collator.max_length}"
        altered.append(_entry(location, record_id, name, "response_truncated", text))
    return {"row": row, "id": record_id, "refused": None, "dropped": False, "altered": altered}


def _entry(location: str, record_id: str | None, field_name: str | None, reason: str, text: str) -> dict:
    return record_error(location, record_id, field_name, reason, text).entry()


def _stops(entry: dict[str, Any], on_error: str) -> bool:
    """Whether a refused record stops the run: with data.on_error=raise, and an over-long row under
    data.truncation=raise always; a record data.truncation=delete drops never does."""
    return not entry.get("dropped") and (on_error == "raise" or entry["reason"] == "too_long")


class _Checks(Dataset):
    """The rows of a split as a data set of verdicts, so that dataloader workers check them in parallel."""

    def __init__(self, split: SplitInputs, markers: Sequence[str]):
        self.split, self.markers = split, markers

    def __len__(self) -> int:
        return len(self.split.source)

    def __getitem__(self, row: int) -> dict[str, Any]:
        return check_row(self.split, row, self.markers)


def _flat(items: list) -> list:
    return items


def _stop(entry: dict[str, Any]) -> RecordError:
    return RecordError(f"{entry['message']} ({SKIP_HINT})", entry["reason"])


def _check_split(
    split: SplitInputs, markers: Sequence[str], on_error: str, num_workers: int, train_ids: set[str]
) -> tuple[SplitVerdict, set[str]]:
    """The verdict of every row of ``split`` and the ids it keeps."""
    verdict = SplitVerdict(len(split.source))
    loader = DataLoader(_Checks(split, markers), batch_size=16, num_workers=num_workers, collate_fn=_flat)
    seen: set[str] = set()
    bar = tqdm(total=len(split.source), desc=f"data: checking {split.name}", unit="record", disable=None)
    with bar:
        for batch in loader:
            for result in batch:
                refused, record_id = result["refused"], result["id"]
                location = split.source.location(result["row"])
                if refused is None and record_id in seen:
                    text = f"duplicate record id {record_id!r} (an earlier record of the split has it)"
                    refused = _entry(location, record_id, "id", "duplicate_id", text)
                elif refused is None and record_id in train_ids:
                    text = (
                        f"a training record has the id {record_id!r}: validation would score a trained record"
                    )
                    refused = _entry(location, record_id, "id", "id_in_train", text)
                if refused is None:
                    seen.add(record_id)
                    verdict.altered += [{"row": result["row"], **e} for e in result["altered"]]
                    continue
                entry = {"row": result["row"], **refused, "dropped": result["dropped"]}
                if _stops(entry, on_error):
                    raise _stop(entry)
                verdict.refused.append(entry)
            bar.update(len(batch))
    return verdict, seen


def validate(
    splits: Sequence[SplitInputs],
    key_fields: dict[str, Any],
    on_error: str,
    markers: Sequence[str],
    num_workers: int = 0,
    cache_dir: Path | None = None,
) -> Validation:
    """Check every row of ``splits`` (the training split first), or reuse the cached verdicts; raise a
    :class:`RecordError` at the first refused record with ``on_error="raise"`` or when a split has no
    record left. ``key_fields``: what the checks depend on besides the files (processor, settings)."""
    start = time.time()
    images = images_digest([s.source for s in splits])
    key = {"version": VERSION, "markers": list(markers), "images": images, **key_fields,
           "sources": {s.name: s.source.fingerprint() for s in splits}}  # fmt: skip
    digest = hashlib.blake2b(
        json.dumps(key, sort_keys=True, default=str).encode(), digest_size=16
    ).hexdigest()
    cache = None if cache_dir is None else cache_dir / f"validation-{digest}.json"
    verdicts = _read_cache(cache)
    cached = verdicts is not None
    if verdicts is None:
        log.info("data: checking every record once (schema, images, lengths); the verdicts are cached")
        verdicts, train_ids = {}, set()
        for split in splits:
            verdicts[split.name], kept = _check_split(split, markers, on_error, num_workers, train_ids)
            train_ids = kept if split.name == "train" else train_ids
        _write_cache(cache, key, verdicts)
    for split in splits:
        verdict = verdicts[split.name]
        stops = [entry for entry in verdict.refused if _stops(entry, on_error)]
        if stops:
            raise _stop(stops[0])
        if not len(verdict.kept_rows()):
            reasons = dict(Counter(e["reason"] for e in verdict.refused))
            raise RecordError(
                f"data: the {split.name} split {split.source.path} holds no usable record ({verdict.rows} "
                f"read, {len(verdict.refused)} refused: {reasons or 'none'})",
                "empty_split",
            )
    return Validation(verdicts, images, time.time() - start, cached)


def _read_cache(path: Path | None) -> dict[str, SplitVerdict] | None:
    if path is None or not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
        return {name: SplitVerdict(**split) for name, split in content["splits"].items()}
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_cache(path: Path | None, key: dict, verdicts: dict[str, SplitVerdict]) -> None:
    if path is None:
        return
    content = {"key": key, "splits": {name: vars(verdict) for name, verdict in verdicts.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(content, default=str))
        temporary.replace(path)
    except OSError as error:
        log.warning(
            "data: cannot cache the record checks in %s (%s); they run again next time", path.parent, error
        )
