"""Conversion runs: a public format -> canonical records, and canonical records -> TRL / ms-swift rows.

``convert`` reads the rows of the input, lets the format's module turn each into drafts, resolves their
images (:mod:`~mmpo.data.converters.images`), merges drafts that share an id (same prompt, chosen
response and images; their rejected responses are joined in row order) and writes ``train.jsonl`` (and
``val.jsonl`` with ``val_size``) or the same splits as ``datasets`` folders (``train/``, ``val/``), plus
``convert_report.json``. A bad row stops the run with its file, row number and field, or with
``on_error="skip"`` is skipped and listed in the report.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmpo.data.converters.base import BadRow, Draft, Options
from mmpo.data.converters.images import IMAGE_DIR, IMAGE_MODES, ImageStore
from mmpo.data.converters.registry import EXPORTS, FORMATS
from mmpo.data.converters.sources import open_source
from mmpo.data.converters.vlfeedback import PAIR_RULES
from mmpo.data.converters.writers import OUTPUTS, canonical_arrow_rows, write_arrow, write_jsonl
from mmpo.data.records import ReadReport, Record, read_records

ON_ERROR = ("raise", "skip")
REPORT = "convert_report.json"
MERGE_KEYS = ("images", "prompt", "chosen", "context", "negative_images")


class ConvertError(ValueError):
    """A bad row (with ``on_error="raise"``) or a bad argument; the message says which and where."""


@dataclass
class Report:
    command: dict[str, Any]
    rows_read: int = 0
    records: dict[str, int] = field(default_factory=dict)
    rows_without_records: int = 0
    rows_merged: int = 0
    negative_images_dropped: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, on_error: str, file: Path | str, row: int, error: BadRow, source_id: Any = None) -> None:
        message = f"{file}: row {row}: field {error.field!r}: {error.reason}"
        if on_error == "raise":
            raise ConvertError(message + " (--on-error skip skips such rows and lists them in the report)")
        self.skipped.append(
            {"file": str(file), "row": row, "id": source_id, "field": error.field, "reason": error.reason}
        )

    def write(self, out_dir: Path) -> None:
        (out_dir / REPORT).write_text(
            json.dumps({**asdict(self), "skipped_count": len(self.skipped)}, indent=2)
        )


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConvertError(f"{name} {value!r}; allowed: {list(allowed)}")


def _record(draft: Draft, store: ImageStore) -> dict[str, Any]:
    if draft.chosen in draft.rejected:
        raise BadRow("rejected", "equals the chosen response")
    record = {
        "id": draft.id,
        "images": [store.put(value, draft.image_field) for value in draft.images],
        "prompt": draft.prompt,
        "chosen": draft.chosen,
    }
    if draft.rejected:
        record["rejected"] = draft.rejected[0] if len(draft.rejected) == 1 else list(draft.rejected)
    if draft.context is not None:
        record["context"] = draft.context
    if draft.negative_images:
        record["negative_images"] = [
            store.put(value, draft.negative_field) for value in draft.negative_images
        ]
    record["meta"] = draft.meta
    return record


def _rejected(record: dict[str, Any]) -> list[str]:
    value = record.get("rejected")
    return [] if value is None else [value] if isinstance(value, str) else value


class Collected(dict):
    """Records by id, in first-seen order; a repeated id adds its rejected responses."""

    def add(self, records: list[dict[str, Any]], report: Report) -> None:
        for record in records:  # check them all before adding any: a row goes in whole or not at all
            seen = self.get(record["id"])
            if seen is not None and any(seen.get(k) != record.get(k) for k in MERGE_KEYS):
                raise BadRow(
                    "id", f"repeats id {record['id']!r} with another prompt, chosen response or images"
                )
        for record in records:
            seen = self.get(record["id"])
            if seen is None:
                self[record["id"]] = record
                continue
            joined = _rejected(seen) + [r for r in _rejected(record) if r not in _rejected(seen)]
            seen["rejected"] = joined[0] if len(joined) == 1 else joined
            report.rows_merged += 1


def _splits(records: list[dict], val_size: int, seed: int) -> dict[str, list[dict]]:
    if val_size == 0:
        return {"train": records}
    if not 0 < val_size < len(records):
        raise ConvertError(
            f"--val-size {val_size} must be between 0 and the {len(records)} records converted"
        )
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    return {"val": shuffled[:val_size], "train": shuffled[val_size:]}


def _write_records(splits: dict[str, list[dict]], out_dir: Path, to: str, embed: bool) -> None:
    for name, records in splits.items():
        if to == "jsonl":
            write_jsonl(records, out_dir / f"{name}.jsonl")
        else:
            rows, features = canonical_arrow_rows(records, out_dir, embed)
            write_arrow(rows, out_dir / name, features)
    if embed:
        shutil.rmtree(out_dir / IMAGE_DIR, ignore_errors=True)


def _check_output(images: str, to: str, on_error: str) -> None:
    _choice("--images", images, IMAGE_MODES)
    _choice("--to", to, OUTPUTS)
    _choice("--on-error", on_error, ON_ERROR)
    if images == "embed" and to != "arrow":
        raise ConvertError("--images embed puts the image bytes in the data set and needs --to arrow")


def convert(
    format: str,
    input: str | Path,
    output: str | Path,
    images: str = "copy",
    to: str = "jsonl",
    on_error: str = "raise",
    image_root: str | Path | None = None,
    pairs: str = "all",
    margin: float = 0.0,
    val_size: int = 0,
    seed: int = 0,
) -> Report:
    """Convert a local copy of a public preference set to canonical records under ``output``."""
    _choice("--format", format, FORMATS)
    _choice("--pairs", pairs, PAIR_RULES)
    _check_output(images, to, on_error)
    input, out_dir = Path(input), Path(output)
    source = open_source(input)
    root = Path(image_root) if image_root is not None else input if input.is_dir() else input.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ImageStore(images, out_dir, root.resolve())
    options = Options(pairs, margin)
    report = Report(command={"format": format, "input": str(input), "output": str(out_dir), "images": images,
                             "to": to, "on_error": on_error, "image_root": str(root), "pairs": pairs,
                             "margin": margin, "val_size": val_size, "seed": seed})  # fmt: skip
    collected = Collected()
    rows = tqdm(source.rows(), total=source.total, desc=f"convert {format}", unit="row", disable=None)
    for index, (file, number, row) in enumerate(rows):
        report.rows_read += 1
        source_id = row.get("id", row.get("idx")) if isinstance(row, dict) else None
        try:
            if isinstance(row, BadRow):
                raise row
            if not isinstance(row, dict):
                raise BadRow("(row)", f"must be an object, got {type(row).__name__}")
            records = [_record(draft, store) for draft in FORMATS[format].to_drafts(row, index, options)]
            report.rows_without_records += not records
            collected.add(records, report)
        except BadRow as error:
            report.skip(on_error, file, number, error, source_id)
    splits = _splits(list(collected.values()), val_size, seed)
    _write_records(splits, out_dir, to, images == "embed")
    report.records = {name: len(records) for name, records in splits.items()}
    report.write(out_dir)
    return report


def export_records(
    schema: str,
    records: list[Record],
    out_dir: Path,
    name: str,
    images: str,
    to: str,
    on_error: str,
    report: Report,
) -> None:
    """Write ``records`` as ``schema`` rows to ``out_dir/<name>.jsonl`` or the folder ``out_dir/<name>``."""
    module = EXPORTS[schema]
    store = ImageStore("copy" if images == "embed" else images, out_dir, out_dir)

    def put(paths: list[str], field_name: str) -> list[Any]:
        located = [store.put(p, field_name) for p in paths]
        if images == "embed":
            return [{"bytes": (out_dir / p).read_bytes(), "path": Path(p).name} for p in located]
        return located

    rows = []
    for number, record in enumerate(
        tqdm(records, desc=f"export {schema}", unit="record", disable=None), start=1
    ):
        try:
            pictures = put(record.images, "images")
            if schema == "trl":
                report.negative_images_dropped += bool(record.negative_images)
                new = module.export_rows(record, pictures)
            else:
                new = module.export_rows(record, pictures, put(record.negative_images, "negative_images"))
        except BadRow as error:
            report.skip(on_error, name, number, error, record.id)
            continue
        rows.extend(new)
    report.records[name] = len(rows)
    if to == "jsonl":
        write_jsonl(rows, out_dir / f"{name}.jsonl")
    else:
        keys = list(dict.fromkeys(key for row in rows for key in row))  # arrow: every row has every column
        arrow_rows = [
            {**{k: row.get(k) for k in keys}, "meta": json.dumps(row["meta"], ensure_ascii=False)}
            for row in rows
        ]
        columns = tuple(c for c in ("images", "rejected_images") if c in keys)
        write_arrow(lambda: iter(arrow_rows), out_dir / name, image_columns=columns)
    if images == "embed":
        shutil.rmtree(out_dir / IMAGE_DIR, ignore_errors=True)


def export(
    schema: str,
    input: str | Path,
    output: str | Path,
    images: str = "reference",
    to: str = "jsonl",
    on_error: str = "raise",
) -> Report:
    """Export a canonical JSONL file to TRL's or ms-swift's schema (see the ``trl`` / ``swift`` modules)."""
    _choice("--export", schema, EXPORTS)
    _check_output(images, to, on_error)
    input, out_dir = Path(input), Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(command={"export": schema, "input": str(input), "output": str(out_dir), "images": images,
                             "to": to, "on_error": on_error})  # fmt: skip
    read = ReadReport()
    records = read_records(input, on_error=on_error, require_rejected=0, report=read)
    report.rows_read = read.read + len(read.skipped)
    report.skipped += [{"file": str(input), "reason": reason} for reason in read.skipped]
    export_records(schema, records, out_dir, input.stem, images, to, on_error, report)
    report.write(out_dir)
    return report
