"""MMVP: rule-based option matching and pair accuracy."""

import pytest

from mmpo.benchmarks.mmvp import MMVP, match_option, parse_options

from .fixtures import write_mmvp

OPTIONS = parse_options("(a) Open (b) Closed")


def test_parse_options():
    assert OPTIONS == {"a": "Open", "b": "Closed"}
    assert parse_options("(a) Left side (b) Right side") == {"a": "Left side", "b": "Right side"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("(b)", "b"),
        ("(b) Closed", "b"),
        ("b", "b"),
        ("B.", "b"),
        ("Option b", "b"),
        ("Answer: B", "b"),
        ("The door is closed.", "b"),
        ("A dog is next to the open door.", "a"),  # the article 'A' is no option letter
        ("It is not open but closed.", None),  # both options named
        ("(a) Open (b) Closed", None),  # both letters
        ("I cannot see a door.", None),
        ("", None),
    ],
)
def test_match_option(answer, expected):
    assert match_option(answer, OPTIONS) == expected


ROWS = [
    ("Is the door open or closed?", "(a) Open (b) Closed", "(a)"),
    ("Is the door open or closed?", "(a) Open (b) Closed", "(b)"),
    ("Which side is the dog on?", "(a) Left (b) Right", "(a)"),
    ("Which side is the dog on?", "(a) Left (b) Right", "(b)"),
]


def test_mmvp_pair_accuracy_end_to_end(tmp_path):
    write_mmvp(tmp_path, ROWS)
    bench = MMVP(path=str(tmp_path))
    items = bench.items()
    assert items[0].prompt == "Is the door open or closed? (a) Open (b) Closed"
    assert items[3].image == str(tmp_path / "MMVP Images" / "4.jpg")
    # q1 right, q2 right -> pair 1 right; q3 right, q4 wrong -> pair 2 wrong.
    outputs = {"1": "(a) Open", "2": "The door is closed.", "3": "Left.", "4": "a"}
    metrics, records = bench.score(items, outputs)
    assert metrics == pytest.approx({"pair_accuracy": 1 / 2, "accuracy": 3 / 4})
    assert [r["parsed"] for r in records] == ["a", "b", "a", "a"]

    # limit=3 leaves pair 2 incomplete (q3 alone, answered wrongly here): only complete pairs count.
    limited = MMVP(path=str(tmp_path), limit=3)
    metrics, _ = limited.score(limited.items(), outputs | {"3": "Right"})
    assert metrics == pytest.approx({"pair_accuracy": 1.0, "accuracy": 2 / 3})
