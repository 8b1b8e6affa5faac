"""MMVP-VLM: the official pairing, ground truth by qid parity, and its tie asymmetry."""

import csv

import pytest
import torch

from mmpo.benchmarks.mmvp_vlm import MMVPVLM, mmvp_vlm_correct

from .colour_encoder import COLOURS, ColourEncoder
from .fixtures import write_image


def test_pair_correct_by_hand_with_the_official_tie_rule():
    scores = torch.tensor(
        [
            [[0.9, 0.1], [0.2, 0.8]],  # both right
            [[0.9, 0.1], [0.5, 0.5]],  # second statement tied -> predicts image b = its truth: right
            [[0.5, 0.5], [0.2, 0.8]],  # first statement tied -> predicts b, truth a: wrong
            [[0.9, 0.1], [0.9, 0.1]],  # second statement picks a: wrong
        ]
    )
    assert mmvp_vlm_correct(scores, torch.tensor([1, 3, 5, 7])).tolist() == [True, True, False, False]


def test_mmvp_vlm_end_to_end(tmp_path):
    rows = [(1, "Color", "red"), (2, "Color", "blue"), (3, "Texts", "green"), (4, "Texts", "green")]
    with (tmp_path / "Questions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Question ID", "Type", "Statement"])
        writer.writerows(rows)
    for qid, pattern, colour in [
        (1, "Color", "red"),
        (2, "Color", "blue"),
        (3, "Texts", "red"),
        (4, "Texts", "blue"),
    ]:
        write_image(tmp_path / "MLLM_VLM Images" / pattern / f"{qid}.jpg", COLOURS[colour])
    benchmark = MMVPVLM(str(tmp_path))
    assert benchmark.items()[0].meta["captions"] == ["a photo of red", "a photo of blue"]
    metrics, records = benchmark.evaluate(ColourEncoder())
    # pair 3-4: "green" matches neither image, a tie -> statement 3 predicts image 4: wrong
    assert metrics == pytest.approx(
        {"pair_accuracy": 0.5, "Color/pair_accuracy": 1.0, "Texts/pair_accuracy": 0.0}
    )
    assert [r["pair_accuracy"] for r in records] == [True, False]
