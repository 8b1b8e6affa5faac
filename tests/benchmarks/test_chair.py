"""CHAIR: the rule-based extractor's rules, the metrics on a hand-worked set, Object HalBench end to end."""

import pytest

from mmpo.benchmarks.base import BenchmarkDataMissing
from mmpo.benchmarks.chair import chair_metrics
from mmpo.benchmarks.coco_objects import COCO_SYNONYMS, CocoObjectExtractor
from mmpo.benchmarks.object_halbench import ObjectHalBench

from .fixtures import write_object_halbench

EXTRACTOR = CocoObjectExtractor()


def categories(caption: str) -> list[str]:
    return [mention.category for mention in EXTRACTOR.mentions(caption)]


def test_synonym_table_has_the_80_coco_categories_and_no_word_twice():
    assert len(COCO_SYNONYMS) == 80
    words = [w for category, synonyms in COCO_SYNONYMS.items() for w in (category, *synonyms)]
    assert len(words) == len(set(words))
    assert {"dining table", "potted plant", "tv", "cell phone", "hair drier", "sports ball"} <= set(
        COCO_SYNONYMS
    )


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # two-word objects are one mention each; "phone" and "dog" do not fire separately
        ("A man holding a cell phone next to a hot dog.", ["person", "cell phone", "hot dog"]),
        ("Two teddy bears on a bed.", ["teddy bear", "bed"]),
        ("Wine glasses on a dining table.", ["wine glass", "dining table"]),
        # 'toilet seat' is a toilet, and any 'seat' in a caption with 'toilet' is dropped
        ("The toilet seat is up.", ["toilet"]),
        ("A seat next to the toilet.", ["toilet"]),
        ("A seat in the park.", ["chair"]),
        # baby / adult animals are the animal, not a person; a lone 'baby' is a person
        ("A baby elephant and an adult giraffe.", ["elephant", "giraffe"]),
        ("A baby sleeping in a crib.", ["person"]),
        # passenger vehicles are the vehicle; a lone 'passenger' is a person
        ("A passenger train arrives.", ["train"]),
        ("A passenger waits.", ["person"]),
        # 'train track' and 'home plate' swallow 'train' and 'plate'
        ("A train on the train track.", ["train"]),
        # 'bow tie' is a tie
        ("A man in a bow tie.", ["person", "tie"]),
        # plurals, irregular plurals via the synonym list, duplicates kept
        ("Two dogs, three buses and people with their children.", ["dog", "bus", "person", "person"]),
        ("A dog chases another dog.", ["dog", "dog"]),
        ("Skis and scissors.", ["skis", "scissors"]),
        ("Nothing here but glass and grass.", []),
    ],
)
def test_extractor_rules(caption, expected):
    assert categories(caption) == expected


# Hand-worked CHAIR set. Ground truth = instance categories ∪ objects parsed from the GT captions:
#   image 1: instances {dog, person}; caption "A man walking a dog on a leash." -> {person, dog}
#   image 2: instances {toilet};      caption "A white toilet in a small bathroom." -> {toilet}
#   image 3: no instances;            caption "A plate of food on a dining table." -> {dining table}
COCO = {
    1: (["dog", "person"], ["A man walking a dog on a leash."]),
    2: (["toilet"], ["A white toilet in a small bathroom."]),
    3: ([], ["A plate of food on a dining table."]),
}
# Responses (image id, text) and their mentions by the rules:
#   r0 (1): man->person, puppy->dog, car, dog            4 mentions, hallucinated: car
#   r1 (2): 'toilet seat'->toilet, sink                  2 mentions, hallucinated: sink
#   r2 (3): table->dining table                          1 mention, none hallucinated
#   r3 (2): no COCO word                                 0 mentions
# CHAIRs = 2 hallucinated responses / 4 = 0.5; CHAIRs_refine = 2 / 3 responses with objects;
# CHAIRi = 2 hallucinated mentions / 7 mentions; recall = (2 + 1 + 1 + 0) / (2 + 1 + 1 + 1) = 0.8;
# avg_words (split on spaces) = (14 + 9 + 4 + 4) / 4 = 7.75.
RESPONSES = [
    (1, "A man and his puppy walk past a red car. The dog looks happy."),
    (2, "A bathroom with a toilet seat and a sink."),
    (3, "Food on a table."),
    (2, "A clean, bright room."),
]
EXPECTED = {"CHAIRs": 0.5, "CHAIRs_refine": 2 / 3, "CHAIRi": 2 / 7, "recall": 0.8, "avg_words": 7.75}


def test_chair_metrics_match_hand_computation():
    truth = {1: {"dog", "person"}, 2: {"toilet"}, 3: {"dining table"}}
    metrics, details = chair_metrics(
        [EXTRACTOR.mentions(text) for _, text in RESPONSES],
        [truth[image_id] for image_id, _ in RESPONSES],
        [text for _, text in RESPONSES],
    )
    assert {k: metrics[k] for k in EXPECTED} == pytest.approx(EXPECTED)
    assert metrics["n_mentions"] == 7
    assert details[0]["hallucinated"] == [["car", "car"]]
    assert details[1]["hallucinated"] == [["sink", "sink"]]


def test_object_halbench_end_to_end(tmp_path):
    rows = [
        (image_id, "Provide a thorough description of the given image.", index != 2)
        for index, (image_id, _) in enumerate(RESPONSES)
    ]
    write_object_halbench(tmp_path, rows, COCO)
    bench = ObjectHalBench(path=str(tmp_path))
    items = bench.items()
    assert [item.meta["image_id"] for item in items] == [1, 2, 3, 2]
    assert items[0].image == str(tmp_path / "images" / "1.jpg")  # decoded from base64
    assert (tmp_path / "images" / "1.jpg").stat().st_size > 0
    assert items[2].image == str(tmp_path / "images" / "COCO_val2014_000000000003.jpg")

    outputs = {item.id: text for item, (_, text) in zip(items, RESPONSES, strict=True)}
    outputs[items[2].id] = "Assistant: " + outputs[items[2].id]  # RLHF-V strips this prefix
    metrics, records = bench.score(items, outputs)
    assert {k: metrics[k] for k in EXPECTED} == pytest.approx(EXPECTED)
    assert records[2]["output"] == "Food on a table."
    assert records[0]["gt_objects"] == ["dog", "person"]
    assert all(record["extractor"] == "rules" for record in records)


def test_object_halbench_missing_annotations(tmp_path):
    write_object_halbench(tmp_path, [(1, "Describe.", True)], COCO)
    (tmp_path / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(BenchmarkDataMissing) as error:
        ObjectHalBench(path=str(tmp_path)).items()
    assert "annotations/captions_val2014.json" in str(error.value)
    assert "cocodataset.org" in str(error.value)
