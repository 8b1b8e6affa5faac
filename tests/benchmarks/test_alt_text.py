"""Alt-text metrics: equal to MCM-DPO's get_score.py on 50+ pairs, hand-worked values, the benchmark end to end."""

import math
import re
import warnings
from collections import Counter
from pathlib import Path

import editdistance
import nltk
import pytest
from nltk.translate.bleu_score import sentence_bleu
from nltk.translate.meteor_score import meteor_score
from omegaconf import OmegaConf
from rouge import Rouge

from mmpo.benchmarks.alt_text import (
    BLEU_WEIGHTS,
    AltText,
    alt_text_metrics,
    bleu,
    cider_d,
    clean_response,
    rouge_l,
)
from mmpo.benchmarks.nltk_data import INSTALL_LINE
from mmpo.benchmarks.text import word_tokenize

from .fixtures import write_alt_text

REF = "the cat sat on the mat".split()
HYP = "the cat sat on a mat".split()

# (reference alt-text, raw model response): abbreviations, punctuation, case, repeats, contractions,
# quotes, numbers, empty and dots-only responses, an "Assistant:" prefix, several sentences.
PAIRS = [
    ("A red bus parked on a city street.", "A red bus parked on a city street."),
    ("A red bus parked on a city street.", "Assistant: A red bus is parked on the street."),
    ("A red bus parked on a city street.", ""),
    ("A red bus parked on a city street.", "   "),
    ("A red bus parked on a city street.", "..."),
    ("A red bus parked on a city street.", "bus bus bus bus bus bus"),
    ("The U.S. flag flies over Acme Inc. headquarters.", "A U.S. flag flies over the Acme Inc. building."),
    ("Protesters gather on Jan. 5 at 3 p.m. downtown.", "Protesters gathered downtown on Jan. 5 at 3 p.m."),
    ("Dr. Smith speaks at the U.N. summit.", "Dr. Smith speaking at a U.N. summit, e.g. on climate."),
    ("Fruit, e.g. apples and pears, in a bowl.", "A bowl of fruit, e.g. apples, pears and plums."),
    ("A dog can't catch the frisbee.", "The dog can't catch a frisbee!"),
    ('A sign reads "hot-dog stand" in neon.', 'Neon sign: "hot-dog stand".'),
    ("Coffee costs $3.88 at the cafe.", "A cafe menu: coffee $3.88, tea $2.50."),
    ("Two people hiking. Mountains behind them.", "Two hikers. Snowy mountains behind them. Blue sky."),
    ("The Cat Sleeps On The Sofa.", "the cat sleeps on the sofa."),
    ("A cat sleeps on a sofa", "A cat sleeps on a sofa."),
    ("A child flies a kite at the beach.", "kite"),
    (
        "A child flies a kite at the beach.",
        "A child flies a kite at the beach while her father watches from the sand dunes.",
    ),
    ("Close-up of a bee on a sunflower.", "Close-up of a honey-bee on a yellow sunflower in summer."),
    ("Graph showing sales rising in 2023.", "Bar chart: sales rose 20% in 2023 (Q1-Q4)."),
    ("It's a rainy day in London.", "It is a rainy day in London, isn't it?"),
    ("Screenshot of a tweet by @nasa.", "Screenshot of a tweet from @NASA about Mars."),
    ("A bowl of ramen with an egg.", "A bowl of ramen with egg, egg, egg and more egg."),
    ("People at a concert; lights overhead.", "Crowd at a concert -- bright lights overhead..."),
    ("A man rides a bicycle.", "A woman rides a bike."),
    ("Sunset over the ocean.", "Sunrise over a lake."),
    ("A map of Europe.", "map"),
    ("A plate of sushi.", "Sushi on a plate. Sushi on a plate. Sushi on a plate."),
    ("Mr. and Mrs. Jones at their wedding.", "Mr. and Mrs. Jones pose at their wedding reception."),
    ("Café terrace at night.", "A café terrace at night in Paris."),
    ("A baby laughs.", "A baby is laughing happily."),
    ("Two dogs play in the snow.", "Two puppies playing in deep snow."),
    ("Logo of the company.", "The company's logo."),
    ("A pie chart with five slices.", "Pie chart: 5 slices (A, B, C, D, E)."),
    ("Children playing soccer in a park.", "Kids play football in the park."),
    ("A steaming cup of tea.", "A cup of hot tea with steam."),
    ("An old car in a barn.", "Vintage car, barn, hay."),
    ("The Eiffel Tower at dusk.", "The Eiffel Tower lit up at dusk, Paris, France."),
    ("A cat looks out of a window.", "A cat looking out the window at birds."),
    ("A tabby cat on a windowsill.", "Cat."),
    ("Snow-covered mountains under a blue sky.", "Snow covered mountains under blue sky"),
    ("A woman reading a book in a library.", "A woman reads a book. A library."),
    ("A dog.", "A dog. A dog. A dog."),
    (
        "Fireworks over the city skyline on New Year's Eve.",
        "Fireworks light up the skyline on New Year's Eve.",
    ),
    ("A chef cooks pasta in a kitchen.", "Chef cooking pasta."),
    ("Text: 'Sale ends Friday!'", "A poster that says Sale ends Friday!"),
    ("A horse grazing in a field at sunrise.", "a horse grazing in a field at sunrise"),
    ("A group photo of a soccer team.", "Team photo: soccer players, coach, trophy."),
    ("Rain drops on a window.", "Raindrops on the window glass."),
    ("A lighthouse on a rocky coast.", "A lighthouse on the rocky coast of Maine, U.S."),
    ("A black and white photo of a street.", "Black-and-white street photo, 1950s."),
    ("A bird on a branch.", "Assistant:A bird sits on a branch."),
]


def official_cider_d(candidates, references, n=4, sigma=6.0):
    """CIDEr-D as coco-caption's cider_scorer (MCM-DPO cider.py) defines it, restated for this test.

    Whitespace n-grams 1..n; df over the references; tf-idf vectors ``tf · (log N − log max(1, df))``;
    per n: clipped cosine ``Σ min(v_h, v_r) v_r / (|v_h| |v_r|)`` times ``exp(−δ²/2σ²)`` with δ the
    difference of the bigram counts; mean over n, ×10, mean over samples.
    """

    def grams(text):
        words = text.split()
        return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))

    ref_grams = [grams(ref) for ref in references]
    df = Counter(g for counts in ref_grams for g in set(counts))
    log_n = math.log(len(references))

    def vec(counts):
        v = [{} for _ in range(n)]
        for g, tf in counts.items():
            v[len(g) - 1][g] = tf * (log_n - math.log(max(1.0, df[g])))
        norms = [math.sqrt(sum(x * x for x in part.values())) for part in v]
        bigrams = sum(tf for g, tf in counts.items() if len(g) == 2)
        return v, norms, bigrams

    scores = []
    for candidate, counts in zip(candidates, ref_grams, strict=True):
        vh, nh, lh = vec(grams(candidate))
        vr, nr, lr = vec(counts)
        total = 0.0
        for k in range(n):
            value = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
            if nh[k] and nr[k]:
                value /= nh[k] * nr[k]
            total += value * math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
        scores.append(10.0 * total / n)
    return sum(scores) / len(scores), scores


def official_get_score(pairs):
    """MCM-DPO get_score.py ``one_file``, restated: per-sample sums over NLTK, rouge and editdistance."""
    sums = Counter()
    responses, chosen = [], []
    for reference, raw in pairs:
        response = re.sub(r"^Assistant:", "", raw).strip()
        ref, hyp = nltk.word_tokenize(reference), nltk.word_tokenize(response)
        sums["edit_distance"] += editdistance.eval(ref, hyp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sums["bleu_1"] += sentence_bleu([ref], hyp, weights=[1, 0, 0, 0])
            sums["bleu_4"] += sentence_bleu([ref], hyp, weights=[0, 0, 0, 1])
            sums["cumulative_bleu_4"] += sentence_bleu([ref], hyp, weights=[0.25, 0.25, 0.25, 0.25])
        sums["meteor"] += meteor_score([ref], hyp)
        try:
            sums["rouge_l"] += (
                Rouge().get_scores(response, reference, avg=True)["rouge-l"]["f"] if response else 0
            )
        except ValueError:
            pass  # the official loop prints the exception and adds nothing
        responses.append(response)
        chosen.append(reference)
    means = {key: value / len(pairs) for key, value in sums.items()}
    means["cider"] = official_cider_d(responses, chosen)[0]
    return means


def test_metrics_equal_the_official_get_score_on_52_pairs(tmp_path):
    assert len(PAIRS) >= 50
    rows = list(enumerate(reference for reference, _ in PAIRS))
    bench = AltText(path=str(write_alt_text(tmp_path / "twitter", "twitter", rows)))
    items = bench.items()
    metrics, records = bench.score(items, {item.id: raw for item, (_, raw) in zip(items, PAIRS, strict=True)})
    official = official_get_score(PAIRS)
    assert set(metrics) == set(official)
    for key, value in official.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert records[4]["rouge_l"] == 0.0 and "Hypothesis is empty" in records[4]["rouge_error"]
    assert records[1]["output"] == "A red bus is parked on the street."


def test_word_tokenize_keeps_the_abbreviations_of_the_trained_punkt_model():
    # NLTK's English Punkt model knows these abbreviations, so no sentence ends after them and the
    # Treebank splitter keeps their final period; an untrained Punkt would split each of them.
    text = "Mr. Smith met Dr. Jones in the U.S. on Jan. 5 at 3 p.m. with Acme Inc. staff."
    assert word_tokenize(text) == [
        "Mr.", "Smith", "met", "Dr.", "Jones", "in", "the", "U.S.", "on", "Jan.", "5", "at", "3", "p.m.",
        "with", "Acme", "Inc.", "staff", ".",
    ]  # fmt: skip
    # Treebank rules: contractions, double quotes, currency (NLTK's documented example for the last)
    assert word_tokenize('"Hot-dog" can\'t cost $3.88.') == [
        "``",
        "Hot-dog",
        "''",
        "ca",
        "n't",
        "cost",
        "$",
        "3.88",
        ".",
    ]


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
    assert rouge_l("the cat sat on the mat.", "the cat is on the mat.")[0] == pytest.approx(0.8)
    # sentences split at '.': union of LCS words with the reference sentence = {a, cat, sleeps}:
    # R = 3/3, P = 3/5 (distinct hypothesis words a, dog, runs, cat, sleeps) -> F = 0.75
    assert rouge_l("a dog runs. a cat sleeps.", "a cat sleeps.")[0] == pytest.approx(0.75)
    assert rouge_l("the the the", "the")[0] == pytest.approx(1.0)  # distinct words
    assert rouge_l("The cat,", "the cat")[0] == pytest.approx(0.0)  # case and punctuation are kept
    assert rouge_l("", "the cat") == (0.0, None)
    assert rouge_l("the cat", "...")[0] == 0.0 and "Reference is empty" in rouge_l("the cat", "...")[1]


def test_cider_d_by_hand():
    # Corpus of two samples, log N = log 2; every n-gram has df 1 or 0, so every weight is log 2.
    # Sample 1, hypothesis "a b" against "a b c":
    #   k=1: (2 log²2) / (√2 log2 · √3 log2) = 2/√6;  k=2: log²2 / (log2 · √2 log2) = 1/√2;  k=3,4: 0
    #   bigram counts 1 and 2 -> penalty exp(-1/72)
    # Sample 2 shares no n-gram with its reference -> 0.
    mean, scores = cider_d(["a b", "x y"], [["a b c"], ["p q"]])
    first = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert scores == pytest.approx([first, 0.0])
    assert mean == pytest.approx(first / 2)
    assert cider_d(["a b"], [["a b"]])[0] == 0.0  # one sample: log N = 0, every weight 0


def test_clean_response():
    assert clean_response("Assistant: A photo.  ") == "A photo."
    assert clean_response("The Assistant: stays") == "The Assistant: stays"


def test_missing_nltk_data_makes_metrics_nan_with_the_install_line():
    metrics, samples = alt_text_metrics(["a red bus"], ["a red bus"], missing={"wordnet"})
    assert math.isnan(metrics["meteor"])
    assert metrics["bleu_1"] == pytest.approx(1.0) and metrics["edit_distance"] == 0.0
    assert INSTALL_LINE in samples[0]["unavailable"]["meteor"]
    metrics, _ = alt_text_metrics(["a red bus"], ["a red bus"], missing={"punkt_tab", "wordnet"})
    assert all(math.isnan(metrics[k]) for k in (*BLEU_WEIGHTS, "meteor", "edit_distance"))
    assert metrics["rouge_l"] == pytest.approx(1.0)  # needs no NLTK data


def test_config_decodes_as_the_official_inference():
    # mcmdpo_inference.py: beam search with 3 beams, 256 new tokens, no sampling (methods.md §2.7)
    config = OmegaConf.load(Path(__file__).parents[2] / "conf" / "benchmark" / "alt_text.yaml")
    assert OmegaConf.to_container(config.generation) == {
        "max_new_tokens": 256,
        "num_beams": 3,
        "do_sample": False,
    }


def test_alt_text_end_to_end(tmp_path):
    root = write_alt_text(tmp_path / "twitter", "twitter", [(7, "the cat sat on the mat"), (9, "a dog")])
    bench = AltText(path=str(root), subset="twitter")
    items = bench.items()
    assert [item.id for item in items] == ["7", "9"]
    assert items[0].image == str(root / "image" / "twitter_test" / "7.jpg")
    assert items[0].prompt.startswith("Given an image and context, generate alt-text")
    metrics, records = bench.score(items, {"7": "Assistant: the cat sat on the mat", "9": ""})
    # sample 7 is a perfect match (BLEU 1, ROUGE-L ~1, CIDEr-D 10 with idf log 2, distance 0; METEOR
    # F = 1 times the fragmentation penalty 1 - 0.5 (1 chunk / 6 matches)^3);
    # sample 9 is empty (0 everywhere, distance 2 tokens).
    assert metrics["bleu_1"] == pytest.approx(0.5) and metrics["bleu_4"] == pytest.approx(0.5)
    assert metrics["cumulative_bleu_4"] == pytest.approx(0.5)
    assert metrics["meteor"] == pytest.approx((1 - 0.5 * (1 / 6) ** 3) / 2)
    assert metrics["rouge_l"] == pytest.approx(0.5)
    assert metrics["cider"] == pytest.approx(5.0)
    assert metrics["edit_distance"] == pytest.approx(1.0)
    assert records[0]["output"] == "the cat sat on the mat" and records[1]["reference"] == "a dog"
