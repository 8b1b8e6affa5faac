"""Records of a split as an HF ``datasets`` folder (``data.format=arrow``), memory-mapped.

The layout ``scripts/convert.py --to arrow`` writes (:mod:`mmpo.data.converters.writers`): the record
fields as columns, ``rejected`` a string or a list of strings, ``meta`` JSON text (or a struct), images as
path strings (relative to the folder that holds the split's folder, or absolute) or as HF ``Image`` values
holding the bytes. A row is read and turned into the JSON object of a JSONL line only when it is asked for;
an embedded image becomes a reference (:func:`mmpo.images.embedded_reference`) whose bytes are read when the
image is loaded, in the dataloader worker that needs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmpo.data.records import FIELDS, record_error
from mmpo.images import embedded_reference

IMAGE_COLUMNS = ("images", "negative_images")


class ArrowRecords:
    """The rows of a ``datasets`` folder (``save_to_disk``), read one at a time from the memory map."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        if not (self.path / "dataset_info.json").is_file():
            raise FileNotFoundError(
                f"data folder {str(self.path)!r} is not a datasets folder (data.format=arrow reads the "
                "train/ and val/ folders that scripts/convert.py --to arrow writes)"
            )
        self.base_dir = self.path.parent
        self._open: tuple | None = None
        table, _ = self._state()
        unknown = [c for c in table.column_names if c not in FIELDS]
        if unknown:
            raise record_error(
                str(self.path), None, unknown[0], "unknown_field",
                f"is not a record field; columns must be among {list(FIELDS)} (put anything else in 'meta')",
            )  # fmt: skip
        self._length = table.num_rows

    def _state(self):
        """The text columns as a memory-mapped ``pyarrow.Table`` and the image count of each row of the
        embedded image columns, opened once per process (each dataloader worker maps the files itself)."""
        if self._open is None:
            import datasets
            import pyarrow.compute as pc

            dataset = datasets.load_from_disk(str(self.path))
            table = dataset.with_format("arrow")[0 : len(dataset)]  # a zero-copy view of the mapped files
            embedded = [
                c for c in IMAGE_COLUMNS if c in dataset.features and _holds_images(dataset.features[c])
            ]
            counts = {
                c: pc.fill_null(pc.list_value_length(table.column(c)), 0).to_numpy(zero_copy_only=False)
                for c in embedded
            }
            self._open = (table.drop_columns(embedded), counts)
        return self._open

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": None}

    def __len__(self) -> int:
        return self._length

    def location(self, row: int) -> str:
        return f"{self.path} row {row}"

    def raw(self, row: int) -> dict[str, Any]:
        table, counts = self._state()
        values = table.slice(row, 1).to_pylist()[0]
        obj = {key: value for key, value in values.items() if value is not None}
        for column, count in counts.items():
            obj[column] = [embedded_reference(self.path, column, row, j) for j in range(int(count[row]))]
        if isinstance(obj.get("meta"), str):
            try:
                obj["meta"] = json.loads(obj["meta"])
            except json.JSONDecodeError as error:
                where = self.location(row)
                raise record_error(
                    where, obj.get("id"), "meta", "invalid_field", f"is not JSON text: {error}"
                ) from None
        return obj

    def image_paths(self) -> Iterator[str]:
        table, _ = self._state()
        for column in IMAGE_COLUMNS:
            if column in table.column_names:
                yield from (
                    p for paths in table.column(column).to_pylist() for p in paths or [] if isinstance(p, str)
                )

    def fingerprint(self) -> str:
        """The folder's metadata files by content and its data files by name, size and mtime."""
        digest = hashlib.blake2b(digest_size=16)
        for file in sorted(self.path.iterdir()):
            stat = file.stat()
            digest.update(
                file.read_bytes()
                if file.suffix == ".json"
                else f"{file.name}|{stat.st_size}|{stat.st_mtime_ns}".encode()
            )
        return digest.hexdigest()


def _holds_images(feature) -> bool:
    import datasets

    return isinstance(getattr(feature, "feature", None), datasets.Image)
