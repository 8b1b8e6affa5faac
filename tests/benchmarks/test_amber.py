"""AMBER: equal to the official inference.py on 36 generative and 32 discriminative items, hand-worked
counts and metrics, end to end."""

import json

import nltk
import pytest
from nltk.stem import WordNetLemmatizer

from mmpo.benchmarks.amber import (
    AMBER,
    AmberLexicon,
    SpacySimilarity,
    extract_nouns,
    generative_metrics,
    score_generative,
)
from mmpo.benchmarks.nltk_data import INSTALL_LINE, NltkDataMissing

from .fixtures import write_amber

RELATION = {
    "dog": ["puppy"],
    "person": ["man", "woman"],
    "grass": ["ground"],
    "car": ["vehicle"],
    "cat": [],
    "frisbee": [],
    "light": [],
    "can": [],
    "sunglasses": [],
}
SAFE = ["light"]
LEXICON = AmberLexicon(RELATION, frozenset(SAFE))

ANNOTATIONS = [
    {"id": 1, "type": "generative", "truth": ["dog", "person", "grass"], "hallu": ["cat", "frisbee"]},
    {"id": 2, "type": "generative", "truth": ["car"], "hallu": ["person"]},
    {"id": 3, "type": "discriminative-hallucination", "truth": "no"},
    {"id": 4, "type": "discriminative-attribute-state", "truth": "yes"},
    {"id": 5, "type": "discriminative-attribute-number", "truth": "no"},
    {"id": 6, "type": "discriminative-relation", "truth": "yes"},
]
# Response 1 nouns (NN* tags in the vocabulary; "can" is tagged MD): man, frisbee, puppy, light, cat.
#   man -> covers person (associated word); puppy -> covers dog; light is a safe word (counted in the
#   denominator only); frisbee and cat are hallucination targets -> Cog hits and hallucinated.
#   -> 5 nouns, 2 hallucinated, covered 2 of 3 truth objects, hits 2 of 2 targets.
# Response 2 nouns: vehicle -> covers car. 1 noun, 0 hallucinated, covered 1/1, hits 0/1.
# Official denominators start at 0.001, values are printed ×100 rounded to 0.1:
# CHAIR = 2/6.001 -> 33.3, Cover = 3/4.001 -> 75.0, Hal = 100 - 1/2.001 -> 50.0, Cog = 2/3.001 -> 66.6.
RESPONSES = {
    "1": "A man throws a frisbee to his puppy on the lawn under a bright light. You can see a cat.",
    "2": "A red vehicle.",
}
GENERATIVE = {"CHAIR": 0.333, "Cover": 0.75, "Hal": 0.5, "Cog": 0.666}
# Discriminative ('No' is positive; the official parser takes only "Yes"/"No"):
#   3: "No"  truth no  -> TP          4: "Yes" truth yes -> correct
#   5: "no"  truth no  -> not "No" -> unknown -> FN, wrong     6: "No" truth yes -> FP
# accuracy 2/4.001 -> 50.0; P = 1/2.001 -> 50.0; R = 1/2.001 -> 50.0; F1 from the rounded P, R:
# 2 * .25 / (1 + 1e-4) -> 50.0. Attribute (rows 4, 5; three counters, so + 0.003): accuracy
# 1/2.003 -> 49.9, no "No" predicted: P = R = F1 = 0. Existence (row 3): 1/1.001 -> 99.9 each, F1 =
# 2 * .999² / (1.998 + 1e-3) = 0.998500... -> 99.9 (eps 1e-3).
DISCRIMINATIVE = {"3": "No", "4": "Yes", "5": "no", "6": "No"}


def test_nouns_are_the_tagged_nouns_with_their_wordnet_lemma():
    # "can" and "watch" after a subject are a modal and a verb, not nouns; the WordNet lemma of
    # "sunglasses" is "sunglass", which is not in the vocabulary; "Dogs" keeps its capital (no
    # vocabulary word); "men" is its own WordNet lemma.
    vocabulary = LEXICON.vocabulary | {"watch", "men", "dog"}
    assert extract_nouns("She can swim and he can watch.", vocabulary) == []
    assert extract_nouns("A pair of sunglasses near men. Dogs run to a dog.", vocabulary) == ["men", "dog"]


def test_missing_nltk_data_fails_at_construction_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(NltkDataMissing, match="averaged_perceptron_tagger_eng") as error:
        AMBER(path=str(tmp_path))
    assert INSTALL_LINE in str(error.value)
    AMBER(path=str(tmp_path), task="discriminative")  # needs no NLTK data


def test_spacy_route_fails_loudly_without_spacy():
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="word_match='exact'"):
            SpacySimilarity("/nowhere")("dog", "puppy")
    else:
        pytest.skip("spaCy is installed; the missing-package path cannot be exercised")


def test_generative_counts_match_hand_computation():
    counts = [
        score_generative(
            extract_nouns(RESPONSES[str(a["id"])], LEXICON.vocabulary), a["truth"], a["hallu"], LEXICON
        )
        for a in ANNOTATIONS[:2]
    ]
    assert counts[0]["nouns"] == ["man", "frisbee", "puppy", "light", "cat"]
    assert counts[0]["hallucinated"] == ["frisbee", "cat"]
    assert counts[0]["covered"] == ["dog", "person"]
    assert counts[0]["cog_hits"] == ["cat", "frisbee"]
    assert generative_metrics(counts) == pytest.approx(GENERATIVE)


def test_shared_association_credits_the_first_object_in_reference_order():
    # 'ground' is associated with both road and grass; the associated words are searched in the
    # order of the truth list, so the first of the two objects gets the credit.
    lexicon = AmberLexicon({"road": ["ground"], "grass": ["ground"], "ground": []}, frozenset())
    counts = score_generative(["ground"], ["grass", "road"], [], lexicon)
    assert counts["covered"] == ["grass"]
    counts = score_generative(["ground"], ["road", "grass"], [], lexicon)
    assert counts["covered"] == ["road"]


def test_similarity_step_is_pluggable():
    pairs = {("pup", "dog"), ("kitty", "cat")}

    def similar(a, b):
        return (a, b) in pairs

    lexicon = AmberLexicon({"dog": [], "cat": []}, frozenset())
    counts = score_generative(["pup", "kitty"], ["dog"], ["cat"], lexicon, similar)
    # pup ~ dog: covered and not hallucinated; kitty ~ cat: Cog hit and hallucinated.
    assert counts["covered"] == ["dog"] and counts["cog_hits"] == ["cat"]
    assert counts["hallucinated"] == ["kitty"]
    # Without the similarity step both are plain hallucinations.
    exact = score_generative(["pup", "kitty"], ["dog"], ["cat"], lexicon)
    assert exact["hallucinated"] == ["pup", "kitty"] and exact["covered"] == []


def test_amber_end_to_end_all_tasks(tmp_path):
    write_amber(tmp_path, ANNOTATIONS, RELATION, SAFE)
    bench = AMBER(path=str(tmp_path), task="all")
    items = bench.items()
    assert [item.id for item in items] == ["1", "2", "3", "4", "5", "6"]
    assert items[0].prompt == "Describe this image."
    assert items[0].image == str(tmp_path / "images" / "AMBER_1.jpg")
    metrics, records = bench.score(items, RESPONSES | DISCRIMINATIVE)

    assert {k: metrics[k] for k in GENERATIVE} == pytest.approx(GENERATIVE)
    assert {k: metrics[k] for k in ("accuracy", "precision", "recall", "f1")} == pytest.approx(
        {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    )
    assert metrics["existence/accuracy"] == pytest.approx(0.999) and metrics["existence/f1"] == pytest.approx(
        0.999
    )
    assert metrics["attribute/accuracy"] == pytest.approx(0.499) and metrics["attribute/f1"] == 0.0
    assert metrics["relation/accuracy"] == 0.0
    assert metrics["amber_score"] == pytest.approx(0.5 * (1 - 0.333 + 0.5))
    assert records[4]["parsed"] == "unknown"

    tolerant = AMBER(path=str(tmp_path), task="discriminative", discriminative_parser="yes_no")
    metrics, _ = tolerant.score(tolerant.items(), DISCRIMINATIVE)
    assert metrics["accuracy"] == pytest.approx(0.75)  # "no" now parsed as no: 3 / 4.001 -> 75.0
    assert "CHAIR" not in metrics and "amber_score" not in metrics


def test_amber_generative_task_only_reads_generative_queries(tmp_path):
    write_amber(tmp_path, ANNOTATIONS, RELATION, SAFE)
    bench = AMBER(path=str(tmp_path))
    items = bench.items()
    assert [item.id for item in items] == ["1", "2"]
    metrics, _ = bench.score(items, RESPONSES)
    assert metrics == pytest.approx(GENERATIVE)


def test_amber_options_are_checked():
    with pytest.raises(ValueError, match="word_match"):
        AMBER(word_match="vectors")
    with pytest.raises(ValueError, match="spacy_model"):
        AMBER(word_match="spacy")


# --- equality with the official inference.py --------------------------------------------------------


def official_inference(inference_data, annotations, association, safe_file_text, similar):
    """junyangwang0410/AMBER inference.py ``main`` with ``--evaluation_type a``, restated; ``similar``
    stands in for its spaCy ``check_synonyms_word``. Returns the printed numbers."""
    lemmatizer = WordNetLemmatizer()
    vocabulary = [w for key, values in association.items() for w in (key, *values)]
    safe_words = [line.split("\n")[0] for line in safe_file_text.splitlines(keepends=True)]
    counters = ("chair", "safe_cover", "hallu_cover", "non_hallu") + tuple(
        f"{prefix}qa_{kind}"
        for prefix in ("", "as_", "an_", "aa_", "ha_", "asso_")
        for kind in ("correct", "no", "ans_no")
    )
    score = dict.fromkeys(counters, 0)
    num = dict.fromkeys(counters, 0.001)  # data/metrics.txt
    prefix_of = {
        "discriminative-attribute-state": "as_",
        "discriminative-attribute-number": "an_",
        "discriminative-attribute-action": "aa_",
        "discriminative-hallucination": "ha_",
    }

    def mark(flags, tail, j):
        # a hit on an associated word (entry j holds its object's index) marks that object's flag
        # among the last `tail` entries; a hit on an object name marks its own entry
        if j < len(flags) - tail:
            flags[flags[j] + len(flags) - tail] = 1
        else:
            flags[j] = 1

    for row in inference_data:
        truth = annotations[row["id"] - 1]
        if truth["type"] == "generative":
            tagged = nltk.pos_tag(nltk.word_tokenize(row["response"]))
            nouns = [lemmatizer.lemmatize(w) for w, tag in tagged if tag.startswith("NN")]
            nouns = [n for n in nouns if n in vocabulary]
            safe = [w for obj in truth["truth"] for w in association[obj]] + truth["truth"]
            safe_owner = [k for k, obj in enumerate(truth["truth"]) for _ in association[obj]] + [0] * len(
                truth["truth"]
            )
            hallu = [w for obj in truth["hallu"] for w in association[obj]] + truth["hallu"]
            hallu_owner = [k for k, obj in enumerate(truth["hallu"]) for _ in association[obj]] + [0] * len(
                truth["hallu"]
            )
            n_safe, n_hallu = len(truth["truth"]), len(truth["hallu"])
            hallucinated = [0] * len(nouns)
            for index, noun in enumerate(nouns):
                if noun in safe_words:
                    continue
                if noun in safe:
                    mark(safe_owner, n_safe, safe.index(noun))
                    continue
                if noun in hallu:
                    mark(hallu_owner, n_hallu, hallu.index(noun))
                j = next((j for j, word in enumerate(hallu) if similar(noun, word)), None)
                if j is not None:
                    mark(hallu_owner, n_hallu, j)
                j = next((j for j, word in enumerate(safe) if similar(noun, word)), None)
                if j is not None:
                    mark(safe_owner, n_safe, j)
                    continue
                hallucinated[index] = 1
            score["chair"] += sum(hallucinated)
            num["chair"] += len(hallucinated)
            score["safe_cover"] += sum(safe_owner[-n_safe:])
            num["safe_cover"] += len(safe_owner[-n_safe:])
            score["hallu_cover"] += sum(hallu_owner[-n_hallu:])
            num["hallu_cover"] += len(hallu_owner[-n_hallu:])
            score["non_hallu"] += sum(hallucinated) == 0
            num["non_hallu"] += 1
        else:
            response, prefix = row["response"], prefix_of.get(truth["type"], "asso_")
            for p in ("", prefix):
                num[f"{p}qa_correct"] += 1
                if truth["truth"] == "no":
                    num[f"{p}qa_no"] += 1
                if response == "No":
                    num[f"{p}qa_ans_no"] += 1
                if (truth["truth"] == "yes" and response == "Yes") or (
                    truth["truth"] == "no" and response == "No"
                ):
                    score[f"{p}qa_correct"] += 1
                if truth["truth"] == "no" and response == "No":
                    score[f"{p}qa_no"] += 1
                    score[f"{p}qa_ans_no"] += 1

    def pct(key):
        return round(score[key] / num[key] * 100, 1)

    printed = {
        "CHAIR": pct("chair"),
        "Cover": pct("safe_cover"),
        "Hal": round(100 - score["non_hallu"] / num["non_hallu"] * 100, 1),
        "Cog": pct("hallu_cover"),
    }
    groups = {"": [""], "existence/": ["ha_"], "attribute/": ["as_", "an_", "aa_"], "state/": ["as_"]}
    groups |= {"number/": ["an_"], "action/": ["aa_"], "relation/": ["asso_"]}
    for name, prefixes in groups.items():

        def total(kind, prefixes=prefixes):
            return sum(score[f"{p}qa_{kind}"] for p in prefixes), sum(num[f"{p}qa_{kind}"] for p in prefixes)

        (c, cn), (a, an), (r, rn) = total("correct"), total("ans_no"), total("no")
        precision, recall = round(a / an * 100, 1), round(r / rn * 100, 1)
        eps = 0.001 if name == "existence/" else 0.0001
        printed |= {
            f"{name}accuracy": round(c / cn * 100, 1),
            f"{name}precision": precision,
            f"{name}recall": recall,
            f"{name}f1": round(
                2 * (precision / 100) * (recall / 100) / (precision / 100 + recall / 100 + eps) * 100, 1
            ),
        }
    return printed


OFFICIAL_RELATION = {
    "dog": ["puppy", "pup"], "person": ["man", "woman", "men", "people", "child"], "shore": ["beach"],
    "line": [], "orange": [], "sunglasses": [], "chopsticks": [], "earrings": [], "car": ["vehicle"],
    "cat": ["kitten"], "frisbee": [], "grass": ["ground", "lawn"], "road": ["ground", "street"], "tree": [],
    "bench": [], "sky": [], "light": [], "sign": [], "camera": [], "table": ["desk"], "water": ["sea", "ocean"],
    "boat": [], "ball": [], "shoe": [], "bag": [], "cup": ["mug"], "bird": [], "umbrella": [], "snack": [],
}  # fmt: skip
OFFICIAL_SAFE = "orange\nsnack\nline\ncamera\nlight\nshoe\nsign\nrange\nindividual"
# (truth objects, hallucination targets, response): verbs and adjectives that are vocabulary words,
# plurals whose WordNet lemma leaves the vocabulary, safe words, shared associations, capitals.
GENERATIVE_CASES = [
    (["boat", "shore", "water"], ["person"], "Boats line the shore of a calm sea."),
    (["cat", "table"], ["dog"], "The orange one is a cat sleeping on a desk."),
    (["person", "table"], ["cup"], "A man wearing sunglasses eats noodles with chopsticks."),
    (["person"], ["bag"], "A woman wears earrings and holds a bag."),
    (["person", "road"], ["car"], "Two men walk down the street."),
    (["dog", "grass"], ["cat"], "Dogs run on the grass. A dog catches a frisbee."),
    (["dog", "cat"], ["bird"], "A puppy and a kitten play with a ball."),
    (["car", "road"], ["person"], "A vehicle drives on the ground near trees."),
    (["grass", "road"], ["tree"], "The ground is wet."),
    (["sky", "tree"], ["bird"], "A bird flies across the sky above the tree."),
    (["bench", "person"], ["umbrella"], "People sit on a bench under an umbrella."),
    (["person"], ["camera"], "A child holds a camera and takes a photo."),
    (["person", "ball"], ["dog"], "A child throws a ball to a pup."),
    (["water", "boat"], ["person"], ""),
    (["table", "cup"], ["bag"], "A mug and a cup on the table, a cup again."),
    (["shoe", "person"], ["bag"], "She ties her shoe; shoes line the wall."),
    (["sky"], ["bird"], "Birds in the sky."),
    (["person", "car"], ["dog"], "A person parks a car. The car is red. A dog barks."),
    (["table"], ["cat", "dog"], "A table with a cat, a dog and a kitten."),
    (["road", "car"], ["person"], "Street lights line the road at night."),
    (["person"], ["frisbee"], "Men and women and a child; people everywhere."),
    (["water"], ["boat"], "The ocean is calm, no boats."),
    (["grass", "dog"], ["ball"], "A Dog on the Grass."),
    (["person", "bench"], ["bird"], "An old man on a bench feeds birds and a bird."),
    (["tree", "sky"], ["sign"], "A sign in front of trees and a blue sky."),
    (["cat"], ["dog"], "A cat. A cat! A CAT?"),
    (["person", "cup"], ["table"], "A woman drinks from a mug at a desk."),
    (["bag", "person"], ["umbrella"], "The U.S. flag flies over Acme Inc. as a man carries a bag."),
    (["shore", "person"], ["dog"], "On Jan. 5 at 3 p.m. people walked on the beach with a puppy."),
    (["car"], ["road"], "Cars and vehicles."),
    (["sky", "water"], ["boat"], "The sky and the sea meet; a boat, e.g. a sailboat."),
    (["person", "snack"], ["cup"], "A child eats a snack."),
    (["person"], ["ball", "frisbee"], "A person can catch a ball; the frisbee can fly."),
    (["tree"], ["light"], "Light filters through the tree."),
    (["dog"], ["cat"], "The dog's kitten-like face."),
    (["grass", "road"], ["dog"], "Lawn and ground and grass."),
]  # fmt: skip
DISCRIMINATIVE_TYPES = [
    "discriminative-hallucination", "discriminative-attribute-state", "discriminative-attribute-number",
    "discriminative-attribute-action", "discriminative-relation", "relation",
]  # fmt: skip
DISCRIMINATIVE_ANSWERS = ["Yes", "No", "no", "No.", "", "Yes, there is."]


def official_fixture():
    annotations = [
        {"id": i + 1, "type": "generative", "truth": truth, "hallu": hallu}
        for i, (truth, hallu, _) in enumerate(GENERATIVE_CASES)
    ]
    responses = {str(i + 1): response for i, (_, _, response) in enumerate(GENERATIVE_CASES)}
    for k in range(32):  # every type, both truths, official and non-official answer forms
        amber_id = len(annotations) + 1
        truth = "no" if k % 3 == 0 or k % 5 == 0 else "yes"
        annotations.append({"id": amber_id, "type": DISCRIMINATIVE_TYPES[k % 6], "truth": truth})
        responses[str(amber_id)] = DISCRIMINATIVE_ANSWERS[(k * 7 + k // 6) % 6]
    return annotations, responses


def similar_by_first_letter(a, b):
    """A deterministic stand-in for spaCy similarity (AMBER's step for non-exact matches)."""
    return a[0] == b[0] and a != b


@pytest.mark.parametrize("similar", [None, similar_by_first_letter], ids=["exact", "similarity"])
def test_amber_equals_the_official_inference(similar, tmp_path):
    annotations, responses = official_fixture()
    assert sum(a["type"] == "generative" for a in annotations) >= 30 and len(annotations) - 36 >= 30
    write_amber(tmp_path, annotations, OFFICIAL_RELATION, OFFICIAL_SAFE.split("\n"))
    bench = AMBER(path=str(tmp_path), task="all")
    bench.similar = similar
    items = bench.items()
    metrics, _ = bench.score(items, responses)

    safe_text = (tmp_path / "data" / "safe_words.txt").read_text(encoding="utf-8")
    association = json.loads((tmp_path / "data" / "relation.json").read_text(encoding="utf-8"))
    inference_data = [{"id": int(key), "response": text} for key, text in responses.items()]
    printed = official_inference(
        inference_data, annotations, association, safe_text, similar or (lambda a, b: False)
    )
    assert {key: round(metrics[key] * 100, 6) for key in printed} == pytest.approx(printed, abs=1e-6)
    assert 0 < printed["CHAIR"] < 100 and 0 < printed["Cover"] < 100 and 0 < printed["accuracy"] < 100
