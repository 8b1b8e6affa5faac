"""The canonical preference record, its schema checks and its JSONL reader.

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

The same records may come as an HF ``datasets`` folder (:mod:`mmpo.data.arrow`). A bad record raises a
:class:`RecordError` that names the file, line, record id, field and one of :data:`RECORD_REASONS`; with
``on_error="skip"`` it is skipped and counted instead. :class:`JsonlRecords` reads a line only when it is
asked for (by byte offset), so a split never has to fit in memory; :class:`Records` is the split as the
data set sees it: the rows that passed the checks, parsed on access.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmpo.images import is_embedded

ON_ERROR = ("raise", "skip")
"""``data.on_error``: stop at a bad record, or skip it and count it in the data report."""
FIELDS = ("id", "images", "prompt", "chosen", "rejected", "context", "negative_images", "meta")
"""The keys of a record; anything else belongs under ``meta``."""
TEXT_FIELDS = ("prompt", "context", "chosen", "rejected")
IMAGE_PLACEHOLDERS = ("<image>",)
"""Image placeholders of LLaVA-style data; mmpo inserts one per image itself, so record text never holds one
(the data module adds the tokens its model family's template inserts)."""
RECORD_REASONS = {
    "not_utf8": "the line is not UTF-8 text",
    "not_json": "the line is not one JSON object",
    "unknown_field": "a key outside the record schema (a typo?)",
    "invalid_field": "a field is missing or of the wrong type",
    "blank_text": "a prompt, response or context that is empty or only whitespace",
    "rejected_equals_chosen": "a rejected response equal to the chosen one",
    "too_few_rejected": "fewer rejected responses than the loss reads",
    "image_placeholder": "record text holding an image placeholder or image token",
    "missing_image": "an image file that does not exist",
    "duplicate_id": "an id an earlier record of the split has",
}
"""Why a record is refused by its schema: reason -> what it means."""


class RecordError(ValueError):
    """A record that does not follow the schema, or cannot be used: the message names the file and line
    (``location``), the record id, the field and the ``reason``."""

    _WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\n.*?(?:\w+\.)*RecordError: ", re.S)

    def __init__(
        self,
        message: str,
        reason: str = "invalid_field",
        location: str | None = None,
        record_id: str | None = None,
        field: str | None = None,
    ) -> None:
        # re-raised from a DataLoader worker, the message carries the worker's traceback: keep ours only
        super().__init__(self._WORKER.sub("", message).strip())
        self.reason, self.location, self.record_id, self.field = reason, location, record_id, field

    def entry(self) -> dict[str, Any]:
        """The error as a row of the data report."""
        return {"location": self.location, "id": self.record_id, "field": self.field,
                "reason": self.reason, "message": str(self)}  # fmt: skip


def record_error(
    location: str, record_id: Any, field_name: str | None, reason: str, text: str
) -> RecordError:
    """A :class:`RecordError` whose message reads ``<file>:<line> (record id 'x'): field 'f' <text>``
    (``record 'x': ...`` for a record of no file)."""
    if record_id is None:
        where = location
    else:
        where = f"{location} (record id {record_id!r})" if location else f"record {record_id!r}"
    message = f"{where}: field {field_name!r} {text}" if field_name else f"{where}: {text}"
    shown_id = None if record_id is None else str(record_id)
    return RecordError(message, reason, location, shown_id, field_name)


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
    location: str = field(default="", compare=False)
    """``<file>:<line>`` (or ``<folder>: row <n>``) the record was read from, for error messages."""


def rejected_field(j: int, count: int) -> str:
    """The name of the ``j``-th rejected response in messages: ``rejected``, or ``rejected[j]`` in a list."""
    return "rejected" if count <= 1 else f"rejected[{j}]"


def decode_line(data: bytes, location: str) -> Any:
    """The JSON value of one line of a JSONL file (a UTF-8 byte-order mark is allowed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1].hex()
        raise record_error(
            location, None, None, "not_utf8", f"not UTF-8 text (byte 0x{bad} at column {error.start + 1})"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise record_error(location, None, None, "not_json", f"not valid JSON: {error}") from None


def _text(obj: dict, key: str, where: str, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise record_error(
            where, obj.get("id"), key, "invalid_field", f"must be a non-empty string, got {value!r}"
        )
    if not value.strip():
        raise record_error(where, obj.get("id"), key, "blank_text", "holds only whitespace")
    return value


def _unknown_keys(obj: dict, where: str) -> None:
    for key in obj:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise record_error(
                where, obj.get("id"), key, "unknown_field",
                f"is not a record field{hint}; fields: {list(FIELDS)}; put anything else under 'meta'",
            )  # fmt: skip


def _markers(record: Record, markers: Sequence[str], where: str) -> None:
    texts = [(name, getattr(record, name)) for name in ("prompt", "context", "chosen")]
    texts += [(rejected_field(j, len(record.rejected)), r) for j, r in enumerate(record.rejected)]
    for name, text in texts:
        found = [m for m in markers if text and m in text]
        if found:
            raise record_error(
                where, record.id, name, "image_placeholder",
                f"holds the image placeholder {found[0]!r}; mmpo inserts one per image itself (remove it)",
            )  # fmt: skip


def parse_record(
    obj: Any,
    where: str,
    base_dir: Path,
    require_rejected: int,
    markers: Sequence[str] = IMAGE_PLACEHOLDERS,
) -> Record:
    """A :class:`Record` from one JSON object; ``require_rejected`` is how many rejected responses the
    run's branches read, ``markers`` the strings record text must not hold. Image paths are resolved
    against ``base_dir`` and must exist (embedded images, :mod:`mmpo.images`, are checked when decoded)."""
    if not isinstance(obj, dict):
        raise record_error(
            where, None, None, "not_json", f"a record must be a JSON object, got {type(obj).__name__}"
        )
    record_id = obj.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        raise record_error(
            where, None, "id", "invalid_field", f"must be a non-empty string, got {record_id!r}"
        )
    _unknown_keys(obj, where)
    prompt, chosen = _text(obj, "prompt", where), _text(obj, "chosen", where)
    rejected = obj.get("rejected", [])
    rejected = [rejected] if isinstance(rejected, str) else rejected
    if not isinstance(rejected, list) or not all(isinstance(r, str) and r for r in rejected):
        raise record_error(where, record_id, "rejected", "invalid_field",
                           f"must be a non-empty string or a list of them, got {obj.get('rejected')!r}")  # fmt: skip
    for j, response in enumerate(rejected):
        name = rejected_field(j, len(rejected))
        if not response.strip():
            raise record_error(where, record_id, name, "blank_text", "holds only whitespace")
        if response.strip() == chosen.strip():
            raise record_error(where, record_id, name, "rejected_equals_chosen", "equals the chosen response")
    if len(rejected) < require_rejected:
        raise record_error(where, record_id, "rejected", "too_few_rejected",
                           f"holds {len(rejected) or 'none'}, but the loss needs {require_rejected} rejected "
                           "response(s)")  # fmt: skip
    context = _text(obj, "context", where, optional=True)
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise record_error(where, record_id, "meta", "invalid_field", f"must be an object, got {meta!r}")
    paths = {}
    for key in ("images", "negative_images"):
        value = obj.get(key) or []
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise record_error(
                where, record_id, key, "invalid_field", f"must be a list of paths, got {value!r}"
            )
        resolved = [p if is_embedded(p) or Path(p).is_absolute() else str(base_dir / p) for p in value]
        missing = [p for p in resolved if not is_embedded(p) and not Path(p).is_file()]
        if missing:
            raise record_error(
                where, record_id, key, "missing_image", f"names files that do not exist: {missing}"
            )
        paths[key] = resolved
    record = Record(record_id, paths["images"], prompt, chosen, rejected, context, paths["negative_images"],
                    meta, where)  # fmt: skip
    _markers(record, markers, where)
    return record


class RecordSource(Protocol):
    """The rows of one split on disk (JSONL lines or arrow rows), read one at a time."""

    path: Path
    base_dir: Path
    """The folder relative image paths start at."""

    def __len__(self) -> int: ...

    def location(self, row: int) -> str: ...

    def raw(self, row: int) -> Any:
        """The row as the JSON value of a JSONL line (a :class:`RecordError` if it does not decode)."""

    def fingerprint(self) -> str:
        """A digest that changes whenever the rows may have."""

    def image_paths(self) -> Iterator[str]:
        """Every image file path the rows name, as written (embedded images are part of the rows)."""


class JsonlRecords:
    """The non-blank lines of a JSONL file, found by one pass over its bytes and read on access."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"data file {str(self.path)!r} does not exist (set data.path to a directory holding "
                "train.jsonl / val.jsonl in the record format of the README)"
            )
        self.base_dir = self.path.parent
        digest = hashlib.blake2b(digest_size=16)
        starts, numbers, offset = [], [], 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                digest.update(line)
                if line.strip():
                    starts.append(offset)
                    numbers.append(number)
                offset += len(line)
        self._starts = np.array(starts + [offset], dtype=np.int64)
        self._numbers = np.array(numbers, dtype=np.int64)
        self._digest = digest.hexdigest()
        self._handle: tuple[int, int] | None = None  # (pid, fd): a worker process opens its own

    def __len__(self) -> int:
        return len(self._numbers)

    def location(self, row: int) -> str:
        return f"{self.path}:{self._numbers[row]}"

    def raw(self, row: int) -> Any:
        start, end = int(self._starts[row]), int(self._starts[row + 1])
        return decode_line(os.pread(self._fd(), end - start, start).strip(), self.location(row))

    def fingerprint(self) -> str:
        return self._digest

    def image_paths(self) -> Iterator[str]:
        for row in range(len(self)):
            try:
                obj = self.raw(row)
            except RecordError:
                continue
            if isinstance(obj, dict):
                yield from _paths(obj.get("images"))
                yield from _paths(obj.get("negative_images"))

    def _fd(self) -> int:
        if self._handle is None or self._handle[0] != os.getpid():
            self._handle = (os.getpid(), os.open(self.path, os.O_RDONLY))
        return self._handle[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None}


def _paths(value: Any) -> list[str]:
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


class Records(Sequence[Record]):
    """The records of a split as the data set reads them: rows ``rows`` of ``source`` (those that passed
    the checks), each parsed when it is asked for."""

    def __init__(self, source: RecordSource, rows: Sequence[int] | None = None):
        self.source = source
        self.rows = np.arange(len(source)) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Records(self.source, self.rows[index])
        row = int(self.rows[index])
        location = self.source.location(row)
        return parse_record(self.source.raw(row), location, self.source.base_dir, require_rejected=0)

    def __iter__(self) -> Iterator[Record]:
        return (self[i] for i in range(len(self)))


@dataclass
class ReadReport:
    """How many records were read, and the error of each skipped one."""

    read: int = 0
    skipped: list[str] = field(default_factory=list)


def read_records(
    path: str | Path, on_error: str = "raise", require_rejected: int = 1, report: ReadReport | None = None
) -> list[Record]:
    """All records of a JSONL file, checked, in a list (for tools on files that fit in memory; training
    reads through :mod:`mmpo.data.validation`); ``on_error`` is ``raise`` or ``skip`` (counted in
    ``report``); ``require_rejected``: how many rejected responses a record must hold (0 for SFT data)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"data.on_error={on_error!r}; allowed: {list(ON_ERROR)}")
    source = JsonlRecords(path)
    report = report if report is not None else ReadReport()
    records, seen = [], set()
    for row in range(len(source)):
        location = source.location(row)
        try:
            record = parse_record(source.raw(row), location, source.base_dir, require_rejected)
            if record.id in seen:
                raise record_error(
                    location, record.id, None, "duplicate_id", f"duplicate record id {record.id!r}"
                )
        except RecordError as error:
            if on_error == "raise":
                raise
            report.skipped.append(str(error))
            continue
        seen.add(record.id)
        records.append(record)
    report.read += len(records)
    return records
