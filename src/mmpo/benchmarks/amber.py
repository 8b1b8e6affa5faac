"""AMBER (Wang et al., 2023, arXiv 2311.07397): generative and discriminative hallucination, LLM-free.

Data layout under ``benchmark.path`` (the AMBER repository's ``data/`` folder plus the images):
``data/annotations.json`` (item ``id`` at index ``id - 1``), ``data/relation.json`` (vocabulary word ->
associated words), ``data/safe_words.txt``, ``data/query/query_<task>.json`` (``[{"id", "image",
"query"}]``) and the images in ``images/`` (option ``image_dir``).

Generative task (ids 1-1004, "Describe this image."), per response (official ``inference.py``):

1. nouns: the response's nouns (see *noun extraction*) that are in the vocabulary (keys and values of
   ``relation.json``); every occurrence counts;
2. per noun: a global safe word is neither correct nor hallucinated. Else, if it equals a truth object
   or one of its associated words, that truth object is *covered*. Else, if it equals a hallucination
   target or an associated word of one, that target is *hit* (Cog) and the noun is hallucinated,
   as is any other noun. (With ``word_match="spacy"`` a noun that is not an exact match is compared
   with those words by spaCy vector similarity > ``similarity_threshold``: similar to a target word ->
   target hit; similar to a truth word -> covered and not hallucinated.) When a word is associated with
   several objects the first in the reference's search order gets the credit: associated words of all
   objects first, then the object names.
3. ``CHAIR = Σ hallucinated nouns / Σ vocabulary nouns`` (safe words in the denominator),
   ``Cover = Σ covered truth objects / Σ truth objects``,
   ``Hal = share of responses with ≥ 1 hallucinated noun``,
   ``Cog = Σ hit targets / Σ hallucination targets``.

Discriminative task (ids ≥ 1005): the official parser accepts exactly ``"Yes"`` or ``"No"`` (anything
else is neither and so wrong); ``discriminative_parser="yes_no"`` uses
:func:`~mmpo.benchmarks.yes_no.extract_yes_no` instead. "No" is the positive class:
``accuracy``, ``precision = #(pred no ∧ truth no) / #pred no``, ``recall = #(pred no ∧ truth no) / #truth no``,
``f1 = 2PR / (P + R + 1e-4)`` overall and for ``existence`` (type ``discriminative-hallucination``,
eps 1e-3 as in the reference), ``attribute`` (state, number, action) and ``relation`` (the rest).
``AMBER score = ½ (1 − CHAIR + F1)`` when both tasks were scored (lmms-eval's note of the original formula).

All values are fractions (the paper prints ×100, rounded to 0.1). The reference starts every
denominator at 0.001 to avoid division by zero; here an empty denominator gives 0 and the others are
exact, which moves no published digit.

Offline substitutes and how they differ from the reference:

- *word similarity*: the reference uses spaCy ``en_core_web_lg`` vectors. ``word_match="exact"``
  (default) skips that step and relies on the annotation's own association lists, which already hold
  the synonyms AMBER accepts ("man" for "person", "sofa"/"couch"). Near-synonyms outside those lists
  (e.g. "puppy" for a "dog" truth object) count as hallucinated here but as covered in the reference,
  so CHAIR and Hal are higher and Cover lower (and Cog can be lower). ``word_match="spacy"`` restores
  the reference given a local spaCy model directory (``spacy_model``); spaCy is then required.
- *noun extraction*: the reference tags with ``nltk.pos_tag`` and lemmatises with WordNet, both NLTK
  data. ``noun_extractor="rules"`` (default) takes every token whose singular form
  (:func:`~mmpo.benchmarks.text.vocabulary_lemma`) is in the vocabulary, without a POS tagger; "can"
  and "watch" count only right after a determiner ("a can", but not "you can see"). Other words used
  as verbs or adjectives ("drink", "orange") are counted where the tagger would skip them.
  ``noun_extractor="nltk"`` is the reference route when the NLTK data (``punkt_tab``,
  ``averaged_perceptron_tagger_eng``, ``wordnet``) is on disk under ``NLTK_DATA``.
  Both are case-sensitive, as the reference ("Dogs" at a sentence start is not a vocabulary word).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mmpo.benchmarks.base import Benchmark, EvalItem, ratio
from mmpo.benchmarks.text import vocabulary_lemma, word_tokenize
from mmpo.benchmarks.yes_no import binary_metrics, extract_yes_no

Similarity = Callable[[str, str], bool]
TASKS = {
    "generative": "query_generative.json",
    "discriminative": "query_discriminative.json",
    "all": "query_all.json",
}
_DETERMINER_GATED = frozenset({"can", "watch"})
_DETERMINERS = frozenset(
    {"a", "an", "the", "this", "that", "these", "those", "one", "two", "three", "some", "each", "every",
     "another", "its", "his", "her", "their", "my", "your", "our"}
)  # fmt: skip
_ATTRIBUTE_TYPES = frozenset(
    {"discriminative-attribute-state", "discriminative-attribute-number", "discriminative-attribute-action"}
)


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


def rule_nouns(text: str, vocabulary: frozenset[str]) -> list[str]:
    """Vocabulary nouns of ``text`` without a POS tagger (module docstring, *noun extraction*)."""
    tokens = word_tokenize(text)
    nouns = []
    for i, token in enumerate(tokens):
        lemma = vocabulary_lemma(token, vocabulary)
        if lemma is None:
            continue
        if lemma in _DETERMINER_GATED and (i == 0 or tokens[i - 1].lower() not in _DETERMINERS):
            continue
        nouns.append(lemma)
    return nouns


def nltk_nouns(text: str, vocabulary: frozenset[str]) -> list[str]:
    """The reference route: ``nltk.pos_tag`` nouns, WordNet-lemmatised, kept if in the vocabulary."""
    import nltk
    from nltk.stem import WordNetLemmatizer

    try:
        tagged = nltk.pos_tag(nltk.word_tokenize(text))
        lemmatizer = WordNetLemmatizer()
        nouns = [lemmatizer.lemmatize(word) for word, tag in tagged if tag.startswith("NN")]
    except LookupError as error:
        raise LookupError(
            "amber: noun_extractor='nltk' needs the NLTK data packages punkt_tab, averaged_perceptron_tagger_eng "
            "and wordnet in a directory listed in NLTK_DATA; nothing is downloaded at run time. Use "
            "noun_extractor='rules' for the offline substitute."
        ) from error
    return [noun for noun in nouns if noun in vocabulary]


def score_generative(
    nouns: Sequence[str],
    truth: Sequence[str],
    hallu: Sequence[str],
    lexicon: AmberLexicon,
    similar: Similarity | None = None,
) -> dict[str, Any]:
    """One response's AMBER counts (module docstring, steps 2-3) from its vocabulary nouns."""
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


def generative_metrics(counts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """CHAIR, Cover, Hal and Cog over responses scored by :func:`score_generative`."""
    return {
        "CHAIR": ratio(sum(len(c["hallucinated"]) for c in counts), sum(len(c["nouns"]) for c in counts)),
        "Cover": ratio(sum(len(c["covered"]) for c in counts), sum(c["n_truth"] for c in counts)),
        "Hal": ratio(sum(bool(c["hallucinated"]) for c in counts), len(counts)),
        "Cog": ratio(sum(len(c["cog_hits"]) for c in counts), sum(c["n_hallu"] for c in counts)),
    }


def parse_discriminative(response: str, parser: str = "exact") -> str:
    """``"yes"``, ``"no"`` or ``"unknown"``; ``exact`` accepts only ``"Yes"``/``"No"`` as the reference."""
    if parser == "exact":
        return {"Yes": "yes", "No": "no"}.get(response, "unknown")
    return extract_yes_no(response)


def dimension_of(item_type: str) -> str:
    """existence, attribute or relation for a discriminative annotation ``type``."""
    if item_type == "discriminative-hallucination":
        return "existence"
    return "attribute" if item_type in _ATTRIBUTE_TYPES else "relation"


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
        noun_extractor: str = "rules",
        discriminative_parser: str = "exact",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        _check_choice("task", task, TASKS)
        _check_choice("word_match", word_match, ("exact", "spacy"))
        _check_choice("noun_extractor", noun_extractor, ("rules", "nltk"))
        _check_choice("discriminative_parser", discriminative_parser, ("exact", "yes_no"))
        if word_match == "spacy" and not spacy_model:
            raise ValueError("amber: word_match='spacy' needs spacy_model (a local spaCy model directory)")
        self.task = task
        self.image_dir = image_dir
        self.word_match = word_match
        self.noun_extractor = noun_extractor
        self.discriminative_parser = discriminative_parser
        self.similar = SpacySimilarity(spacy_model, similarity_threshold) if word_match == "spacy" else None

    _FILES = ("data/annotations.json", "data/relation.json", "data/safe_words.txt")

    def items(self) -> list[EvalItem]:
        query_file = f"data/query/{TASKS[self.task]}"
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
        safe = (root / "data/safe_words.txt").read_text(encoding="utf-8").splitlines()
        return annotations, AmberLexicon(association, frozenset(w.strip() for w in safe if w.strip()))

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        annotations, lexicon = self._load()
        extract = rule_nouns if self.noun_extractor == "rules" else nltk_nouns
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
                    extract(response, lexicon.vocabulary),
                    annotation["truth"],
                    annotation["hallu"],
                    lexicon,
                    self.similar,
                )
                generative.append(counts)
                record.update(counts)
            else:
                parsed = parse_discriminative(response, self.discriminative_parser)
                row = {
                    "parsed": parsed,
                    "label": annotation["truth"],
                    "dimension": dimension_of(annotation["type"]),
                }
                discriminative.append(row)
                record.update(row)
            records.append(record)
        metrics: dict[str, float] = {}
        if generative:
            metrics.update(generative_metrics(generative))
        if discriminative:
            metrics.update(_discriminative_metrics(discriminative))
        if generative and discriminative:
            metrics["amber_score"] = 0.5 * (1 - metrics["CHAIR"] + metrics["f1"])
        return metrics, records


def _discriminative_metrics(rows: Sequence[Mapping[str, str]]) -> dict[str, float]:
    metrics = _no_positive(rows, eps=1e-4)
    for dimension, eps in (("existence", 1e-3), ("attribute", 1e-4), ("relation", 1e-4)):
        subset = [row for row in rows if row["dimension"] == dimension]
        if subset:
            metrics.update({f"{dimension}/{k}": v for k, v in _no_positive(subset, eps).items()})
    return metrics


def _no_positive(rows: Iterable[Mapping[str, str]], eps: float) -> dict[str, float]:
    rows = list(rows)
    metrics = binary_metrics([r["parsed"] for r in rows], [r["label"] for r in rows], positive="no", eps=eps)
    del metrics["positive_ratio"]
    return metrics


def _check_choice(key: str, value: str, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"amber: {key} must be one of {allowed}, got {value!r}")
