"""MMHal-Bench: strict rating parser, metrics on hand-worked ratings, end to end with judges."""

import pytest

from mmpo.benchmarks.judge import OpenAIJudge
from mmpo.benchmarks.mmhal import JUDGE_TEMPLATE, MMHalBench, mmhal_metrics, parse_rating

from .chat_stub import stub_server
from .fixtures import write_mmhal


@pytest.mark.parametrize(
    ("reply", "strict", "tolerant"),
    [
        ("The answer matches the labels.\nRating: 5", 5, 5),
        ("rating: 0", 0, 0),  # case-insensitive
        ("Rating: 6, very informative", 6, 6),
        ("Rating: 5. To repeat: Rating: 5", 5, 5),  # the same rating twice is one hit
        ("Rating: 5\nOn reflection, Rating: 4", None, None),  # two different ratings: unparsed
        ("Score: 5", None, None),  # no rating at all: unparsed
        ("**Rating:** 5", None, 5),  # Markdown defeats the official parser, not the tolerant one
        ("Rating: **3**", None, 3),
    ],
)
def test_parse_rating_needs_exactly_one_rating(reply, strict, tolerant):
    assert parse_rating(reply) == strict
    assert parse_rating(reply, tolerant=True) == tolerant


def test_mmhal_metrics_count_unparsed_as_zero():
    # ratings 5, unparsed, 2, 6, 3 -> scores 5, 0, 2, 6, 3: mean 16/5; below 3 (3 is not): two of five.
    metrics = mmhal_metrics(
        [5, None, 2, 6, 3], ["attribute", "adversarial", "attribute", "counting", "relation"]
    )
    assert metrics == pytest.approx(
        {"score": 3.2, "hallucination_rate": 0.4, "unparsed": 1.0, "score/attribute": 3.5,
         "score/adversarial": 0.0, "score/counting": 6.0, "score/relation": 3.0}
    )  # fmt: skip


RECORDS = [
    {
        "question_type": question_type,
        "question_topic": "animal",
        "image_id": f"img{index}",
        "image_src": f"https://example.invalid/photos/{index}_abc_o.jpg",
        "image_content": ["Dog", "Animal"],
        "question": f"Question {index}?",
        "gt_answer": f"Reference {index}.",
        "model_answer": "",
    }
    for index, question_type in enumerate(["attribute", "adversarial", "attribute", "counting"])
]


class ScriptedJudge:
    """Replies by the response text found in the prompt; records every prompt."""

    def __init__(self, replies):
        self.replies = replies
        self.prompts = []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        return next(reply for response, reply in self.replies.items() if f"\n{response}\n" in prompt)

    def describe(self):
        return {"backend": "scripted"}


def test_mmhal_end_to_end_with_a_judge(tmp_path):
    write_mmhal(tmp_path, RECORDS)
    judge = ScriptedJudge(
        {
            "answer zero": "Good. Rating: 5",
            "answer one": "No verdict.",
            "answer two": "Rating: 2",
            "answer three": "**Rating:** 6",
        }
    )
    bench = MMHalBench(path=str(tmp_path), judge=judge, tolerant_parser=True)
    items = bench.items()
    assert items[1].image == str(tmp_path / "images" / "1_abc_o.jpg")
    outputs = {
        item.id: f"answer {word}" for item, word in zip(items, ["zero", "one", "two", "three"], strict=True)
    }
    metrics, records = bench.score(items, outputs)
    # strict: 5, unparsed->0, 2, unparsed->0 -> mean 7/4, three of four below 3
    assert metrics["score"] == pytest.approx(7 / 4)
    assert metrics["hallucination_rate"] == pytest.approx(3 / 4)
    assert metrics["unparsed"] == 2
    assert metrics["score/attribute"] == pytest.approx(3.5)
    # tolerant: the Markdown rating of item 3 now reads 6 -> mean 13/4
    assert metrics["score_tolerant"] == pytest.approx(13 / 4)
    assert records[1]["parsed"] is False and records[1]["rating"] is None
    assert records[0]["judge"] == {"backend": "scripted"}
    prompt = judge.prompts[0]
    assert "Dog, Animal" in prompt and "Question 0?" in prompt and "Reference 0." in prompt
    assert "Rating: N" in prompt


def test_mmhal_with_openai_judge_on_local_stub(tmp_path):
    write_mmhal(tmp_path, RECORDS[:2])
    with stub_server([(200, "Rating: 4"), (200, "Rating: 1")]) as stub:
        bench = MMHalBench(path=str(tmp_path), judge=OpenAIJudge(stub.base_url, model="judge", timeout=5))
        items = bench.items()
        metrics, records = bench.score(items, {item.id: "An answer." for item in items})
    assert [r["rating"] for r in records] == [4, 1]
    assert metrics["score"] == pytest.approx(2.5) and metrics["hallucination_rate"] == pytest.approx(0.5)
    assert "An answer." in stub.requests[0]["body"]["messages"][0]["content"]


def test_mmhal_needs_a_judge_and_a_complete_template(tmp_path):
    write_mmhal(tmp_path, RECORDS[:1])
    bench = MMHalBench(path=str(tmp_path))
    with pytest.raises(ValueError, match="benchmark.judge"):
        bench.score(bench.items(), {"0": "x"})
    template = tmp_path / "official.txt"
    template.write_text("{image_content} {question} {gt_answer}")
    with pytest.raises(ValueError, match="response"):
        MMHalBench(judge_template=str(template))
    assert all(
        field in JUDGE_TEMPLATE for field in ("{image_content}", "{question}", "{gt_answer}", "{response}")
    )
