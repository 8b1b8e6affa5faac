"""CHAIR: equal to both official codes on 34 responses, the extractor's rules, hand-worked metrics, end to end."""

import inflect
import nltk
import pytest
from nltk.stem import WordNetLemmatizer

from mmpo.benchmarks.base import BenchmarkDataMissing
from mmpo.benchmarks.chair import chair_metrics
from mmpo.benchmarks.coco_objects import COCO_SYNONYMS, CocoObjectExtractor, ObjectMention
from mmpo.benchmarks.nltk_data import INSTALL_LINE, NltkDataMissing
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
    assert all(record["extractor"] == "rules/rlhf_v" for record in records)


def test_object_halbench_missing_annotations(tmp_path):
    write_object_halbench(tmp_path, [(1, "Describe.", True)], COCO)
    (tmp_path / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(BenchmarkDataMissing) as error:
        ObjectHalBench(path=str(tmp_path)).items()
    assert "annotations/captions_val2014.json" in str(error.value)
    assert "cocodataset.org" in str(error.value)


# --- equality with the official codes --------------------------------------------------------------

# The hard-coded double words of LisaAnne/Hallucination utils/chair.py (its duplicates and the
# three-word entry included).
ORIGINAL_DOUBLE_WORDS = [
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "hot dog", "teddy bear", "home plate",
    "train track",
]  # fmt: skip
ANIMALS = [
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
]


def synonym_lines(refine: bool) -> list[str]:
    """The official synonym files as text: ``synonyms.txt`` spells two entries with a leading space
    and lists "iPhone" and "stove top oven"; ``synonyms_refine.txt`` adds four synonyms."""
    extra = {"cell phone": ["iPhone"], "oven": ["stove top oven"]}
    if refine:
        extra |= {
            "person": ["brother", "pedestrian"],
            "dining table": ["coffee table"],
            "remote": ["remote control"],
        }
    lines = [
        ", ".join([category, *words, *extra.get(category, [])]) for category, words in COCO_SYNONYMS.items()
    ]
    if not refine:
        lines = [
            line.replace(", motor bike", ",  motor bike").replace(", cheesecake", ",  cheesecake")
            for line in lines
        ]
    return [line + "\n" for line in lines]


class OfficialChair:
    """The CHAIR class of both official codes, restated: ``refine=False`` is LisaAnne/Hallucination's
    (pattern's singularize, here inflect), ``refine=True`` RLHF-V's rule path (WordNet lemmas)."""

    def __init__(self, refine: bool):
        self.refine = refine
        engine, lemmatizer = inflect.engine(), WordNetLemmatizer()
        self.singular = lemmatizer.lemmatize if refine else (lambda w: engine.singular_noun(w) or w)
        synonyms = [line.strip().split(", ") for line in synonym_lines(refine)]
        if refine:
            synonyms = [[s.strip() for s in synonym] for synonym in synonyms]
        self.objects, self.inverse = set(), {}
        for synonym in synonyms:
            self.objects.update(synonym)
            self.inverse.update({s: synonym[0] for s in synonym})
        if refine:
            doubles = [w for w in self.inverse if len(w.strip().split(" ")) >= 2] + [
                "home plate",
                "train track",
            ]
        else:
            doubles = ORIGINAL_DOUBLE_WORDS
        self.double = {w: w for w in doubles}
        for animal in ANIMALS:
            self.double[f"baby {animal}"] = animal
            self.double[f"adult {animal}"] = animal
        for vehicle in ["jet", "train"]:
            self.double[f"passenger {vehicle}"] = vehicle
        self.double |= {"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"}

    def caption_to_words(self, caption):
        words = [self.singular(w) for w in nltk.word_tokenize(caption.lower())]
        merged, i = [], 0
        while i < len(words):
            pair = " ".join(words[i : i + 2])
            if pair in self.double:
                merged.append(self.double[pair])
                i += 2
            else:
                merged.append(words[i])
                i += 1
        if "toilet" in merged and "seat" in merged:
            merged = [w for w in merged if w != "seat"]
        words = [w for w in merged if w in self.objects]
        return words, [self.inverse[w] for w in words]

    def ground_truth(self, coco):
        return {
            image_id: {self.inverse[name] for name in names}
            | {node for caption in captions for node in self.caption_to_words(caption)[1]}
            for image_id, (names, captions) in coco.items()
        }

    def compute_chair(self, captions, truth):
        hallucinated_caps = hallucinated_words = coco_words = coco_caps = recalled = gt_words = n_words = 0
        generated = []
        for image_id, caption in captions:
            caption = caption.replace("Assistant:", "").strip()
            words, nodes = self.caption_to_words(caption)
            generated.append([[word, node] for word, node in zip(words, nodes, strict=True)])
            n_words += len(caption.strip().split(" "))
            gt_words += len(truth[image_id])
            coco_words += len(nodes)
            wrong = [node for node in nodes if node not in truth[image_id]]
            hallucinated_words += len(wrong)
            hallucinated_caps += bool(wrong)
            recalled += len({node for node in nodes if node in truth[image_id]})
            coco_caps += len(words) > 0
        metrics = {"CHAIRs": hallucinated_caps / len(captions), "CHAIRi": hallucinated_words / coco_words}
        if self.refine:
            metrics |= {
                "CHAIRs_refine": hallucinated_caps / coco_caps,
                "recall": recalled / gt_words,
                "avg_words": n_words / len(captions),
            }
        return metrics, generated


# Ground truth: COCO instance categories and captions of four images.
OFFICIAL_COCO = {
    1: (["person", "dog", "bus"], ["A man walking a dog next to a bus."]),
    2: (["tv", "remote", "couch"], ["A living room with a television and a sofa."]),
    3: (["dining table", "knife", "wine glass", "cake"], ["A cake on a table with glasses."]),
    4: ([], ["A train on the tracks near a platform."]),
}
# Responses covering what differs between plural handlings and between the two codes.
OFFICIAL_RESPONSES = [
    "Two men and their grandchildren wait for the buses near a bus stop.",
    "A couple of tvs and a TV stand with remote controls.",
    "Knives, forks and a wine glass on the dining table.",
    "Three collies and two magpies in the yard.",
    "A man rides a motor bike past a motorcycle.",
    "A slice of cheesecake and a cake on a coffee table.",
    "A baby elephant walks with an adult giraffe.",
    "A passenger train at the station; passengers wait on the platform.",
    "The toilet seat is up next to a chair.",
    "A seat in the park near a bench.",
    "A batter at home plate swings a baseball bat.",
    "A train on the train track.",
    "A man in a bow tie holds a cell phone.",
    "Wine glasses and bottles at a party.",
    "Mr. Smith's dog sleeps on the U.S. flag.",
    "People and children with their dogs; a dog chases another dog.",
    "",
    "A clean, bright room.",
    "Mice and geese near oxen and cattle.",
    "A hot dog and a teddy bear.",
    "Traffic lights and a stop sign at the corner.",
    "Women on skis, a snowboard and scissors.",
    "A woman using a laptop computer and a mouse.",
    "A sofa, a couch and a loveseat.",
    "Sheep, lambs and a goat in a field.",
    "The pedestrian and his brother cross the street.",
    "Surfers carry surfboards to the sea.",
    "A kite flies over the beach. Dogs run.",
    "An iPhone and a smartphone on a desk.",
    "Tennis rackets and a tennis ball.",
    "A stove top oven in the kitchen.",
    "Buses, trucks and cars.",
    "A dog. A Dog. DOGS.",
    "Assistant: A cat on a keyboard.",
]


@pytest.mark.parametrize("variant", ["rlhf_v", "original"])
def test_object_halbench_equals_the_official_chair(variant, tmp_path):
    assert len(OFFICIAL_RESPONSES) >= 30
    image_ids = [1 + index % 4 for index in range(len(OFFICIAL_RESPONSES))]
    write_object_halbench(tmp_path, [(i, "Describe.", False) for i in image_ids], OFFICIAL_COCO)
    bench = ObjectHalBench(path=str(tmp_path), variant=variant)
    items = bench.items()
    metrics, records = bench.score(
        items, {item.id: text for item, text in zip(items, OFFICIAL_RESPONSES, strict=True)}
    )

    official = OfficialChair(refine=variant == "rlhf_v")
    expected, generated = official.compute_chair(
        list(zip(image_ids, OFFICIAL_RESPONSES, strict=True)), official.ground_truth(OFFICIAL_COCO)
    )
    assert {key: metrics[key] for key in expected} == pytest.approx(expected, abs=1e-6)
    assert [record["mentions"] for record in records] == generated
    assert [record["gt_objects"] for record in records] == [
        sorted(official.ground_truth(OFFICIAL_COCO)[i]) for i in image_ids
    ]


def test_variants_differ_where_the_official_codes_do():
    rlhf_v, original = CocoObjectExtractor("rlhf_v"), CocoObjectExtractor("original")
    # WordNet: "grandchildren" -> grandchild, the singular "bus" stays; inflect (for pattern): "bus" -> "bu"
    assert [m.category for m in rlhf_v.mentions("grandchildren near a bus")] == ["person", "bus"]
    assert [m.category for m in original.mentions("grandchildren near a bus")] == []
    # "men" is a WordNet noun lemma of its own, so RLHF-V's code does not see a person
    assert rlhf_v.mentions("two men") == [] and [m.category for m in original.mentions("two men")] == [
        "person"
    ]
    # leading-space entries of the original synonyms.txt never match; RLHF-V strips them
    assert original.mentions("a motor bike and cheesecake") == []
    assert [m.category for m in rlhf_v.mentions("a motor bike and cheesecake")] == ["motorcycle", "cake"]
    # the original does not merge "dining table" (the lone "table" maps), RLHF-V does
    assert [m.word for m in original.mentions("a dining table")] == ["table"]
    assert [m.word for m in rlhf_v.mentions("a dining table")] == ["dining table"]
    # synonyms only RLHF-V's refined list has
    assert original.mentions("a coffee table") == [ObjectMention("table", "dining table")]
    assert rlhf_v.mentions("a coffee table") == [ObjectMention("coffee table", "dining table")]
    with pytest.raises(ValueError, match="rlhf_v"):
        CocoObjectExtractor("pattern")


def test_missing_nltk_data_fails_at_construction_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(NltkDataMissing, match="punkt_tab") as error:
        CocoObjectExtractor("original")
    assert INSTALL_LINE in str(error.value) and "wordnet" not in str(error.value)
    with pytest.raises(NltkDataMissing, match="punkt_tab, wordnet"):
        ObjectHalBench(path=str(tmp_path))
