"""HallusionBench: rule-based correctness codes and aAcc / fAcc / qAcc / easy / hard on a hand-worked set."""

import pytest

from mmpo.benchmarks.hallusionbench import HallusionBench, correctness_code, is_correct

from .fixtures import write_hallusionbench


def record(category, subcategory, visual_input, set_id, figure_id, question_id, gt_answer):
    filename = (
        None
        if visual_input == "0"
        else f"./hallusion_bench/{category}/{subcategory}/{set_id}_{figure_id}.png"
    )
    return {
        "category": category, "subcategory": subcategory, "visual_input": visual_input, "set_id": set_id,
        "figure_id": figure_id, "question_id": question_id, "question": f"Question {set_id}-{figure_id}-{question_id}?",
        "gt_answer_details": "", "gt_answer": gt_answer, "filename": filename,
    }  # fmt: skip


# (record, answer) -> code, correct:
ROWS = [
    (record("VD", "illusion", "1", "0", "0", "0", "1"), "Yes, it is."),  # r1: yes = yes -> '1', correct
    (record("VD", "illusion", "2", "0", "1", "0", "0"), "Yes."),  # r2: yes != no -> '0', wrong
    (record("VD", "illusion", "1", "0", "0", "1", "0"), "No"),  # r3: correct
    (record("VD", "illusion", "2", "0", "1", "1", "1"), "yes"),  # r4: correct
    (
        record("VS", "chart", "0", "0", "0", "0", "1"),
        "I cannot tell without the chart.",
    ),  # r5: '2', VS fig 0 -> correct
    (record("VS", "chart", "1", "0", "1", "0", "1"), "Yes"),  # r6: correct
    (record("VS", "chart", "2", "0", "2", "0", "0"), "Maybe."),  # r7: '2' with a figure -> wrong
]
# aAcc = 5/7 (r1 r3 r4 r5 r6).
# fAcc, figures without VS figure 0: VD_illusion_0_0 {r1, r3} all right; VD_illusion_0_1 {r2, r4} no;
#   VS_chart_0_1 {r6} right; VS_chart_0_2 {r7} no -> 2/4.
# qAcc, question groups: VD_illusion_0_0 {r1, r2} no; VD_illusion_0_1 {r3, r4} right;
#   VS_chart_0_0 {r5, r6, r7} no -> 1/3.
# easy (visual_input != 2): {r1}, {r3}, {r5, r6} all right -> 3/3; hard: {r2} no, {r4} right, {r7} no -> 1/3.
EXPECTED = {"aAcc": 5 / 7, "fAcc": 2 / 4, "qAcc": 1 / 3, "easy_aAcc": 1.0, "hard_aAcc": 1 / 3}


@pytest.mark.parametrize(
    ("answer", "gt", "code"),
    [
        ("Yes.", "1", "1"),
        ("No, it is not.", "1", "0"),
        ("yes and no", "0", "2"),
        ("Unclear", "0", "2"),
        ("no", "0", "1"),
    ],
)
def test_correctness_code(answer, gt, code):
    assert correctness_code(answer, gt) == code


def test_uncertain_counts_only_without_figure_on_vs():
    assert is_correct("2", "VS", "0") and not is_correct("2", "VS", "1") and not is_correct("2", "VD", "0")
    assert not is_correct("2", "VS", "0", uncertain_correct_without_figure=False)


def test_hallusionbench_end_to_end(tmp_path):
    write_hallusionbench(tmp_path, [r for r, _ in ROWS])
    bench = HallusionBench(path=str(tmp_path), prompt_suffix=" Yes or No?")
    items = bench.items()
    assert items[0].id == "VD_illusion_0_0_0"
    assert items[0].image == str(tmp_path / "hallusion_bench/VD/illusion/0_0.png")
    assert items[4].image is None  # VS question without a figure is text-only
    assert items[0].prompt == "Question 0-0-0? Yes or No?"
    outputs = {item.id: answer for item, (_, answer) in zip(items, ROWS, strict=True)}
    metrics, records = bench.score(items, outputs)
    assert metrics == pytest.approx(EXPECTED)
    assert [r["code"] for r in records] == ["1", "0", "1", "1", "2", "1", "2"]

    strict = HallusionBench(path=str(tmp_path), uncertain_correct_without_figure=False)
    metrics, _ = strict.score(strict.items(), outputs)
    assert metrics["aAcc"] == pytest.approx(4 / 7)
