"""Every record checked once before training: each kind of bad input under data.on_error=raise (one error
naming file, line, record id and field) and skip (counted with its id in the report, the rest trained on),
length outcomes decided and named up front, verdicts cached by file fingerprint."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmpo.branches import CHOSEN_NEGATIVE
from mmpo.data import validation
from mmpo.data.datamodule import PreferenceDataModule, data_problems
from mmpo.data.records import RecordError
from mmpo.data.validation import REASONS, SKIP_HINT

from .bad_inputs import CASES, GOOD_TRAIN, GOOD_VAL, Case, good, record, write_images, write_lines


def ids_of(module: PreferenceDataModule, split: str) -> list[str]:
    return [r.id for r in module.datasets[split].records]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_under_raise_is_one_error_naming_file_line_record_and_field(tmp_path, make, case: Case):
    file = case.write(tmp_path)
    with pytest.raises(RecordError) as error:
        make(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{file}:{case.line}"), message
    assert case.message in message and SKIP_HINT in message
    if case.record_id is not None:
        assert f"(record id {case.record_id!r})" in message
    if case.field is not None:
        assert f"field {case.field!r}" in message
    assert error.value.reason == case.reason


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_under_skip_is_counted_with_its_id_and_the_rest_is_kept(tmp_path, make, case: Case):
    file = case.write(tmp_path)
    module = make(tmp_path, "data.on_error=skip")
    report = module.write_report(tmp_path, {})
    assert report == json.loads((tmp_path / "data_report.json").read_text())
    assert report["skipped"]["count"] == 1 and report["skipped"]["by_reason"] == {case.reason: 1}
    (entry,) = report["skipped"]["records"]
    assert entry["split"] == case.split and entry["location"] == f"{file}:{case.line}"
    assert entry["id"] == case.record_id and entry["field"] == case.field and case.message in entry["message"]
    assert report["splits"]["train"] == {"read": GOOD_TRAIN + (case.split == "train"), "kept": GOOD_TRAIN}
    assert report["splits"]["val"] == {"read": GOOD_VAL + (case.split == "val"), "kept": GOOD_VAL}
    assert ids_of(module, "train") == [r["id"] for r in good("train")]
    assert ids_of(module, "val") == [r["id"] for r in good("val")]
    assert report["altered"]["count"] == 0 and case.reason in REASONS


def test_the_qwen2vl_vision_tokens_in_record_text_are_refused_like_llavas_placeholder(tmp_path, make):
    write_images(tmp_path)
    bad = [record("pad", chosen="It is <|image_pad|> red."), record("image", prompt="<image> Colour?")]
    write_lines(tmp_path / "train.jsonl", good("train") + bad)
    write_lines(tmp_path / "val.jsonl", good("val"))
    module = make(tmp_path, "data.on_error=skip", family="qwen2_vl")
    entries = module.check().report()["skipped"]["records"]
    assert [(e["id"], e["field"], e["reason"]) for e in entries] == [
        ("pad", "chosen", "image_placeholder"),
        ("image", "prompt", "image_placeholder"),
    ]
    assert "'<|image_pad|>'" in entries[0]["message"]
    markers = validation.image_markers(module.processor, module.family)
    assert set(markers) == {"<image>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"}


def test_a_partly_transparent_image_is_kept_flattened_and_counted(tmp_path, make):
    write_images(tmp_path)
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(tmp_path / "alpha.png")
    write_lines(tmp_path / "train.jsonl", [*good("train"), record("alpha", "alpha.png")])
    write_lines(tmp_path / "val.jsonl", good("val"))
    module = make(tmp_path)  # a change, not an error: raise mode keeps it
    report = module.check().report()
    assert report["altered"]["by_reason"] == {"alpha_flattened": 1}
    assert report["altered"]["records"][0]["id"] == "alpha" and report["skipped"]["count"] == 0
    example = module.datasets["train"][GOOD_TRAIN]
    assert example.record.id == "alpha" and example.images[0].getpixel((0, 0)) == (255, 255, 255)


def test_a_processor_that_refuses_an_image_is_named_before_training(tmp_path, make, processors, monkeypatch):
    write_images(tmp_path)
    Image.new("RGB", (7, 7)).save(tmp_path / "tiny.png")
    write_lines(tmp_path / "train.jsonl", [*good("train"), record("tiny", "tiny.png")])
    write_lines(tmp_path / "val.jsonl", good("val"))
    processor = processors["llava"]
    original = type(processor).__call__

    def refusing(self, text=None, images=None, **kwargs):  # as Qwen2-VL refuses images below its patch size
        if images and any(min(image.size) < 8 for image in images):
            raise ValueError("height:7 or width:7 must be larger than factor:8")
        return original(self, text=text, images=images, **kwargs)

    monkeypatch.setattr(type(processor), "__call__", refusing)
    with pytest.raises(
        RecordError, match=r"train.jsonl:5 \(record id 'tiny'\): field 'images' the processor "
    ):
        make(tmp_path)
    skipped = make(tmp_path, "data.on_error=skip").check().report()["skipped"]
    assert skipped["by_reason"] == {"processor_error": 1} and "factor:8" in skipped["records"][0]["message"]


def long_record_dir(tmp_path):
    write_images(tmp_path)
    long = record("long", chosen="It is red. " * 40, rejected="It is blue. " * 40)
    write_lines(tmp_path / "train.jsonl", [*good("train"), long])
    write_lines(tmp_path / "val.jsonl", good("val"))
    return tmp_path / "train.jsonl"


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_over_long_records_are_decided_up_front_by_data_truncation(tmp_path, make, on_error):
    file = long_record_dir(tmp_path)
    # delete: dropped and listed with its id, under either on_error
    deleted = make(tmp_path, "data.max_length=60", "data.truncation=delete", f"data.on_error={on_error}")
    report = deleted.check().report()
    assert report["skipped"]["by_reason"] == {"too_long": 1} and "long" not in ids_of(deleted, "train")
    assert report["skipped"]["records"][0]["field"] == "chosen"
    # truncate_response: kept, and each response cut is listed
    cut = make(
        tmp_path, "data.max_length=60", "data.truncation=truncate_response", f"data.on_error={on_error}"
    )
    altered = cut.check().report()["altered"]
    assert [(e["id"], e["field"], e["reason"]) for e in altered["records"]] == [
        ("long", "chosen", "response_truncated"),
        ("long", "rejected", "response_truncated"),
    ]
    assert "long" in ids_of(cut, "train")
    batch = cut.collators["train"]([cut.datasets["train"][GOOD_TRAIN]])
    assert all(rows.tensors["input_ids"].shape[1] == 60 for rows in batch.rows.values())
    # raise: stops before training with file, line, id and field, under either on_error
    with pytest.raises(RecordError) as error:
        make(tmp_path, "data.max_length=60", "data.truncation=raise", f"data.on_error={on_error}")
    assert str(error.value).startswith(
        f"{file}:{GOOD_TRAIN + 1} (record id 'long'): field 'chosen' does not fit"
    )
    assert "exceed data.max_length=60" in str(error.value)


def test_an_empty_split_and_a_missing_validation_file_are_named(tmp_path, make):
    write_images(tmp_path)
    write_lines(tmp_path / "train.jsonl", [record("x", prompt="  ")])
    write_lines(tmp_path / "val.jsonl", good("val"))
    with pytest.raises(
        RecordError,
        match=r"the train split .*train.jsonl holds no usable record \(1 read, 1 refused: \{'blank_text': 1\}\)",
    ):
        make(tmp_path, "data.on_error=skip")
    (tmp_path / "train.jsonl").write_text("\n\n")
    with pytest.raises(RecordError, match=r"holds no usable record \(0 read, 0 refused: none\)"):
        make(tmp_path)
    (tmp_path / "val.jsonl").unlink()
    module = make(tmp_path, setup=False)
    (problem,) = data_problems(module.cfg)
    assert f"data.path='{tmp_path}' has no val.jsonl (val split)" in problem


def test_verdicts_are_cached_by_file_fingerprint_and_an_image_fixed_in_place_is_checked_again(
    tmp_path, make, monkeypatch
):
    case = next(c for c in CASES if c.name == "corrupt_image")
    case.write(tmp_path)
    first = make(tmp_path, "data.on_error=skip")
    assert not first.validation.cached and first.check().report()["skipped"]["count"] == 1
    calls = []
    check_row = validation.check_row
    monkeypatch.setattr(validation, "check_row", lambda *a: calls.append(a) or check_row(*a))
    again = make(tmp_path, "data.on_error=skip")
    assert again.validation.cached and calls == [] and again.check().report() == first.check().report()
    with pytest.raises(RecordError, match="cut.png"):  # the cached verdict still stops a raise run
        make(tmp_path)
    assert calls == []
    Image.new("RGB", (8, 8), "green").save(tmp_path / "cut.png")  # the user repairs the image
    fixed = make(tmp_path)
    assert not fixed.validation.cached and len(calls) == GOOD_TRAIN + 1 + GOOD_VAL
    assert "bad" in ids_of(fixed, "train")
    cache_files = list((tmp_path / ".mmpo-cache").glob("validation-*.json"))
    assert len(cache_files) == 2
    make(tmp_path, "data.max_length=100")  # a setting the checks depend on: another entry
    assert len(list((tmp_path / ".mmpo-cache").glob("validation-*.json"))) == 3


def test_checking_in_workers_gives_the_verdicts_of_the_main_process(tmp_path, make):
    for case in CASES[:3]:
        case.write(tmp_path / case.name)
    directory = tmp_path / CASES[0].name
    write_lines(directory / "train.jsonl", [*good("train"), *[
        c.row(directory) | {"id": f"bad-{i}"} for i, c in enumerate(CASES[:5]) if c.split == "train"
    ]])  # fmt: skip
    inline = make(directory, "data.on_error=skip").check().report()
    (directory / ".mmpo-cache").rename(tmp_path / "inline-cache")
    workers = make(directory, "data.on_error=skip", "data.num_workers=2").check().report()
    assert workers == inline and inline["skipped"]["count"] == 4


def test_persistent_workers_draw_the_epoch_the_module_sets(tmp_path, make):
    for name in ("red.png", "blue.png"):  # texture, so that two crops differ
        Image.effect_noise((48, 48), 60).convert("RGB").save(tmp_path / name)
    write_lines(tmp_path / "train.jsonl", good("train"))
    write_lines(tmp_path / "val.jsonl", good("val"))
    module = make(tmp_path, "loss=mdpo", "negative_sampler=crop", "data.num_workers=1", "data.shuffle=false",
                  "data.batch_size=4")  # fmt: skip
    loader = module.train_dataloader()
    assert loader.persistent_workers
    pixels = []
    for epoch in (0, 1):
        module.set_epoch(epoch)
        pixels.append(next(iter(loader)).rows[CHOSEN_NEGATIVE].tensors["pixel_values"])
    dataset, collator = module.datasets["train"], module.collators["train"]
    for epoch in (0, 1):
        expected = collator([dataset.example(r, epoch) for r in dataset.records])
        torch.testing.assert_close(pixels[epoch], expected.rows[CHOSEN_NEGATIVE].tensors["pixel_values"])
    assert not torch.equal(pixels[0], pixels[1])
