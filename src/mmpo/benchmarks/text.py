"""Offline word tokenisation and singularisation for the rule-based scorers (CHAIR, AMBER, alt-text).

Tokenisation. The reference scorers call ``nltk.word_tokenize``: Punkt sentence splitting with the
pretrained English model, then the Treebank-style ``NLTKWordTokenizer`` on every sentence. The
pretrained model is NLTK *data* (``punkt_tab``) that ``nltk.download`` fetches from the network, which
mmpo never does at run time. The word splitter itself needs no data, so :func:`word_tokenize` keeps it
and replaces only the sentence model: Punkt with its default (untrained) parameters plus a short list
of common English abbreviations. The tokens are the reference's except around abbreviations the
trained model knows and this list does not (there a final ``.`` may be split off where the reference
keeps it, or vice versa). We use this rather than a hand-written regex tokenizer because a regex
would differ from the reference far more often (``can't`` -> ``ca`` + ``n't``, double quotes turned
into the tokens \`\` and '', hyphenated words kept whole), and BLEU on alt-text is sensitive to
exactly those.

Singularisation. CHAIR's reference uses ``pattern.en.singularize`` (the package no longer installs,
clips/pattern#275) and AMBER uses NLTK's WordNet lemmatiser (needs the WordNet corpus, again a
download). :func:`singularize` is a small suffix-rule singulariser written for the words these
metrics look up (COCO synonyms, AMBER's object vocabulary) and safe on the frequent function words
("bus", "glass", "this" stay as they are). Irregular plurals that the synonym lists spell out
themselves ("people", "children", "cattle") need no rule: the lists map them. Differences to the
references: pattern turns "glass" into "glas" (hence CHAIR's ``wine glas`` rule, which we do not need),
and WordNet returns the shortest lemma it knows (AMBER mirrors that with :func:`vocabulary_lemma`).
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache

from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

# Abbreviations (lower case, without the final period) that should not end a sentence. A small
# stand-in for the abbreviation list that the pretrained Punkt model learnt from its corpus.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "approx"}
)


@lru_cache(maxsize=1)
def _sentence_splitter() -> PunktSentenceTokenizer:
    parameters = PunktParameters()
    parameters.abbrev_types = set(_ABBREVIATIONS)
    return PunktSentenceTokenizer(parameters)


_WORD_SPLITTER = NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` without NLTK data: sentence split, then Treebank word split per sentence."""
    return [
        token
        for sentence in _sentence_splitter().tokenize(text)
        for token in _WORD_SPLITTER.tokenize(sentence)
    ]


# --- singularisation ------------------------------------------------------------------------------

_IRREGULAR = {
    "mice": "mouse",
    "geese": "goose",
    "oxen": "ox",
    "feet": "foot",
    "teeth": "tooth",
    "children": "child",
    "buses": "bus",
    "busses": "bus",
    "cacti": "cactus",
    "knives": "knife",
    "wives": "wife",
    "lives": "life",
    "leaves": "leaf",
    "loaves": "loaf",
    "halves": "half",
    "calves": "calf",
    "wolves": "wolf",
    "shelves": "shelf",
    "scarves": "scarf",
    "thieves": "thief",
    "hooves": "hoof",
    "elves": "elf",
}
# Words ending in -men that are singular ("women" -> "woman" is the rule, these are the exceptions).
_SINGULAR_MEN = frozenset(
    {"specimen", "omen", "amen", "stamen", "abdomen", "semen", "regimen", "ramen", "hymen"}
)
# Singular (or invariant) words ending in s that no suffix rule below protects.
_SINGULAR_S = frozenset(
    {
        "this", "thus", "yes", "was", "has", "does", "is", "its", "his", "hers", "ours", "yours", "theirs",
        "always", "perhaps", "whereas", "besides", "sometimes", "series", "species", "news", "means",
        "scissors", "tennis", "iris", "axis", "chassis", "pelvis", "trellis", "debris", "lens", "canvas",
        "atlas", "alias", "bias", "christmas", "texas", "chaos", "cosmos", "thermos", "kudos", "physics",
        "mathematics", "politics", "athletics", "gymnastics", "electronics", "aerobics",
    }
)  # fmt: skip
# Plural -ies whose singular ends in -ie, not -y.
_IE_SINGULAR = frozenset(
    {"cookies", "movies", "zombies", "hoodies", "selfies", "smoothies", "brownies", "goalies", "rookies",
     "calories", "birdies", "veggies", "lassies", "prairies", "pixies", "eyries", "genies"}
)  # fmt: skip
# Plural -oes whose singular ends in -o ("shoes", "canoes", "toes" just drop the s).
_OES_TO_O = frozenset(
    {"potatoes", "tomatoes", "heroes", "echoes", "volcanoes", "mangoes", "mosquitoes", "torpedoes",
     "dominoes", "tornadoes", "buffaloes", "avocadoes", "vetoes", "embargoes", "cargoes", "mottoes"}
)  # fmt: skip
# Plural -ches whose singular ends in -che.
_CHE_SINGULAR = frozenset(
    {"niches", "caches", "headaches", "moustaches", "mustaches", "aches", "avalanches", "cliches", "quiches"}
)  # fmt: skip


@lru_cache(maxsize=65536)
def singularize(word: str) -> str:
    """Singular of an English noun by suffix rules; unchanged if it is not a recognisable plural.

    Rules in order: irregular table; ``-men`` -> ``-man``; words of at most 3 letters, or not ending
    in ``s``, or ending in ``-ss``/``-us``/``-sis`` or listed as singular are kept; ``-ies`` -> ``-y``
    (``-ie`` for 4-letter words like "ties" and a short list); ``-sses``/``-ches``/``-shes``/``-xes``/
    ``-zzes`` drop ``es``; ``-oes`` drops ``es`` for a list ("potatoes") else ``s`` ("shoes");
    otherwise drop the final ``s`` ("vases", "stoves", "skis", "glasses" -> "glass").
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("men") and word not in _SINGULAR_MEN:
        return word[:-3] + "man"
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "sis")) or word in _SINGULAR_S:
        return word
    if word.endswith("ies"):
        return word[:-1] if len(word) <= 4 or word in _IE_SINGULAR else word[:-3] + "y"
    if word.endswith("ches"):
        return word[:-1] if word in _CHE_SINGULAR else word[:-2]
    if word.endswith(("sses", "shes", "xes", "zzes")):
        return word[:-2]
    if word.endswith("oes"):
        return word[:-2] if word in _OES_TO_O else word[:-1]
    return word[:-1]


def vocabulary_lemma(token: str, vocabulary: Collection[str]) -> str | None:
    """The shortest of ``{token, singularize(token)}`` found in ``vocabulary``, else ``None``.

    Mirrors how NLTK's WordNet lemmatiser picks the shortest base form that WordNet knows, with the
    benchmark's own vocabulary standing in for WordNet ("sunglasses" stays, "dogs" becomes "dog").
    """
    candidates = [form for form in (singularize(token), token) if form in vocabulary]
    return min(candidates, key=len) if candidates else None
