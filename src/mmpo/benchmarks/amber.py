"""AMBER (Wang et al., 2023, arXiv 2311.07397): generative and discriminative hallucination, LLM-free.

Official scorer: junyangwang0410/AMBER @534babf ``inference.py``; what it computes is restated here.

Data layout under ``benchmark.path`` (the AMBER repository's ``data/`` folder plus the images):
``data/annotations.json`` (item ``id`` at index ``id - 1``), ``data/relation.json`` (vocabulary word ->
associated words), ``data/safe_words.txt``, ``data/query/query_<task>.json`` (``[{"id", "image",
"query"}]``) and the images in ``images/`` (option ``image_dir``).

Generative task (ids 1-1004, "Describe this image."), per response:

1. nouns (:func:`extract_nouns`): ``nltk.word_tokenize``, ``nltk.pos_tag``, the tokens tagged ``NN*``,
   each replaced by its WordNet noun lemma, kept if it is in the vocabulary (keys and values of
   ``relation.json``); every occurrence counts. Case is kept, so "Dogs" at a sentence start is no
   vocabulary word, and WordNet's lemma decides, so "sunglasses" -> "sunglass" and "earrings" ->
   "earring" leave a vocabulary that spells them in the plural, while "men" stays "men";
2. per noun: a global safe word is neither correct nor hallucinated. Else, if it equals a truth object
   or one of its associated words, that truth object is *covered*. Else, if it equals a hallucination
   target or an associated word of one, that target is *hit* (Cog) and the noun is hallucinated,
   as is any other noun. (With ``word_match="spacy"`` a noun that is not an exact match of a truth
   word is compared by spaCy vector similarity > ``similarity_threshold``: similar to a target word ->
   target hit; similar to a truth word -> covered and not hallucinated.) When a word is associated with
   several objects the first in the reference's search order gets the credit: associated words of all
   objects first, then the object names.
3. with :data:`DENOMINATOR_START` (``data/metrics.txt`` starts every denominator there):
   ``CHAIR = Σ hallucinated nouns / (0.001 + Σ vocabulary nouns)`` (safe words in the denominator),
   ``Cover = Σ covered truth objects / (0.001 + Σ truth objects)``,
   ``Hal = 1 − #responses without hallucination / (0.001 + #responses)``,
   ``Cog = Σ hit targets / (0.001 + Σ hallucination targets)``.

Discriminative task (ids ≥ 1005): the official parser accepts exactly ``"Yes"`` or ``"No"`` (anything
else is neither and so wrong); ``discriminative_parser="yes_no"`` (not official) uses
:func:`~mmpo.benchmarks.yes_no.extract_yes_no` instead. "No" is the positive class, every count is a
sum of the official counters and every denominator starts at 0.001 per counter:
``accuracy = #correct / (N + 0.001)``, ``precision = #(pred no ∧ truth no) / (#pred no + 0.001)``,
``recall = #(pred no ∧ truth no) / (#truth no + 0.001)``, ``f1 = 2PR / (P + R + 1e-4)`` from the
*rounded* P and R, overall and for ``existence`` (type ``discriminative-hallucination``, F1 eps
1e-3 as in the reference), ``attribute`` (the state, number and action counters summed, so its
denominators start at 0.003), ``state``, ``number``, ``action`` and ``relation`` (the other types).
``AMBER score = ½ (1 − CHAIR + F1)`` when both tasks were scored (not in ``inference.py``; lmms-eval's
note of the original formula).

Every metric is the number ``inference.py`` prints (×100, rounded to 0.1) divided by 100, so
``100 × value`` shows the official digits; the records hold the raw counts.

Remaining differences from the official scorer:

- *word similarity*: the reference always runs spaCy ``en_core_web_lg`` similarity. That model is no
  PyPI package, so ``word_match="exact"`` (default) skips the step and relies on the annotation's own
  association lists, which already hold the synonyms AMBER accepts ("man" for "person",
  "sofa"/"couch"). Near-synonyms outside those lists (e.g. "puppy" for a "dog" truth object) count as
  hallucinated here but as covered in the reference, so CHAIR and Hal are higher and Cover lower (and
  Cog can be lower). ``word_match="spacy"`` with a local ``en_core_web_lg`` directory
  (``spacy_model``) is the reference; spaCy is then required.
- *NLTK data*: the tokenizer model, tagger and WordNet are the ones NLTK distributes, installed offline
  (:mod:`mmpo.benchmarks.nltk_data`); WordNet 3.0 comes from Debian's build of the same database.
- a truth or hallucination object missing from ``relation.json`` has no associated words here, where
  the reference stops with a ``KeyError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mmpo.benchmarks import nltk_data
from mmpo.benchmarks.base import Benchmark, EvalItem
from mmpo.benchmarks.text import pos_tag, word_tokenize, wordnet_lemma
from mmpo.benchmarks.yes_no import extract_yes_no

Similarity = Callable[[str, str], bool]
TASKS = {
    "generative": "query_generative.json",
    "discriminative": "query_discriminative.json",
    "all": "query_all.json",
}
#: Start value of every official denominator counter (``data/metrics.txt``).
DENOMINATOR_START = 0.001
#: Official discriminative counter of an annotation type (``as``/``an``/``aa``/``ha``); every other type
#: adds to the ``asso`` counter, here ``relation``.
COUNTER_OF_TYPE = {
    "discriminative-hallucination": "existence",
    "discriminative-attribute-state": "state",
    "discriminative-attribute-number": "number",
    "discriminative-attribute-action": "action",
}
#: Reported dimension -> (the official counters it sums, its F1 eps).
DIMENSIONS: dict[str, tuple[tuple[str, ...], float]] = {
    "existence": (("existence",), 1e-3),
    "attribute": (("state", "number", "action"), 1e-4),
    "state": (("state",), 1e-4),
    "number": (("number",), 1e-4),
    "action": (("action",), 1e-4),
    "relation": (("relation",), 1e-4),
}
NLTK_PACKAGES = ("punkt_tab", "averaged_perceptron_tagger_eng", "wordnet")


@dataclass(frozen=True)
class AmberLexicon:
    """``relation.json`` and ``safe_words.txt``: associations, global safe words and the vocabulary."""

    association: Mapping[str, Sequence[str]]
    safe_words: frozenset[str]

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.association) | frozenset(
            w for words in self.association.values() for w in words
        )

    def groups(self, objects: Sequence[str]) -> list[tuple[str, int]]:
        """(word, object index) in the reference's search order: associated words, then the objects."""
        associated = [(word, k) for k, obj in enumerate(objects) for word in self.association.get(obj, ())]
        return associated + [(obj, k) for k, obj in enumerate(objects)]


def extract_nouns(text: str, vocabulary: frozenset[str]) -> list[str]:
    """Step 1: WordNet lemmas of the ``NN*``-tagged tokens of ``text`` that are in ``vocabulary``."""
    nouns = [wordnet_lemma(word) for word, tag in pos_tag(word_tokenize(text)) if tag.startswith("NN")]
    return [noun for noun in nouns if noun in vocabulary]


def score_generative(
    nouns: Sequence[str],
    truth: Sequence[str],
    hallu: Sequence[str],
    lexicon: AmberLexicon,
    similar: Similarity | None = None,
) -> dict[str, Any]:
    """One response's AMBER counts (module docstring, step 2) from its vocabulary nouns."""
    safe_groups = lexicon.groups(truth)
    hallu_groups = lexicon.groups(hallu)
    covered = [False] * len(truth)
    hit = [False] * len(hallu)
    hallucinated = []
    for noun in nouns:
        if noun in lexicon.safe_words:
            continue
        exact_safe = next((k for word, k in safe_groups if word == noun), None)
        if exact_safe is not None:
            covered[exact_safe] = True
            continue
        exact_hallu = next((k for word, k in hallu_groups if word == noun), None)
        if exact_hallu is not None:
            hit[exact_hallu] = True
        if similar is not None:
            similar_hallu = next((k for word, k in hallu_groups if similar(noun, word)), None)
            if similar_hallu is not None:
                hit[similar_hallu] = True
            similar_safe = next((k for word, k in safe_groups if similar(noun, word)), None)
            if similar_safe is not None:
                covered[similar_safe] = True
                continue
        hallucinated.append(noun)
    return {
        "nouns": list(nouns),
        "hallucinated": hallucinated,
        "covered": [obj for obj, flag in zip(truth, covered, strict=True) if flag],
        "cog_hits": [obj for obj, flag in zip(hallu, hit, strict=True) if flag],
        "n_truth": len(truth),
        "n_hallu": len(hallu),
    }


def _percent(score: float, denominator: float) -> float:
    """``round(score / denominator × 100, 1)``, the official printed number."""
    return round(score / denominator * 100, 1)


def generative_metrics(counts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """CHAIR, Cover, Hal and Cog (module docstring, step 3) over responses scored by :func:`score_generative`."""
    start = DENOMINATOR_START
    clean = sum(not c["hallucinated"] for c in counts)
    printed = {
        "CHAIR": _percent(
            sum(len(c["hallucinated"]) for c in counts), start + sum(len(c["nouns"]) for c in counts)
        ),
        "Cover": _percent(sum(len(c["covered"]) for c in counts), start + sum(c["n_truth"] for c in counts)),
        "Hal": round(100 - clean / (start + len(counts)) * 100, 1),
        "Cog": _percent(sum(len(c["cog_hits"]) for c in counts), start + sum(c["n_hallu"] for c in counts)),
    }
    return {name: value / 100 for name, value in printed.items()}


def parse_discriminative(response: str, parser: str = "exact") -> str:
    """``"yes"``, ``"no"`` or ``"unknown"``; ``exact`` accepts only ``"Yes"``/``"No"`` as the reference."""
    if parser == "exact":
        return {"Yes": "yes", "No": "no"}.get(response, "unknown")
    return extract_yes_no(response)


def no_positive_metrics(counters: Sequence[Sequence[Mapping[str, str]]], f1_eps: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1 ("no" positive) over the rows of one or more official counters.

    Each counter's denominators start at :data:`DENOMINATOR_START`; the F1 is computed from the
    rounded precision and recall, as ``inference.py`` prints it.
    """
    start = DENOMINATOR_START * len(counters)
    rows = [row for counter in counters for row in counter]
    pred_no = [row for row in rows if row["parsed"] == "no"]
    true_positive = sum(row["label"] == "no" for row in pred_no)
    accuracy = _percent(sum(row["parsed"] == row["label"] for row in rows), len(rows) + start)
    precision = _percent(true_positive, len(pred_no) + start)
    recall = _percent(true_positive, sum(row["label"] == "no" for row in rows) + start)
    f1 = round(
        2 * (precision / 100) * (recall / 100) / ((precision / 100) + (recall / 100) + f1_eps) * 100, 1
    )
    return {"accuracy": accuracy / 100, "precision": precision / 100, "recall": recall / 100, "f1": f1 / 100}


def discriminative_metrics(rows: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """Overall and per-dimension metrics of the discriminative rows (``parsed``, ``label``, ``counter``)."""
    metrics = no_positive_metrics([rows], f1_eps=1e-4)
    for dimension, (counters, f1_eps) in DIMENSIONS.items():
        by_counter = [[row for row in rows if row["counter"] == counter] for counter in counters]
        if any(by_counter):
            values = no_positive_metrics(by_counter, f1_eps)
            metrics.update({f"{dimension}/{name}": value for name, value in values.items()})
    return metrics


class SpacySimilarity:
    """``similar(a, b) := spaCy(a).similarity(spaCy(b)) > threshold`` with a local spaCy model; cached."""

    def __init__(self, model: str, threshold: float = 0.8) -> None:
        self.model = model
        self.threshold = threshold
        self._docs: dict[str, Any] = {}

    @cached_property
    def _nlp(self) -> Any:
        try:
            import spacy
        except ImportError as error:
            raise ImportError(
                "amber: word_match='spacy' needs the spacy package and a local model directory "
                "(e.g. en_core_web_lg installed from a wheel); use word_match='exact' otherwise."
            ) from error
        return spacy.load(self.model)

    def _doc(self, word: str) -> Any:
        if word not in self._docs:
            self._docs[word] = self._nlp(word)
        return self._docs[word]

    def __call__(self, a: str, b: str) -> bool:
        return bool(self._doc(a).similarity(self._doc(b)) > self.threshold)


class AMBER(Benchmark):
    """AMBER generative and/or discriminative task (option ``task``)."""

    name = "amber"
    source = "junyangwang0410/AMBER GitHub repository (data/ folder); images from the Google-Drive link in its README"

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        task: str = "generative",
        image_dir: str = "images",
        word_match: str = "exact",
        spacy_model: str | None = None,
        similarity_threshold: float = 0.8,
        discriminative_parser: str = "exact",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        _check_choice("task", task, TASKS)
        _check_choice("word_match", word_match, ("exact", "spacy"))
        _check_choice("discriminative_parser", discriminative_parser, ("exact", "yes_no"))
        if word_match == "spacy" and not spacy_model:
            raise ValueError("amber: word_match='spacy' needs spacy_model (a local spaCy model directory)")
        if task != "discriminative":
            nltk_data.require("amber (generative task)", NLTK_PACKAGES)
        self.task = task
        self.image_dir = image_dir
        self.word_match = word_match
        self.discriminative_parser = discriminative_parser
        self.similar = SpacySimilarity(spacy_model, similarity_threshold) if word_match == "spacy" else None

    _FILES = ("data/annotations.json", "data/relation.json", "data/safe_words.txt")

    @property
    def query_file(self) -> str:
        return f"data/query/{TASKS[self.task]}"

    def data_files(self) -> list[Path]:
        return self.under_root(self.query_file, *self._FILES)

    def items(self) -> list[EvalItem]:
        query_file = self.query_file
        root = self.require(query_file, *self._FILES)
        image_dir = self.resolve(self.image_dir)
        queries = json.loads((root / query_file).read_text(encoding="utf-8"))
        items = [
            EvalItem(
                id=str(row["id"]),
                image=str(image_dir / row["image"]),
                prompt=self.with_suffix(row["query"]),
                meta={"amber_id": int(row["id"])},
            )
            for row in queries
        ]
        return self.truncate(items)

    def _load(self) -> tuple[list[dict[str, Any]], AmberLexicon]:
        root = self.require(*self._FILES)
        annotations = json.loads((root / "data/annotations.json").read_text(encoding="utf-8"))
        association = json.loads((root / "data/relation.json").read_text(encoding="utf-8"))
        with (root / "data/safe_words.txt").open(encoding="utf-8") as handle:
            safe = frozenset(line.split("\n")[0] for line in handle)  # the reference's reading, no strip
        return annotations, AmberLexicon(association, safe)

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        annotations, lexicon = self._load()
        generative: list[dict[str, Any]] = []
        discriminative: list[dict[str, Any]] = []
        records = []
        for item, response in zip(items, self.outputs_for(items, outputs), strict=True):
            annotation = annotations[item.meta["amber_id"] - 1]
            record: dict[str, Any] = {
                "id": item.id,
                "prompt": item.prompt,
                "output": response,
                "type": annotation["type"],
            }
            if annotation["type"] == "generative":
                counts = score_generative(
                    extract_nouns(response, lexicon.vocabulary),
                    annotation["truth"],
                    annotation["hallu"],
                    lexicon,
                    self.similar,
                )
                generative.append(counts)
                record.update(counts)
            else:
                row = {
                    "parsed": parse_discriminative(response, self.discriminative_parser),
                    "label": annotation["truth"],
                    "counter": COUNTER_OF_TYPE.get(annotation["type"], "relation"),
                }
                discriminative.append(row)
                record.update(row)
            records.append(record)
        metrics: dict[str, float] = {}
        if generative:
            metrics.update(generative_metrics(generative))
        if discriminative:
            metrics.update(discriminative_metrics(discriminative))
        if generative and discriminative:
            metrics["amber_score"] = 0.5 * (1 - metrics["CHAIR"] + metrics["f1"])
        return metrics, records


def _check_choice(key: str, value: str, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"amber: {key} must be one of {allowed}, got {value!r}")
