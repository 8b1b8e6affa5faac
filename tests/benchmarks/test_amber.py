"""AMBER: noun extraction substitute, generative counting rules, discriminative metrics, end to end."""

import pytest

from mmpo.benchmarks.amber import (
    AMBER,
    AmberLexicon,
    SpacySimilarity,
    generative_metrics,
    nltk_nouns,
    rule_nouns,
    score_generative,
)

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
# Response 1 nouns (in vocabulary, 'can' after 'You' is a verb): man, frisbee, puppy, light, cat.
#   man -> covers person (associated word); puppy -> covers dog; light is a safe word (counted in the
#   denominator only); frisbee and cat are hallucination targets -> Cog hits and hallucinated.
#   -> 5 nouns, 2 hallucinated, covered 2 of 3 truth objects, hits 2 of 2 targets.
# Response 2 nouns: vehicle -> covers car. 1 noun, 0 hallucinated, covered 1/1, hits 0/1.
# CHAIR = 2/6, Cover = 3/4, Hal = 1/2, Cog = 2/3.
RESPONSES = {
    "1": "A man throws a frisbee to his puppy on the lawn under a bright light. You can see a cat.",
    "2": "A red vehicle.",
}
GENERATIVE = {"CHAIR": 2 / 6, "Cover": 3 / 4, "Hal": 1 / 2, "Cog": 2 / 3}
# Discriminative ('No' is positive; the official parser takes only "Yes"/"No"):
#   3: "No"  truth no  -> TP          4: "Yes" truth yes -> correct
#   5: "no"  truth no  -> not "No" -> unknown -> FN, wrong     6: "No" truth yes -> FP
# accuracy 2/4; P = 1/2; R = 1/2; F1 = 2 * 1/4 / (1 + 1e-4).
DISCRIMINATIVE = {"3": "No", "4": "Yes", "5": "no", "6": "No"}


def test_rule_nouns_gates_modal_can_and_keeps_case():
    vocabulary = LEXICON.vocabulary
    assert rule_nouns("Dogs run. A can of soda. You can see two dogs.", vocabulary) == ["can", "dog"]
    assert rule_nouns("He wears sunglasses near men.", vocabulary) == ["sunglasses", "man"]


def test_nltk_route_fails_loudly_without_nltk_data(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(LookupError, match="NLTK_DATA"):
        nltk_nouns("A dog.", LEXICON.vocabulary)


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
            rule_nouns(RESPONSES[str(a["id"])], LEXICON.vocabulary), a["truth"], a["hallu"], LEXICON
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
    f1 = 2 * 0.25 / (1 + 1e-4)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["precision"] == pytest.approx(0.5) and metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["existence/f1"] == pytest.approx(2 / (2 + 1e-3))  # eps 1e-3 as in the reference
    assert metrics["attribute/accuracy"] == pytest.approx(0.5) and metrics["attribute/f1"] == 0.0
    assert metrics["relation/accuracy"] == 0.0
    assert metrics["amber_score"] == pytest.approx(0.5 * (1 - 2 / 6 + f1))
    assert records[4]["parsed"] == "unknown"

    tolerant = AMBER(path=str(tmp_path), task="discriminative", discriminative_parser="yes_no")
    metrics, _ = tolerant.score(tolerant.items(), DISCRIMINATIVE)
    assert metrics["accuracy"] == pytest.approx(3 / 4)  # "no" now parsed as no
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
