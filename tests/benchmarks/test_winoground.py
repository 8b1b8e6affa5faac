"""Winoground and NaturalBench-Retrieval: text / image / group scores, strict ties, per-tag numbers."""

import pytest
import torch

from mmpo.benchmarks.naturalbench import NaturalBenchRetrieval
from mmpo.benchmarks.winoground import Winoground, winoground_scores

from .colour_encoder import COLOURS, ColourEncoder
from .fixtures import write_image, write_json, write_jsonl


def test_winoground_scores_by_hand():
    # scores[n, caption, image]
    scores = torch.tensor(
        [
            [[0.9, 0.2], [0.1, 0.8]],  # text yes, image yes -> group yes
            [[0.5, 0.6], [0.4, 0.7]],  # text yes (0.5 > 0.4, 0.7 > 0.6), image no (0.5 < 0.6)
            [[0.5, 0.5], [0.5, 0.5]],  # all ties: nothing
            [[0.3, 0.1], [0.4, 0.2]],  # text no (0.3 < 0.4), image no (0.2 < 0.4)
        ]
    )
    assert winoground_scores(scores) == pytest.approx({"text": 2 / 4, "image": 1 / 4, "group": 1 / 4})


def test_winoground_end_to_end(tmp_path):
    write_jsonl(
        tmp_path / "data" / "examples.jsonl",
        [
            {"id": 0, "caption_0": "red", "caption_1": "blue", "image_0": "ex_0_img_0", "image_1": "ex_0_img_1",
             "collapsed_tag": "Object"},
            # caption 1 names neither image: s11 = s01 = 0 and s11 = s10 = 0, ties -> text and image wrong
            {"id": 1, "caption_0": "red", "caption_1": "green", "image_0": "ex_1_img_0", "image_1": "ex_1_img_1",
             "collapsed_tag": "Relation"},
        ],
    )  # fmt: skip
    for name, colour in [
        ("ex_0_img_0", "red"),
        ("ex_0_img_1", "blue"),
        ("ex_1_img_0", "red"),
        ("ex_1_img_1", "blue"),
    ]:
        write_image(tmp_path / "data" / "images" / f"{name}.png", COLOURS[colour])
    metrics, records = Winoground(str(tmp_path), batch_size=3).evaluate(ColourEncoder())
    assert metrics == pytest.approx(
        {"text": 0.5, "image": 0.5, "group": 0.5, "Object/text": 1.0, "Object/image": 1.0, "Object/group": 1.0,
         "Relation/text": 0.0, "Relation/image": 0.0, "Relation/group": 0.0}
    )  # fmt: skip
    assert records[1]["id"] == "1" and records[1]["scores"][1] == pytest.approx([0.0, 0.0], abs=1e-5)


def test_naturalbench_reads_the_retrieval_zip_layout(tmp_path):
    write_json(
        tmp_path / "metadata.json",
        [
            {
                "index": 0,
                "image_0": "0_0.jpg",
                "image_1": "0_1.jpg",
                "caption_0": "green",
                "caption_1": "blue",
            },
            {"index": 1, "image_0": "1_0.jpg", "image_1": "1_1.jpg", "caption_0": "blue", "caption_1": "red"},
        ],
    )
    # item 0 right both ways; item 1 has its images swapped: every comparison is wrong
    for name, colour in [("0_0", "green"), ("0_1", "blue"), ("1_0", "red"), ("1_1", "blue")]:
        write_image(tmp_path / "images" / f"{name}.jpg", COLOURS[colour])
    benchmark = NaturalBenchRetrieval(str(tmp_path))
    assert [item.id for item in benchmark.items()] == ["0", "1"]
    metrics, _ = benchmark.evaluate(ColourEncoder())
    assert metrics == pytest.approx({"text": 0.5, "image": 0.5, "group": 0.5})
