"""Builders that write tiny benchmark data sets in each public format to a directory (tests only).

Every builder takes the root directory and the rows to write, so each test states its data next to
its hand-computed expectations. Images are 8x8 single-colour files; nothing is downloaded.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def jpeg_base64(color: tuple[int, int, int] = (30, 200, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_pope(root: Path, splits: Mapping[str, Sequence[tuple[int, str, str]]]) -> Path:
    """POPE: ``coco_pope_<split>.json`` lines from ``(question_id, object, label)`` and val2014 images."""
    for split, rows in splits.items():
        lines = []
        for question_id, obj, label in rows:
            image = f"COCO_val2014_{question_id:012d}.jpg"
            write_image(root / "val2014" / image)
            lines.append(
                {
                    "question_id": question_id,
                    "image": image,
                    "text": f"Is there a {obj} in the image?",
                    "label": label,
                }
            )
        write_jsonl(root / f"coco_pope_{split}.json", lines)
    return root


def write_coco_annotations(
    directory: Path, images: Mapping[int, tuple[Sequence[str], Sequence[str]]], split: str = "val2014"
) -> Path:
    """COCO ``instances_<split>.json`` / ``captions_<split>.json`` for ``{image_id: (categories, captions)}``."""
    names = sorted({name for categories, _ in images.values() for name in categories} | {"toothbrush"})
    category_ids = {name: index + 1 for index, name in enumerate(names)}
    image_rows = [{"id": image_id, "file_name": f"COCO_{split}_{image_id:012d}.jpg"} for image_id in images]
    instances = {
        "images": image_rows,
        "categories": [{"id": i, "name": name, "supercategory": "x"} for name, i in category_ids.items()],
        "annotations": [
            {"id": n, "image_id": image_id, "category_id": category_ids[name]}
            for n, (image_id, name) in enumerate(
                (image_id, name) for image_id, (categories, _) in images.items() for name in categories
            )
        ],
    }
    captions = {
        "images": image_rows,
        "annotations": [
            {"id": n, "image_id": image_id, "caption": caption}
            for n, (image_id, caption) in enumerate(
                (image_id, caption) for image_id, (_, texts) in images.items() for caption in texts
            )
        ],
    }
    write_json(directory / f"instances_{split}.json", instances)
    write_json(directory / f"captions_{split}.json", captions)
    return directory


def write_object_halbench(
    root: Path,
    rows: Sequence[tuple[int, str, bool]],
    coco: Mapping[int, tuple[Sequence[str], Sequence[str]]],
) -> Path:
    """Object HalBench jsonl from ``(image_id, question, embed_image)`` plus COCO annotations.

    Rows with ``embed_image`` carry the image as base64 like the released file; the others rely on
    ``images/COCO_val2014_<id>.jpg``.
    """
    lines = []
    for image_id, question, embed in rows:
        row: dict[str, Any] = {"image_id": image_id, "question": question}
        if embed:
            row["image"] = jpeg_base64()
        else:
            write_image(root / "images" / f"COCO_val2014_{image_id:012d}.jpg")
        lines.append(row)
    write_jsonl(root / "obj_halbench_300_with_image.jsonl", lines)
    write_coco_annotations(root / "annotations", coco)
    return root


def write_amber(
    root: Path,
    annotations: Sequence[Mapping[str, Any]],
    relation: Mapping[str, Sequence[str]],
    safe_words: Sequence[str],
) -> Path:
    """AMBER ``data/`` files; the query files list every annotation (generative query text fixed)."""
    data = root / "data"
    write_json(data / "annotations.json", list(annotations))
    write_json(data / "relation.json", dict(relation))
    (data / "safe_words.txt").write_text("\n".join(safe_words), encoding="utf-8")
    queries = {"generative": [], "discriminative": [], "all": []}
    for annotation in annotations:
        generative = annotation["type"] == "generative"
        query = {
            "id": annotation["id"],
            "image": f"AMBER_{annotation['id']}.jpg",
            "query": "Describe this image." if generative else "Is there a dog in this image?",
        }
        queries["generative" if generative else "discriminative"].append(query)
        queries["all"].append(query)
        write_image(root / "images" / query["image"])
    for task, rows in queries.items():
        write_json(data / "query" / f"query_{task}.json", rows)
    return root


def write_mmhal(root: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """MMHal-Bench ``response_template.json`` and ``images/<basename of image_src>``."""
    for record in records:
        write_image(root / "images" / Path(record["image_src"]).name)
    write_json(root / "response_template.json", list(records))
    return root


def write_hallusionbench(root: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """``HallusionBench.json`` and an image for every record with a ``filename``."""
    for record in records:
        if record.get("filename"):
            write_image(root / record["filename"].removeprefix("./"))
    write_json(root / "HallusionBench.json", list(records))
    return root


def write_mmvp(root: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    """MMVP ``Questions.csv`` from ``(question, options, correct answer)`` and ``MMVP Images/<i>.jpg``."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "Questions.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Index", "Question", "Options", "Correct Answer"])
        for number, (question, options, answer) in enumerate(rows, start=1):
            writer.writerow([number, question, options, answer])
            write_image(root / "MMVP Images" / f"{number}.jpg")
    return root


def write_alt_text(root: Path, subset: str, rows: Sequence[tuple[int, str]]) -> Path:
    """MCM-DPO ``<subset>_test.json`` lines from ``(idx, reference alt-text)`` and their images."""
    lines = []
    for idx, reference in rows:
        image = f"{idx}.jpg"
        write_image(root / "image" / f"{subset}_test" / image)
        lines.append(
            {
                "image_path": image,
                "question": "Given an image and context, generate alt-text for the image.\nContext:\nA day out.",
                "chosen": reference,
                "idx": idx,
            }
        )
    write_jsonl(root / f"{subset}_test.json", lines)
    return root


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_collectors: list[tuple[Path, set[str]]] = []


def _record_open(event: str, args: tuple) -> None:
    if event != "open" or not _collectors or not isinstance(args[0], (str, Path)):
        return
    path = Path(args[0]).resolve()
    for root, opened in _collectors:
        if path.is_relative_to(root) and path.suffix.lower() not in IMAGE_SUFFIXES:
            opened.add(path.relative_to(root).as_posix())


sys.addaudithook(_record_open)  # audit hooks stay for the process; it records only inside files_opened


@contextmanager
def files_opened(root: Path) -> Iterator[set[str]]:
    """The files under ``root`` (relative names, images left out) that the code in the block opens."""
    opened: set[str] = set()
    entry = (Path(root).resolve(), opened)
    _collectors.append(entry)
    try:
        yield opened
    finally:
        _collectors.remove(entry)
