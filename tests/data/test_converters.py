"""Converters: each public format, written here as a small fixture with one bad row, becomes the records
written out by hand below, read back by the canonical reader; bad rows stop or are skipped and reported."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmpo.data.converters import FORMATS, ConvertError, convert
from mmpo.data.converters.base import BadRow, strip_placeholders
from mmpo.data.converters.vlfeedback import completions, pairs, score
from mmpo.data.records import read_records

from ..conftest import ROOT

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "grey": (128, 128, 128)}
MDPO_SYSTEM = "A chat between a curious user and an artificial intelligence assistant. "


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), COLOURS[colour]).save(buffer, "PNG")
    return buffer.getvalue()


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_images(where: Path, *colours: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for colour in colours:
        (where / f"{colour}.png").write_bytes(png(colour))


def colour_of(path: str) -> str:
    with Image.open(path) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    return next(name for name, value in COLOURS.items() if value == pixel)


def expected(prompt, chosen, rejected, images, context=None, negatives=()):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "context": context,
            "images": list(images), "negative_images": list(negatives)}  # fmt: skip


# ---- one fixture per public format: (input path, image root, expected records, bad row number, bad field) --
def mdpo_fixture(tmp: Path):
    write_images(tmp / "img", "red", "green")
    template = MDPO_SYSTEM + "USER: <image>\n{} ASSISTANT:"
    rows = [
        {
            "img_path": "red.png",
            "prompt": template.format("What colour is it?"),
            "chosen": "Red. ",
            "rejected": "Blue.",
        },
        {
            "img_path": "green.png",
            "prompt": template.format("<image> Two?"),
            "chosen": "No.",
            "rejected": "Yes.",
        },
        {
            "img_path": "green.png",
            "prompt": template.format("Which shape?"),
            "chosen": "A square.",
            "rejected": "A ring.",
        },
    ]
    (tmp / "mdpo.json").write_text(json.dumps(rows))
    records = [
        expected("What colour is it?", "Red.", "Blue.", ["red"]),
        expected("Which shape?", "A square.", "A ring.", ["green"]),
    ]
    return tmp / "mdpo.json", tmp / "img", records, 2, "prompt"


def vlfeedback_fixture(tmp: Path):
    def completion(model, response, *ratings):
        aspects = ("Helpfulness", "Visual Faithfulness", "Ethical Considerations")
        return {"annotations": {a: {"Rating": r, "Rationale": ""} for a, r in zip(aspects, ratings, strict=True)},
                "model": model, "response": response}  # fmt: skip

    rows = [
        {"id": "q1", "prompt": "Describe the image.", "models": ["a", "b", "c", "d"], "image": {"bytes": png("red"), "path": None},
         "completions": [completion("a", "A red square.", "5", "4", "3"),     # mean 4
                         completion("b", "A blue dot.", "2", "2", "2"),       # mean 2
                         completion("c", "A red shape.", "3", "3", "3"),      # mean 3
                         completion("d", "Unrated.", "N/A", "3", "3")]},      # no score
        {"id": "q2", "prompt": " ", "models": [], "image": {"bytes": png("red"), "path": None}, "completions": []},
    ]  # fmt: skip
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            "models": datasets.List(datasets.Value("string")),
            "completions": datasets.List(
                {
                    "annotations": {
                        a: {"Rating": datasets.Value("string"), "Rationale": datasets.Value("string")}
                        for a in ("Helpfulness", "Visual Faithfulness", "Ethical Considerations")
                    },
                    "model": datasets.Value("string"),
                    "response": datasets.Value("string"),
                }
            ),
            "image": datasets.Image(),
        }
    )
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp / "vlf.parquet"))
    records = [  # Silkie's rule: every pair with different means, the higher one chosen
        expected("Describe the image.", "A red square.", "A blue dot.", ["red"]),
        expected("Describe the image.", "A red square.", "A red shape.", ["red"]),
        expected("Describe the image.", "A red shape.", "A blue dot.", ["red"]),
    ]
    return tmp / "vlf.parquet", None, records, 2, "prompt"


def rlaif_v_fixture(tmp: Path):
    def row(idx, image, question, chosen, rejected):
        return {"ds_name": "RLAIF-V", "image": {"bytes": image, "path": f"{idx}.png"}, "question": question,
                "chosen": chosen, "rejected": rejected, "origin_dataset": "coco", "origin_split": "{}",
                "idx": str(idx), "image_path": f"{idx}.png"}  # fmt: skip

    shards = tmp / "RLAIF-V-Dataset"
    shards.mkdir()
    first = [
        row(0, png("red"), "What is shown?", "A red square.", "A cat."),
        row(1, b"not a png", "Q?", "A", "B"),
    ]
    second = [row(2, png("blue"), "Colour?", "Blue.", "Red.")]
    pq.write_table(pa.Table.from_pylist(first), shards / "RLAIF-V-Dataset_000.parquet")
    pq.write_table(pa.Table.from_pylist(second), shards / "RLAIF-V-Dataset_001.parquet")
    records = [
        expected("What is shown?", "A red square.", "A cat.", ["red"]),
        expected("Colour?", "Blue.", "Red.", ["blue"]),
    ]
    return shards, None, records, 2, "image"


def povid_fixture(tmp: Path):
    write_images(tmp / "coco", "red", "green")

    def conversation(question, answer):
        return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]

    rows = [
        {"id": "COCO_1", "image": "red.png", "conversations": conversation("Describe this image in detail.", "A red square."),
         "rejected_conversations": conversation("Describe this image in detail.", "A red square and a dog.")},
        {"id": "COCO_2", "image": "green.png", "conversations": conversation("Describe it.", "Green."),
         "rejected_conversations": conversation("Describe something else.", "Blue.")},
        {"id": "COCO_2", "image": "green.png", "conversations": conversation("What colour?", "Green."),
         "rejected_conversations": conversation("What colour?", "Purple.")},
    ]  # fmt: skip
    (tmp / "povid.json").write_text(json.dumps(rows))
    records = [
        expected("Describe this image in detail.", "A red square.", "A red square and a dog.", ["red"]),
        expected("What colour?", "Green.", "Purple.", ["green"]),
    ]
    return tmp / "povid.json", tmp / "coco", records, 2, "rejected_conversations"


def mcm_dpo_fixture(tmp: Path):
    write_images(tmp / "image", "red", "blue")
    question = "Given an image and context, generate alt-text for the image.Context:\n{}"
    rows = [
        {"ds_name": "twitter_data", "image": {"bytes": None, "path": "red.png"}, "idx": 30, "image_path": "red.png",
         "origin_dataset": "AltTextData", "origin_split": "{}",
         "text": json.dumps({"question": question.format("Our new logo!"), "chosen": "A red square logo.",
                             "rejected": "A logo."})},
        {"ds_name": "twitter_data", "image": {"bytes": None, "path": "red.png"}, "idx": 31, "text": "{not json"},
        {"ds_name": "pinterest_data", "image": {"bytes": png("blue"), "path": None}, "idx": 7, "question": question.format("Sea\nday"),
         "chosen": "Blue water.", "rejected": "Water."},
    ]  # fmt: skip
    columns = {key for row in rows for key in row}  # one schema for both platforms' rows
    pq.write_table(
        pa.Table.from_pylist([{k: row.get(k) for k in sorted(columns)} for row in rows]), tmp / "talt.parquet"
    )
    instruction = "Given an image and context, generate alt-text for the image."
    records = [
        expected(instruction, "A red square logo.", "A logo.", ["red"], context="Our new logo!"),
        expected(instruction, "Blue water.", "Water.", ["blue"], context="Sea\nday"),
    ]
    return tmp / "talt.parquet", tmp / "image", records, 2, "text"


def trl_fixture(tmp: Path):
    def user(text, images):
        return [{"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": text}]}]

    def assistant(text):
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    rows = [
        {"prompt": user("Which colour?", 1), "chosen": assistant("Red."), "rejected": assistant("Green."),
         "images": [{"bytes": png("red"), "path": None}]},
        {"prompt": user("Compare them.", 2), "chosen": assistant("Same."), "rejected": assistant("Different."),
         "images": [{"bytes": png("red"), "path": None}]},
        {"prompt": user("Left or right?", 2), "chosen": assistant("Left is blue."), "rejected": assistant("Both red."),
         "images": [{"bytes": png("blue"), "path": None}, {"bytes": png("red"), "path": None}]},
    ]  # fmt: skip
    dataset = datasets.Dataset.from_list(rows).cast_column("images", datasets.List(datasets.Image()))
    dataset.save_to_disk(str(tmp / "trl"))
    records = [
        expected("Which colour?", "Red.", "Green.", ["red"]),
        expected("Left or right?", "Left is blue.", "Both red.", ["blue", "red"]),
    ]
    return tmp / "trl", None, records, 2, "prompt"


def swift_fixture(tmp: Path):
    write_images(tmp, "red", "green", "grey")

    def messages(question, answer):
        return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question},
                {"role": "assistant", "content": answer}]  # fmt: skip

    rows = [
        {"messages": messages("<image>What is this?", "A red square."), "images": ["red.png"],
         "rejected_response": "A green square."},
        {"messages": messages("<image><image>Two?", "Yes."), "images": ["red.png"], "rejected_response": "No."},
        {"messages": messages("<image>What is this?", "A green square."), "images": ["green.png"],
         "rejected_images": ["grey.png"]},
        {"messages": messages("<image>Colour?", "Green."), "images": ["green.png"],
         "rejected_response": [{"role": "assistant", "content": "Grey."}]},
    ]  # fmt: skip
    (tmp / "swift.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = [
        expected("What is this?", "A red square.", "A green square.", ["red"]),
        expected("What is this?", "A green square.", None, ["green"], negatives=["grey"]),
        expected("Colour?", "Green.", "Grey.", ["green"]),
    ]
    return tmp / "swift.jsonl", None, records, 2, "messages"


def llamafactory_fixture(tmp: Path):
    write_images(tmp / "data", "red", "blue")
    rows = [
        {"conversations": [{"from": "human", "value": "<image>What colour is the shape?"}],
         "chosen": {"from": "gpt", "value": "Red."}, "rejected": {"from": "gpt", "value": "Blue."},
         "images": ["red.png"]},
        {"conversations": [{"from": "human", "value": "<image>Hi"}, {"from": "gpt", "value": "Hello"},
                           {"from": "human", "value": "Colour?"}],
         "chosen": {"from": "gpt", "value": "Red."}, "rejected": {"from": "gpt", "value": "Blue."},
         "images": ["red.png"]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image>\nColour?"}],
         "chosen": {"role": "assistant", "content": "Blue."}, "rejected": {"role": "assistant", "content": "Red."},
         "images": ["blue.png"]},
    ]  # fmt: skip
    (tmp / "data" / "dpo_mllm.json").write_text(json.dumps(rows))
    records = [
        expected("What colour is the shape?", "Red.", "Blue.", ["red"]),
        expected("Colour?", "Blue.", "Red.", ["blue"]),
    ]
    return tmp / "data" / "dpo_mllm.json", None, records, 2, "conversations"


FIXTURES = {
    "mdpo": mdpo_fixture,
    "vlfeedback": vlfeedback_fixture,
    "rlaif_v": rlaif_v_fixture,
    "povid": povid_fixture,
    "mcm_dpo": mcm_dpo_fixture,
    "trl": trl_fixture,
    "swift": swift_fixture,
    "llamafactory": llamafactory_fixture,
}


def test_every_format_has_a_fixture():
    assert set(FIXTURES) == set(FORMATS)


def as_written(rejected: list[str]) -> str | list[str] | None:
    """The record file's ``rejected``: one response as a string, several as a list, none absent."""
    return rejected[0] if len(rejected) == 1 else (rejected or None)


def as_expected(records) -> list[dict]:
    return [
        expected(
            r.prompt,
            r.chosen,
            as_written(r.rejected),
            [colour_of(p) for p in r.images],
            r.context,
            [colour_of(p) for p in r.negative_images],
        )  # fmt: skip
        for r in records
    ]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_converted_records_read_back_with_the_canonical_reader(name, tmp_path):
    path, image_root, records, bad_row, bad_field = FIXTURES[name](folder(tmp_path / "in"))
    report = convert(name, path, tmp_path / "out", image_root=image_root, on_error="skip")
    converted = read_records(tmp_path / "out" / "train.jsonl", require_rejected=int(name != "swift"))
    assert as_expected(converted) == records
    assert len({r.id for r in converted}) == len(converted)
    assert [(s["row"], s["field"]) for s in report.skipped] == [(bad_row, bad_field)]
    on_disk = json.loads((tmp_path / "out" / "convert_report.json").read_text())
    assert on_disk["skipped_count"] == 1 and on_disk["records"] == {"train": len(records)}
    for record in converted:  # copied into the output folder, named relative to it
        assert all(Path(p).parent == tmp_path / "out" / "images" for p in record.images)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_a_bad_row_stops_the_conversion_naming_file_row_and_field(name, tmp_path):
    path, image_root, _, bad_row, bad_field = FIXTURES[name](folder(tmp_path / "in"))
    with pytest.raises(ConvertError) as error:
        convert(name, path, tmp_path / "out", image_root=image_root)
    message = str(error.value)
    assert f"row {bad_row}: field {bad_field!r}" in message
    assert str(path) in message  # the file, or the folder that holds the shard file


def test_placeholders_are_counted_against_the_images_and_removed():
    assert strip_placeholders("<image>\nWhat is it?", 1, "prompt", required=True) == "What is it?"
    assert strip_placeholders("Left <image> right <image>", 2, "prompt", required=True) == "Left right"
    assert strip_placeholders("No tag here.", 1, "prompt", required=False) == "No tag here."
    for text, images, required in [
        ("No tag.", 1, True),
        ("<image><image>Q", 1, False),
        ("<image>Q", 0, False),
    ]:
        with pytest.raises(BadRow, match="placeholder"):
            strip_placeholders(text, images, "prompt", required)


def test_vlfeedback_pair_rules_on_hand_computed_scores():
    scores = [4.0, 2.0, 3.0, 3.0]
    assert pairs(scores, "all", 0.0) == [(0, [1]), (0, [2]), (0, [3]), (2, [1]), (3, [1])]  # 2 vs 3: a tie
    assert pairs(scores, "all", 1.0) == [(0, [1])]  # only gaps above 1
    assert pairs(scores, "best_worst", 0.0) == [(0, [1])]
    assert pairs(scores, "best_worst", 2.0) == []
    assert pairs(scores, "ranked", 0.0) == [(0, [2, 3, 1])]
    assert pairs([3.0, 3.0], "ranked", 0.0) == []
    rated = {"annotations": {"Helpfulness": {"Rating": "5"}, "Visual Faithfulness": {"Rating": "2"}}}
    assert score(rated) == 3.5
    assert score({"annotations": {"Helpfulness": {"Rating": "N/A"}}}) is None
    assert score({"annotations": {"Helpfulness": None}}) is None
    as_columns = {"response": ["a", "b"], "model": ["m", "n"]}  # datasets' Sequence(dict) layout
    assert completions({"completions": as_columns}) == [
        {"response": "a", "model": "m"},
        {"response": "b", "model": "n"},
    ]


def test_vlfeedback_ranked_gives_one_record_with_the_rejected_best_first(tmp_path):
    path, *_ = vlfeedback_fixture(folder(tmp_path / "in"))
    convert("vlfeedback", path, tmp_path / "out", pairs="ranked", on_error="skip")
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert record["chosen"] == "A red square."
    assert record["rejected"] == ["A red shape.", "A blue dot."]
    assert record["meta"]["scores"] == [4.0, 3.0, 2.0]


def test_rows_sharing_an_id_merge_into_one_record_and_a_conflicting_one_is_a_bad_row(tmp_path):
    write_images(tmp_path, "red")
    row = {"id": "r1", "prompt": "Q?", "chosen": "A.", "rejected": "B.", "images": ["red.png"]}
    rows = [row, {**row, "rejected": "C."}, {**row, "chosen": "Z."}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = convert("trl", tmp_path / "pairs.jsonl", tmp_path / "out", on_error="skip")
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert record["rejected"] == ["B.", "C."]
    assert report.rows_merged == 1
    assert [(s["row"], s["field"]) for s in report.skipped] == [(3, "id")]


def test_reference_mode_names_the_source_files_and_val_size_splits(tmp_path):
    path, image_root, records, *_ = povid_fixture(folder(tmp_path / "in"))
    convert(
        "povid",
        path,
        tmp_path / "out",
        images="reference",
        image_root=image_root,
        on_error="skip",
        val_size=1,
    )
    train = read_records(tmp_path / "out" / "train.jsonl")
    val = read_records(tmp_path / "out" / "val.jsonl")
    assert sorted(r.chosen for r in train + val) == sorted(r["chosen"] for r in records)
    assert {p for r in train + val for p in r.images} <= {
        str((image_root / f"{c}.png").resolve()) for c in COLOURS
    }
    assert not (tmp_path / "out" / "images").exists()


def test_arrow_output_equals_the_jsonl_output(tmp_path):
    path, image_root, *_ = mcm_dpo_fixture(folder(tmp_path / "in"))
    convert("mcm_dpo", path, tmp_path / "jsonl", image_root=image_root, on_error="skip")
    convert("mcm_dpo", path, tmp_path / "arrow", image_root=image_root, on_error="skip", to="arrow")
    lines = [json.loads(line) for line in (tmp_path / "jsonl" / "train.jsonl").read_text().splitlines()]
    rows = list(datasets.load_from_disk(str(tmp_path / "arrow" / "train")))
    for row in rows:
        row["meta"] = json.loads(row["meta"])
    assert rows == [{"negative_images": [], **line} for line in lines]


def test_embedded_images_hold_the_bytes_of_the_copied_files(tmp_path):
    path, image_root, *_ = mdpo_fixture(folder(tmp_path / "in"))
    convert("mdpo", path, tmp_path / "copy", image_root=image_root, on_error="skip")
    convert(
        "mdpo", path, tmp_path / "embed", image_root=image_root, on_error="skip", to="arrow", images="embed"
    )
    copied = read_records(tmp_path / "copy" / "train.jsonl")
    embedded = datasets.load_from_disk(str(tmp_path / "embed" / "train")).cast_column(
        "images", datasets.List(datasets.Image(decode=False))
    )
    assert [[Path(p).read_bytes() for p in r.images] for r in copied] == [
        [image["bytes"] for image in row["images"]] for row in embedded
    ]
    assert not (tmp_path / "embed" / "images").exists()
    with pytest.raises(ConvertError, match="needs --to arrow"):
        convert("mdpo", path, tmp_path / "bad", images="embed")


def test_cli_reports_a_bad_row_without_a_traceback(tmp_path):
    path, image_root, *_ = mdpo_fixture(folder(tmp_path / "in"))
    script = str(ROOT / "scripts" / "convert.py")
    args = [sys.executable, script, "--format", "mdpo", "--input", str(path), "--image-root", str(image_root)]
    failed = subprocess.run([*args, "--output", str(tmp_path / "a")], capture_output=True, text=True)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "row 2: field 'prompt'" in failed.stderr
    done = subprocess.run(
        [*args, "--output", str(tmp_path / "b"), "--on-error", "skip"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert len(read_records(tmp_path / "b" / "train.jsonl")) == 2
