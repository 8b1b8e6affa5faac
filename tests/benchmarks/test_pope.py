"""POPE: the official answer parser, the metrics on hand-worked answers, and an end-to-end run."""

import pytest

from mmpo.benchmarks.base import BenchmarkDataMissing
from mmpo.benchmarks.pope import POPE, parse_pope_answer, pope_metrics

from .fixtures import write_pope


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("", "yes"),  # empty answers count as yes
        ("Yes, there is a dog.", "yes"),
        ("No, there is no dog.", "no"),
        ("There is not a dog in the image.", "no"),
        ("no,", "no"),  # commas are deleted before splitting
        ("NO", "yes"),  # only the exact tokens No / no / not count
        ("Nope", "yes"),
        ("There isn't one", "yes"),
        ("Yes. But there is no cat.", "yes"),  # only the first sentence is read
        ("I am not sure. Yes.", "no"),
        ("garbled ###", "yes"),
    ],
)
def test_parse_pope_answer_follows_the_official_rule(answer, expected):
    assert parse_pope_answer(answer) == expected


# (answer, label) and how the official rule reads each answer:
RANDOM_ROWS = [
    ("Yes.", "yes"),  # yes -> TP
    ("", "yes"),  # empty -> yes -> TP
    ("No, I don't see one.", "yes"),  # no -> FN
    ("Yes there is.", "no"),  # yes -> FP
    ("There is not.", "no"),  # no -> TN
    ("no", "no"),  # no -> TN
    ("NO", "no"),  # yes -> FP
    ("I think so. But no.", "yes"),  # first sentence has no 'no' -> yes -> TP
]
# By hand: TP=3, FN=1, FP=2, TN=2, N=8 -> accuracy 5/8, precision 3/5, recall 3/4,
# F1 = 2*(3/5)*(3/4)/(3/5+3/4) = 0.9/1.35 = 2/3, yes_ratio = 5/8.
RANDOM_EXPECTED = {"accuracy": 5 / 8, "precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "yes_ratio": 5 / 8}
# Adversarial: ("No", no) -> TN, ("No", yes) -> FN: accuracy 1/2; no yes predictions -> P = R = F1 = 0.
ADVERSARIAL_ROWS = [("No", "no"), ("No", "yes")]


def test_pope_metrics_match_hand_computation():
    predictions = [parse_pope_answer(answer) for answer, _ in RANDOM_ROWS]
    metrics = pope_metrics(predictions, [label for _, label in RANDOM_ROWS])
    assert metrics == pytest.approx(RANDOM_EXPECTED)


def test_pope_end_to_end_matches_answers_by_question_id(tmp_path):
    # Both splits reuse question ids 1, 2: outputs are keyed by "<split>/<question_id>".
    write_pope(
        tmp_path,
        {
            "random": [(i + 1, "dog", label) for i, (_, label) in enumerate(RANDOM_ROWS)],
            "adversarial": [(i + 1, "cat", label) for i, (_, label) in enumerate(ADVERSARIAL_ROWS)],
        },
    )
    bench = POPE(path=str(tmp_path), splits=["random", "adversarial"], prompt_suffix=" Answer briefly.")
    items = bench.items()
    assert [item.id for item in items][:2] == ["random/1", "random/2"] and items[-1].id == "adversarial/2"
    assert items[0].prompt == "Is there a dog in the image? Answer briefly."
    assert items[0].image == str(tmp_path / "val2014" / "COCO_val2014_000000000001.jpg")

    answers = {f"random/{i + 1}": answer for i, (answer, _) in enumerate(RANDOM_ROWS)}
    answers |= {f"adversarial/{i + 1}": answer for i, (answer, _) in enumerate(ADVERSARIAL_ROWS)}
    outputs = dict(reversed(list(answers.items())))  # order must not matter
    metrics, records = bench.score(items, outputs)

    for key, value in RANDOM_EXPECTED.items():
        assert metrics[f"random/{key}"] == pytest.approx(value)
    assert metrics["adversarial/accuracy"] == pytest.approx(0.5)
    assert metrics["adversarial/f1"] == 0.0
    assert metrics["avg/accuracy"] == pytest.approx((5 / 8 + 1 / 2) / 2)
    assert metrics["avg/f1"] == pytest.approx((2 / 3 + 0) / 2)
    by_id = {r["id"]: r for r in records}
    assert by_id["random/2"]["output"] == "" and by_id["random/2"]["parsed"] == "yes"
    assert by_id["adversarial/2"]["correct"] is False


def test_pope_limit_and_missing_output(tmp_path):
    write_pope(tmp_path, {"random": [(1, "dog", "yes"), (2, "cat", "no"), (3, "cup", "no")]})
    bench = POPE(path=str(tmp_path), splits=["random"], limit=2)
    items = bench.items()
    assert len(items) == 2
    with pytest.raises(KeyError, match="random/2"):
        bench.score(items, {"random/1": "Yes"})


def test_pope_missing_split_file_names_it(tmp_path):
    write_pope(tmp_path, {"random": [(1, "dog", "yes")]})
    with pytest.raises(BenchmarkDataMissing) as error:
        POPE(path=str(tmp_path)).items()
    message = str(error.value)
    assert "coco_pope_popular.json" in message and "coco_pope_adversarial.json" in message
    assert "Missing now: coco_pope_popular.json, coco_pope_adversarial.json" in message


def test_pope_rejects_unknown_split():
    with pytest.raises(ValueError, match="splits"):
        POPE(splits=["random", "hard"])
