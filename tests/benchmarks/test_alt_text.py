"""Alt-text metrics (MCM-DPO definitions) on hand-worked examples, and the benchmark end to end."""

import math

import pytest

from mmpo.benchmarks.alt_text import (
    BLEU_WEIGHTS,
    AltText,
    bleu,
    cider_d,
    clean_response,
    rouge_l,
    token_edit_distance,
)
from mmpo.benchmarks.text import singularize, word_tokenize

from .fixtures import write_alt_text

REF = "the cat sat on the mat".split()
HYP = "the cat sat on a mat".split()


def test_word_tokenize_is_treebank_style_without_nltk_data():
    assert word_tokenize("Mr. Smith can't go. It's here.") == [
        "Mr.",
        "Smith",
        "ca",
        "n't",
        "go",
        ".",
        "It",
        "'s",
        "here",
        ".",
    ]
    assert word_tokenize('A "hot-dog" stand, open.') == [
        "A",
        "``",
        "hot-dog",
        "''",
        "stand",
        ",",
        "open",
        ".",
    ]


@pytest.mark.parametrize(
    ("word", "singular"),
    [("dogs", "dog"), ("buses", "bus"), ("bus", "bus"), ("glasses", "glass"), ("glass", "glass"),
     ("knives", "knife"), ("women", "woman"), ("men", "man"), ("ties", "tie"), ("puppies", "puppy"),
     ("potatoes", "potato"), ("shoes", "shoe"), ("benches", "bench"), ("skis", "ski"), ("scissors", "scissors"),
     ("this", "this"), ("tennis", "tennis"), ("vases", "vase"), ("people", "people"), ("mice", "mouse")],
)  # fmt: skip
def test_singularize(word, singular):
    assert singularize(word) == singular


def test_bleu_variants_by_hand():
    # p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3, equal lengths so BP = 1.
    assert bleu(REF, HYP, BLEU_WEIGHTS["bleu_4"]) == pytest.approx(1 / 3)  # 4-gram precision only
    assert bleu(REF, HYP, BLEU_WEIGHTS["bleu_1"]) == pytest.approx(5 / 6)
    assert bleu(REF, HYP, BLEU_WEIGHTS["cumulative_bleu_4"]) == pytest.approx(
        (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    )
    # brevity penalty exp(1 - 6/2) for a 2-token hypothesis with perfect unigram precision
    assert bleu(REF, ["the", "cat"], BLEU_WEIGHTS["bleu_1"]) == pytest.approx(math.exp(-2))
    # no matching 4-gram: no smoothing, so (numerically) zero
    assert bleu(REF, ["mat", "on", "sat", "cat"], BLEU_WEIGHTS["bleu_4"]) < 1e-300


def test_rouge_l_is_the_summary_level_distinct_word_variant():
    # one sentence each: LCS words {the, cat, on, mat}; 5 distinct words each side -> P = R = 4/5
    assert rouge_l("the cat sat on the mat.", "the cat is on the mat.") == pytest.approx(0.8)
    # sentences split at '.': union of LCS words with the reference sentence = {a, cat, sleeps}:
    # R = 3/3, P = 3/5 (distinct hypothesis words a, dog, runs, cat, sleeps) -> F = 0.75
    assert rouge_l("a dog runs. a cat sleeps.", "a cat sleeps.") == pytest.approx(0.75)
    # distinct words: repeating a word neither helps nor hurts
    assert rouge_l("the the the", "the") == pytest.approx(1.0)
    # the LCS of ref "c e e a d" and hyp "b d e c e c" has length 2 in two forms, "c e" and "e e";
    # the reference's backtracking finds "e e", so the union holds one distinct word: P = R = 1/4
    assert rouge_l("b d e c e c", "c e e a d") == pytest.approx(0.25)
    # case and punctuation are part of the words
    assert rouge_l("The cat,", "the cat") == pytest.approx(0.0)
    assert rouge_l("", "the cat") == 0.0 and rouge_l("the cat", "...") == 0.0


def test_cider_d_by_hand():
    # Corpus of two samples, log N = log 2; every n-gram has df 1 or 0, so every weight is log 2.
    # Sample 1, hypothesis "a b" against "a b c":
    #   k=1: (2 log²2) / (√2 log2 · √3 log2) = 2/√6;  k=2: log²2 / (log2 · √2 log2) = 1/√2;  k=3,4: 0
    #   word counts 2 and 3 -> penalty exp(-1/72)
    # Sample 2 shares no n-gram with its reference -> 0.
    mean, scores = cider_d(["a b", "x y"], [["a b c"], ["p q"]])
    first = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert scores == pytest.approx([first, 0.0])
    assert mean == pytest.approx(first / 2)
    # a one-sample corpus has log N = 0: every weight and so the score is 0
    assert cider_d(["a b"], [["a b"]])[0] == 0.0


def test_token_edit_distance():
    assert token_edit_distance(["a", "b", "c"], ["a", "c", "d"]) == 2
    assert token_edit_distance([], ["x", "y"]) == 2
    assert token_edit_distance(["x"], ["x"]) == 0


def test_clean_response():
    assert clean_response("Assistant: A photo.  ") == "A photo."
    assert clean_response("The Assistant: stays") == "The Assistant: stays"


def test_alt_text_end_to_end(tmp_path):
    root = write_alt_text(tmp_path / "twitter", "twitter", [(7, "the cat sat on the mat"), (9, "a dog")])
    bench = AltText(path=str(root), subset="twitter")
    items = bench.items()
    assert [item.id for item in items] == ["7", "9"]
    assert items[0].image == str(root / "image" / "twitter_test" / "7.jpg")
    assert items[0].prompt.startswith("Given an image and context, generate alt-text")
    metrics, records = bench.score(items, {"7": "Assistant: the cat sat on the mat", "9": ""})
    # sample 7 is a perfect match (BLEU 1, ROUGE-L ~1, CIDEr-D 10 with idf log 2, distance 0);
    # sample 9 is empty (0 everywhere, distance 2 tokens).
    assert metrics["bleu_1"] == pytest.approx(0.5) and metrics["bleu_4"] == pytest.approx(0.5)
    assert metrics["cumulative_bleu_4"] == pytest.approx(0.5)
    assert metrics["rouge_l"] == pytest.approx(0.5)
    assert metrics["cider"] == pytest.approx(5.0)
    assert metrics["edit_distance"] == pytest.approx(1.0)
    assert records[0]["output"] == "the cat sat on the mat" and records[1]["reference"] == "a dog"
