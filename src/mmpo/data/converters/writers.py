"""Writing rows as JSONL or as an HF ``datasets`` folder (``save_to_disk``).

In the arrow layout of canonical records, ``meta`` is JSON text (its content differs from row to
row), ``rejected`` is a string column, or a list column for every row when any record has several,
and images are path strings, or HF ``Image`` values holding the bytes with ``--images embed``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

OUTPUTS = ("jsonl", "arrow")


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_arrow(
    rows: Callable[[], Iterator[dict[str, Any]]],
    path: Path,
    features=None,
    image_columns: tuple[str, ...] = (),
) -> None:
    """The rows that ``rows()`` yields (one at a time, so image bytes never pile up in memory) as a
    ``datasets`` folder at ``path``; ``image_columns`` (lists of paths or ``{"bytes", "path"}``) are cast
    to lists of HF ``Image``."""
    import datasets

    with tempfile.TemporaryDirectory(dir=path.parent) as cache:
        dataset = datasets.Dataset.from_generator(
            _generate, gen_kwargs={"rows": rows}, features=features, cache_dir=cache
        )
        for column in image_columns:
            dataset = dataset.cast_column(column, datasets.List(datasets.Image()))
        if path.exists():
            shutil.rmtree(path)
        dataset.save_to_disk(str(path))


def _generate(rows):
    yield from rows()


def canonical_arrow_rows(records: list[dict[str, Any]], base: Path, embed: bool) -> tuple[Callable, Any]:
    """A generator function of the records as arrow rows, and their ``datasets.Features``; ``base``:
    the folder their image paths start at."""
    import datasets

    several = any(isinstance(r.get("rejected"), list) for r in records)
    image = datasets.Image() if embed else datasets.Value("string")
    string = datasets.Value("string")
    features = datasets.Features(
        {
            "id": string,
            "images": datasets.List(image),
            "prompt": string,
            "chosen": string,
            "rejected": datasets.List(string) if several else string,
            "context": string,
            "negative_images": datasets.List(image),
            "meta": string,
        }
    )

    def images(paths: list[str]) -> list:
        return [{"bytes": (base / p).read_bytes(), "path": Path(p).name} for p in paths] if embed else paths

    def rows() -> Iterator[dict[str, Any]]:
        for record in records:
            rejected = record.get("rejected")
            yield {
                "id": record["id"],
                "images": images(record["images"]),
                "prompt": record["prompt"],
                "chosen": record["chosen"],
                "rejected": [rejected] if several and isinstance(rejected, str) else rejected,
                "context": record.get("context"),
                "negative_images": images(record.get("negative_images", [])),
                "meta": json.dumps(record.get("meta", {}), ensure_ascii=False),
            }

    return rows, features
