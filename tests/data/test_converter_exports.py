"""Export to TRL / ms-swift and import back gives the same records; converted records feed the collator."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from mmpo.branches import CHOSEN, REJECTED
from mmpo.data.collator import PreferenceCollator
from mmpo.data.converters import ConvertError, Report, convert, export, export_records
from mmpo.data.examples import Example
from mmpo.data.records import Record, read_records
from mmpo.data.rows import IGNORE_INDEX
from mmpo.images import load_image
from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava

from .test_converters import folder, mcm_dpo_fixture, write_images


def canonical(tmp: Path, with_negatives: bool) -> Path:
    """A canonical JSONL written by hand: one and two images, meta, optionally negative images."""
    write_images(tmp / "images", "red", "green", "blue", "grey")
    records = [
        {"id": "one", "images": ["images/red.png"], "prompt": "What colour?", "chosen": "Red.",
         "rejected": "Green.", "meta": {"source": "hand", "k": 1}},
        {"id": "two", "images": ["images/green.png", "images/blue.png"], "prompt": "Left or right?",
         "chosen": "Left is green.", "rejected": "Both blue.", "meta": {"source": "hand", "k": 2}},
    ]  # fmt: skip
    if with_negatives:
        records.append(
            {"id": "neg", "images": ["images/red.png"], "prompt": "Describe it.", "chosen": "A red square.",
             "rejected": "A grey square.", "negative_images": ["images/grey.png"], "meta": {"source": "hand"}}
        )  # fmt: skip
    path = tmp / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def summary(records: list[Record]) -> list[tuple]:
    return [
        (
            r.id,
            r.prompt,
            r.chosen,
            r.rejected,
            r.context,
            r.meta,
            [Path(p).read_bytes() for p in r.images],
            [Path(p).read_bytes() for p in r.negative_images],
        )  # fmt: skip
        for r in records
    ]


@pytest.mark.parametrize(
    "schema,to,images",
    [
        ("trl", "jsonl", "reference"),
        ("trl", "arrow", "embed"),
        ("swift", "jsonl", "copy"),
        ("swift", "arrow", "reference"),
    ],
)
def test_export_then_import_gives_the_same_records(schema, to, images, tmp_path):
    source = canonical(folder(tmp_path / "in"), with_negatives=schema == "swift")
    report = export(schema, source, tmp_path / "exported", images=images, to=to)
    assert report.records == {"train": 3 if schema == "swift" else 2} and not report.skipped
    exported = tmp_path / "exported" / ("train.jsonl" if to == "jsonl" else "train")
    convert(schema, exported, tmp_path / "back")
    assert summary(read_records(tmp_path / "back" / "train.jsonl")) == summary(read_records(source))


def test_trl_export_drops_negative_images_and_counts_them(tmp_path):
    source = canonical(folder(tmp_path / "in"), with_negatives=True)
    report = export("trl", source, tmp_path / "out")
    assert report.negative_images_dropped == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert set(rows[2]) == {"id", "prompt", "chosen", "rejected", "images", "meta"}


def test_trl_arrow_export_is_a_vision_dataset_with_decodable_images(tmp_path):
    source = canonical(folder(tmp_path / "in"), with_negatives=False)
    export("trl", source, tmp_path / "out", to="arrow", images="embed")
    row = datasets.load_from_disk(str(tmp_path / "out" / "train"))[1]
    assert [image.getpixel((0, 0)) for image in row["images"]] == [(0, 255, 0), (0, 0, 255)]
    parts = row["prompt"][0]["content"]
    assert [p["type"] for p in parts] == ["image", "image", "text"] and parts[2]["text"] == "Left or right?"
    assert row["chosen"] == [{"role": "assistant", "content": [{"type": "text", "text": "Left is green."}]}]


def test_several_rejected_export_as_one_row_each_and_merge_back(tmp_path):
    write_images(folder(tmp_path), "red")
    record = Record(
        "r", [str(tmp_path / "red.png")], "Q?", "A.", rejected=["B.", "C."], meta={"source": "hand"}
    )
    for schema in ("trl", "swift"):
        out = tmp_path / schema
        out.mkdir()
        report = Report(command={})
        export_records(schema, [record], out, "train", "reference", "jsonl", "raise", report)
        assert report.records == {"train": 2}
        convert(schema, out / "train.jsonl", tmp_path / f"{schema}_back")
        (back,) = [
            json.loads(x) for x in (tmp_path / f"{schema}_back" / "train.jsonl").read_text().splitlines()
        ]
        assert (back["id"], back["rejected"]) == ("r", ["B.", "C."])


def test_context_is_written_into_the_user_turn(tmp_path):
    path, image_root, *_ = mcm_dpo_fixture(folder(tmp_path / "in"))
    convert("mcm_dpo", path, tmp_path / "canonical", image_root=image_root, on_error="skip")
    export("swift", tmp_path / "canonical" / "train.jsonl", tmp_path / "swift")
    row = json.loads((tmp_path / "swift" / "train.jsonl").read_text().splitlines()[0])
    user = row["messages"][0]["content"]
    assert (
        user == "<image>Given an image and context, generate alt-text for the image.\nContext:\nOur new logo!"
    )


def test_swift_export_needs_as_many_negative_images_as_images(tmp_path):
    write_images(folder(tmp_path), "red", "green", "grey")
    images = [str(tmp_path / "red.png"), str(tmp_path / "green.png")]
    record = Record("r", images, "Q?", "A.", "B.", negative_images=[str(tmp_path / "grey.png")])
    with pytest.raises(ConvertError, match="field 'negative_images'.*need as many"):
        export_records(
            "swift", [record], tmp_path, "train", "reference", "jsonl", "raise", Report(command={})
        )


def test_converted_records_feed_the_collator(tmp_path):
    path, image_root, *_ = mcm_dpo_fixture(folder(tmp_path / "in"))
    convert("mcm_dpo", path, tmp_path / "out", image_root=image_root, on_error="skip")
    records = read_records(tmp_path / "out" / "train.jsonl")
    _, processor = build_tiny_llava()
    collator = PreferenceCollator(processor, get_family("llava"), [CHOSEN, REJECTED])
    batch = collator([Example(r, [load_image(p) for p in r.images], []) for r in records])
    assert batch.ids == [r.id for r in records]
    tokenizer = processor.tokenizer
    for i, record in enumerate(records):
        rows = batch.rows[CHOSEN]
        ids, labels = rows.tensors["input_ids"][i], rows.labels[i]
        prompt = tokenizer.decode(ids[labels == IGNORE_INDEX], skip_special_tokens=True)
        assert record.prompt in prompt and record.context in prompt
        assert (
            tokenizer.decode(labels[labels != IGNORE_INDEX], skip_special_tokens=True).strip()
            == record.chosen
        )
