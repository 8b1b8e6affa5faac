"""Data directories with one kind of bad input each, as a user's data would hold it, and what the data
module must say about it (split, line, record id, field, reason)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

GOOD_TRAIN = 4
GOOD_VAL = 2


def record(record_id: str, image: str = "red.png", **fields) -> dict:
    return {"id": record_id, "images": [image], "prompt": "What colour is the square?",
            "chosen": "It is red.", "rejected": "It is blue.", **fields}  # fmt: skip


def write_images(directory: Path) -> None:
    Image.new("RGB", (32, 32), "red").save(directory / "red.png")
    Image.new("RGB", (48, 32), "blue").save(directory / "blue.png")


def write_lines(path: Path, rows: list) -> None:
    with open(path, "wb") as f:
        for row in rows:
            f.write(row if isinstance(row, bytes) else json.dumps(row).encode())
            f.write(b"\n")


def good(split: str) -> list[dict]:
    count = GOOD_TRAIN if split == "train" else GOOD_VAL
    return [record(f"{split}-{i}", "red.png" if i % 2 else "blue.png") for i in range(count)]


@dataclass
class Case:
    """A bad row added at the end of ``split`` (its line is the line after the good ones)."""

    name: str
    row: Callable[[Path], dict | bytes]
    reason: str
    field: str | None
    record_id: str | None = "bad"
    split: str = "train"
    message: str = ""
    overrides: tuple[str, ...] = ()
    """Settings the case needs (the CLI test passes them to train.py)."""

    @property
    def line(self) -> int:
        return (GOOD_TRAIN if self.split == "train" else GOOD_VAL) + 1

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        write_images(directory)
        splits = {"train": good("train"), "val": good("val")}
        splits[self.split].append(self.row(directory))
        for name, rows in splits.items():
            write_lines(directory / f"{name}.jsonl", rows)
        return directory / f"{self.split}.jsonl"


def _image(name: str, write: Callable[[Path], None], **fields) -> Callable[[Path], dict]:
    def row(directory: Path) -> dict:
        write(directory / name)
        return record("bad", name, **fields)

    return row


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _corrupt(path: Path) -> None:
    Image.effect_noise((64, 64), 40).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:200])


CASES = [
    Case("corrupt_image", _image("cut.png", _corrupt), "image_unreadable", "images[0]", message="does not decode"),
    Case("zero_byte_image_in_val", _image("empty.png", _zero_bytes), "image_unreadable", "images[0]",
         split="val", message="is empty (0 bytes)"),
    Case("transparent_image", _image("clear.png", lambda p: Image.new("RGBA", (8, 8), (9, 9, 9, 0)).save(p)),
         "image_transparent", "images[0]", message="fully transparent"),
    Case("extreme_aspect_ratio", _image("thin.png", lambda p: Image.new("RGB", (402, 2)).save(p)),
         "image_aspect_ratio", "images[0]", message="beyond the aspect ratio 200:1"),
    Case("missing_image", lambda d: record("bad", "nowhere.png"), "missing_image", "images",
         message="names files that do not exist"),
    Case("not_utf8", lambda d: b'{"id": "bad", "prompt": "caf\xe9"}', "not_utf8", None, None,
         message="not UTF-8 text (byte 0xe9 at column 29)"),
    Case("not_json", lambda d: b'{"id": "bad", ', "not_json", None, None, message="not valid JSON"),
    Case("placeholder_in_prompt", lambda d: record("bad", prompt="<image>\nWhat colour?"), "image_placeholder",
         "prompt", message="holds the image placeholder '<image>'"),
    Case("chosen_equals_rejected", lambda d: record("bad", rejected=" It is red. "), "rejected_equals_chosen",
         "rejected", message="equals the chosen response"),
    Case("whitespace_response", lambda d: record("bad", rejected=["It is blue.", " \n\t"]), "blank_text",
         "rejected[1]", message="holds only whitespace"),
    Case("unknown_key", lambda d: record("bad", rejectd="It is green."), "unknown_field", "rejectd",
         message="is not a record field (did you mean 'rejected'?)"),
    Case("no_rejected_for_dpo", lambda d: {k: v for k, v in record("bad").items() if k != "rejected"},
         "too_few_rejected", "rejected", message="holds none, but the loss needs 1 rejected response(s)"),
    Case("duplicate_id", lambda d: record("train-1"), "duplicate_id", "id", "train-1",
         message="duplicate record id 'train-1'"),
    Case("id_in_train_and_val", lambda d: record("train-2"), "id_in_train", "id", "train-2", split="val",
         message="a training record has the id 'train-2'"),
]  # fmt: skip


def write_all(directory: Path) -> dict[str, list[str | None]]:
    """Every case in one data directory (each bad row with its own id), and the ids expected per reason."""
    directory.mkdir(parents=True, exist_ok=True)
    write_images(directory)
    splits: dict[str, list] = {"train": good("train"), "val": good("val")}
    expected: dict[str, list[str | None]] = {}
    for case in CASES:
        row = case.row(directory)
        record_id = case.record_id
        if isinstance(row, dict) and record_id == "bad":
            row["id"] = record_id = case.name
        splits[case.split].append(row)
        expected.setdefault(case.reason, []).append(record_id)
    for name, rows in splits.items():
        write_lines(directory / f"{name}.jsonl", rows)
    return expected
