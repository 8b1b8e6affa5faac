"""The canonical preference record and its JSONL reader.

One JSON object per line::

    {"id": "s0-00001-caption",              # unique string
     "images": ["images/s0-00001.png"],     # paths, relative to the JSONL file or absolute ([] = text only)
     "prompt": "Describe the image.",       # user text, without chat template or image placeholder
     "chosen": "A red circle ...",          # preferred response (the SFT target)
     "rejected": "A blue circle ...",       # dispreferred response, or a list of them, most preferred
                                            # first (rejected[j] branches); may be absent for SFT data
     "context": "Shared by ...",            # optional: context text (MCM-DPO)
     "negative_images": ["..."],            # optional: negative images (negative_sampler=listed)
     "meta": {...}}                         # optional: anything else, carried along

Bad records raise :class:`RecordError` naming the file, line, record id and field; with
``on_error="skip"`` they are skipped and counted instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ON_ERROR = ("raise", "skip")
"""``data.on_error``: stop at a bad record, or skip it and count it in the data report."""


class RecordError(ValueError):
    """A record that does not follow the schema."""


@dataclass
class Record:
    id: str
    images: list[str]
    prompt: str
    chosen: str
    rejected: list[str] = field(default_factory=list)
    """The dispreferred responses, most preferred first (one for pairwise data, none for SFT data)."""
    context: str | None = None
    negative_images: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReadReport:
    """How many records were read, and the error of each skipped one, for the run's data report."""

    read: int = 0
    skipped: list[str] = field(default_factory=list)


def _check_str(obj: dict, key: str, where: str, optional: bool = False) -> None:
    value = obj.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise RecordError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")


def parse_record(obj: Any, where: str, base_dir: Path, require_rejected: int) -> Record:
    """A :class:`Record` from one JSON object; ``require_rejected`` is how many rejected responses the
    run's branches read."""
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    _check_str(obj, "id", where)
    where = f"{where} (record id {obj['id']!r})"
    _check_str(obj, "prompt", where)
    _check_str(obj, "chosen", where)
    rejected = obj.get("rejected", [])
    rejected = [rejected] if isinstance(rejected, str) else rejected
    if not isinstance(rejected, list) or not all(isinstance(r, str) and r for r in rejected):
        raise RecordError(
            f"{where}: field 'rejected' must be a non-empty string or a list of them, got {obj.get('rejected')!r}"
        )
    if len(rejected) < require_rejected:
        found = "no field 'rejected'" if not rejected else f"field 'rejected' holds {len(rejected)}"
        raise RecordError(f"{where}: the loss needs {require_rejected} rejected response(s); {found}")
    _check_str(obj, "context", where, optional=True)
    paths = {}
    for key in ("images", "negative_images"):
        value = obj.get(key, [])
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise RecordError(f"{where}: field {key!r} must be a list of paths, got {value!r}")
        resolved = [str(p if Path(p).is_absolute() else base_dir / p) for p in value]
        missing = [p for p in resolved if not Path(p).is_file()]
        if missing:
            raise RecordError(f"{where}: field {key!r} names files that do not exist: {missing}")
        paths[key] = resolved
    return Record(
        id=obj["id"],
        images=paths["images"],
        prompt=obj["prompt"],
        chosen=obj["chosen"],
        rejected=rejected,
        context=obj.get("context"),
        negative_images=paths["negative_images"],
        meta=obj.get("meta", {}),
    )


def read_records(
    path: str | Path, on_error: str = "raise", require_rejected: int = 1, report: ReadReport | None = None
) -> list[Record]:
    """Read a JSONL file of records; ``on_error`` is ``raise`` or ``skip`` (counted in ``report``);
    ``require_rejected``: how many rejected responses a record must hold (0 for SFT data)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"data.on_error={on_error!r}; allowed: {list(ON_ERROR)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"data file {str(path)!r} does not exist (set data.path to a directory "
            "holding train.jsonl / val.jsonl in the record format of the README)"
        )
    report = report if report is not None else ReadReport()
    records, seen = [], set()
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RecordError(f"{where}: not valid JSON: {error}") from None
                record = parse_record(obj, where, path.parent, require_rejected)
                if record.id in seen:
                    raise RecordError(f"{where}: duplicate record id {record.id!r}")
            except RecordError as error:
                if on_error == "raise":
                    raise RecordError(str(error)) from None
                report.skipped.append(str(error))
                continue
            seen.add(record.id)
            records.append(record)
    report.read += len(records)
    return records
