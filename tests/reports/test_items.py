"""Records of the real scorers, read as report items: verdict, reference, what was parsed, marked words."""

from __future__ import annotations

import random

import pytest

from mmpo.benchmarks.amber import AmberLexicon, score_generative
from mmpo.benchmarks.base import EvalItem
from mmpo.benchmarks.hallusionbench import HallusionBench
from mmpo.benchmarks.mmhal import MMHalBench
from mmpo.benchmarks.mmvp import MMVP
from mmpo.benchmarks.shapes import ShapesCHAIR, ShapesPOPE
from mmpo.data import shapes
from mmpo.reports.items import mark, sample, view

WORLD = {"num_scenes": 40, "seed": 0, "image_size": 64}


def test_shapes_chair_records_mark_the_hallucinated_words_and_list_the_objects(shapes_dir):
    bench = ShapesCHAIR(path=str(shapes_dir), world=WORLD)
    first, second = bench.items()[:2]
    present = sorted(first.meta["objects"])
    absent = next(name for name in shapes.all_object_names() if name not in present)
    answer = f"A {present[0]} beside two {absent}s."
    _, records = bench.score(
        [first, second], {first.id: answer, second.id: f"A {sorted(second.meta['objects'])[0]}."}
    )
    wrong, right = view(records[0]), view(records[1])
    assert wrong.verdict == "wrong" and wrong.hallucinated == (absent,)
    assert wrong.segments == ((f"A {present[0]} beside two ", False), (f"{absent}s", True), (".", False))
    assert wrong.reference == "objects: " + ", ".join(present)
    assert right.verdict == "right" and right.hallucinated == () and all(not m for _, m in right.segments)


def test_pope_records_mark_a_wrong_answer_whole(shapes_dir):
    bench = ShapesPOPE(path=str(shapes_dir), world=WORLD, splits=["random"])
    items = bench.items()
    yes_item = next(i for i in items if i.meta["label"] == "yes")
    no_item = next(i for i in items if i.meta["label"] == "no")
    _, records = bench.score([yes_item, no_item], {yes_item.id: "Yes, there is.", no_item.id: "Yes"})
    right, wrong = view(records[0]), view(records[1])
    assert (right.verdict, right.parsed, right.reference) == ("right", "yes", "yes")
    assert right.segments == (("Yes, there is.", False),)
    assert (wrong.verdict, wrong.parsed, wrong.reference) == ("wrong", "yes", "no")
    assert wrong.segments == (("Yes", True),) and wrong.wrong


def test_amber_generative_counts_name_the_hallucinated_nouns():
    lexicon = AmberLexicon({"dog": ["puppy"], "cat": [], "frisbee": []}, frozenset())
    counts = score_generative(["dog", "cat", "cat", "frisbee"], ["dog"], ["cat"], lexicon)
    record = {
        "id": "1",
        "prompt": "Describe this image.",
        "output": "A dog, two cats and a frisbee.",
        "type": "generative",
        **counts,
    }  # fmt: skip  (as AMBER.score builds it)
    item = view(record)
    assert item.verdict == "wrong" and item.hallucinated == ("cat", "frisbee")
    assert [text for text, marked in item.segments if marked] == ["cats", "frisbee"]
    assert item.reference == "truth objects named: dog (1 of 1)"


def test_amber_discriminative_mmvp_hallusionbench_and_mmhal_verdicts(tmp_path):
    amber = view({"id": "1005", "prompt": "Is there a dog?", "output": "No", "parsed": "no", "label": "yes"})
    assert (amber.verdict, amber.reference) == ("wrong", "yes")

    mmvp = MMVP()
    item = EvalItem("1", None, "Which way? (a) left (b) right", {"options": {"a": "left", "b": "right"},
                                                               "answer": "b", "pair": 0})  # fmt: skip
    _, (record,) = mmvp.score([item], {"1": "(b) right"})
    assert (view(record).verdict, view(record).parsed, view(record).reference) == ("right", "b", "(b)")

    meta = {"category": "VD", "subcategory": "chart", "visual_input": "1", "set_id": "0", "figure_id": "0",
            "question_id": "0", "gt_answer": "0"}  # fmt: skip
    _, (record,) = HallusionBench().score([EvalItem("q", None, "Is it red?", meta)], {"q": "Yes it is."})
    assert (view(record).verdict, view(record).parsed, view(record).reference) == ("wrong", "yes", "no")

    class Judge:
        def __init__(self, replies):
            self.replies = list(replies)

        def __call__(self, prompt):
            return self.replies.pop(0)

        def describe(self):
            return {"backend": "test"}

    bench = MMHalBench(judge=Judge(["Rating: 2", "Rating: 5", "no rating"]))
    meta = {"question": "Q?", "question_type": "attribute", "image_content": ["Dog"], "gt_answer": "A."}
    items = [EvalItem(str(i), None, "Q?", meta) for i in range(3)]
    _, records = bench.score(items, {"0": "a", "1": "b", "2": "c"})
    assert [(view(r).verdict, view(r).parsed) for r in records] == [
        ("wrong", "rating 2"),  # 0-2: the rubric's "with hallucination"
        ("right", "rating 5"),
        ("wrong", "unparsed judge reply"),  # scored 0, as the reference does
    ]


def test_alt_text_records_show_their_reference_without_a_verdict():
    record = {
        "id": "7",
        "prompt": "Alt-text?",
        "output": "a red circle",
        "reference": "a red disc",
        "cider": 0.0,
    }
    item = view(record)
    assert (
        item.verdict is None
        and item.reference == "a red disc"
        and item.segments == (("a red circle", False),)
    )


def test_mark_matches_whole_words_case_insensitively_with_plurals():
    segments = mark("Red cubes, a red cube and a redcube; boxes.", ["red cube", "box"])
    assert segments == (
        ("Red cubes", True),
        (", a ", False),
        ("red cube", True),
        (" and a redcube; ", False),
        ("boxes", True),
        (".", False),
    )
    assert mark("", ["x"]) == (("", False),) and mark("a b", []) == (("a b", False),)


def test_sample_is_seeded_ordered_and_bounded():
    records = [{"id": str(i)} for i in range(50)]
    drawn = sample(records, 7, seed=3)
    assert drawn == sample(records, 7, seed=3) and len(drawn) == 7
    indices = [int(r["id"]) for r in drawn]
    assert indices == sorted(random.Random(3).sample(range(50), 7))  # kept in the records' order
    assert sample(records, 7, seed=4) != drawn
    assert sample(records[:5], 7, seed=3) == records[:5]
    with pytest.raises(ValueError, match="report.items"):
        sample(records, 0, seed=0)
