"""Texts as yes/no questions: one per shapes object, the pair's score the product of the answers."""

from __future__ import annotations

import pytest
import torch

from mmpo.data import shapes
from mmpo.embedding.questions import QUESTIONS, QuestionScorer


class TableScorer:
    """Stands in for the AlignmentScorer: a fixed yes-probability per question, lookups counted."""

    def __init__(self, answers: dict[str, float]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, str | None]] = []
        self.hits, self.misses = 0, 0

    def __call__(self, images, texts, image_keys=None):
        keys = image_keys or [None] * len(texts)
        self.asked += list(zip(images, texts, keys, strict=True))
        self.misses += len(texts)
        return torch.tensor([self.answers[t] for t in texts])


def test_shapes_objects_asks_about_every_object_as_the_sft_records_do():
    scene = shapes.Scene(
        "x",
        (
            shapes.ShapeObject("red", "circle", "top left"),
            shapes.ShapeObject("orange", "square", "bottom right"),
        ),
    )
    caption = shapes.describe(scene.objects)
    assert QUESTIONS["shapes_objects"](caption) == ["a red circle", "an orange square"]
    prompt = "Is there {text} in the image? Answer yes or no."
    question = shapes.question("x", "qa", "img.png", {}, "orange square", True)["prompt"]
    assert prompt.format(text=QUESTIONS["shapes_objects"](caption)[1]) == question


def test_the_score_is_the_product_of_the_answers_of_its_questions():
    table = TableScorer({"a red circle": 0.9, "a blue square": 0.5, "a green triangle": 0.2})
    scorer = QuestionScorer(table, "shapes_objects")
    texts = ["A red circle at the top left and a blue square at the top right.", "A green triangle."]
    scores = scorer(["i0.png", "i1.png"], texts, ["k0", "k1"])
    assert scores.tolist() == pytest.approx([0.9 * 0.5, 0.2])
    # each question goes with its own text's image and cache key
    assert table.asked == [
        ("i0.png", "a red circle", "k0"),
        ("i0.png", "a blue square", "k0"),
        ("i1.png", "a green triangle", "k1"),
    ]
    assert scorer.lookups == (0, 3)


def test_text_questions_pass_the_text_through():
    table = TableScorer({"A red circle.": 0.7})
    assert QuestionScorer(table, "text")(["i.png"], ["A red circle."]).tolist() == pytest.approx([0.7])


def test_a_text_without_question_and_an_unknown_kind_fail_with_the_options():
    with pytest.raises(ValueError, match="no question in the text 'Nothing here.'"):
        QuestionScorer(TableScorer({}), "shapes_objects")(["i.png"], ["Nothing here."])
    with pytest.raises(ValueError, match=r"questions='objects'; allowed: \['text', 'shapes_objects'\]"):
        QuestionScorer(TableScorer({}), "objects")
