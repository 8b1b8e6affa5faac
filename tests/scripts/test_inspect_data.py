"""scripts/inspect_data.py: lengths as training builds them, the share a max length cuts, the PNGs."""

from __future__ import annotations

import importlib.util
import json

import pytest
from PIL import Image

from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava

from ..conftest import ROOT

spec = importlib.util.spec_from_file_location("inspect_data", ROOT / "scripts" / "inspect_data.py")
inspect_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inspect_data)

LONG = " ".join(["a red circle"] * 30)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_llava()[1]


def test_summary_counts_lengths_and_cuts(tmp_path, processor):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    records = [
        {"id": "short", "images": ["red.png"], "prompt": "Describe the image.", "chosen": "A red square.",
         "rejected": "A blue square.", "meta": {}},
        {"id": "long", "images": ["red.png", "red.png"], "prompt": "Describe both.", "chosen": LONG,
         "rejected": "Two squares.", "context": "From a sticker sheet.", "meta": {}},
        {"id": "text", "images": [], "prompt": "Say hi.", "chosen": "Hi.", "meta": {}},
    ]  # fmt: skip
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    family = get_family("llava")
    tokenizer = processor.tokenizer

    def prompt_tokens(text, n):  # what the processor makes of the templated prompt, image tokens expanded
        images = [Image.open(tmp_path / "red.png").convert("RGB")] * n or None
        return len(processor(text=[family.chat_prompt(processor, text, n)], images=images)["input_ids"][0])

    long_prompt = prompt_tokens("Describe both.\nContext:\nFrom a sticker sheet.", 2)
    long_chosen = len(tokenizer(" " + LONG, add_special_tokens=False)["input_ids"]) + 1
    max_length = long_prompt + long_chosen - 1  # only the long record does not fit
    assert inspect_data.main(["--input", str(tmp_path / "train.jsonl"), "--output", str(tmp_path / "out"),
                              "--max-length", str(max_length)]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["records"] == 3
    assert summary["images_per_record"] == {"0": 1, "1": 1, "2": 1}
    assert summary["rejected_per_record"] == {"0": 1, "1": 2}
    assert summary["with_context"] == 1
    assert (
        summary["tokens"]["image"]["max"] == 2 * 16 and summary["tokens"]["image"]["min"] == 0
    )  # (32/8)^2 per image
    assert summary["tokens"]["prompt"]["max"] == long_prompt
    assert summary["tokens"]["prompt"]["min"] == prompt_tokens("Say hi.", 0)
    assert summary["tokens"]["chosen"]["max"] == long_chosen
    assert summary["cut"] == {"count": 1, "share": 1 / 3, "prompt_alone_too_long": 0, "ids": ["long"]}
    for name in ("lengths.png", "contact_sheet.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.width > 500


def test_a_missing_input_is_a_clear_error(tmp_path, capsys):
    assert inspect_data.main(["--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
