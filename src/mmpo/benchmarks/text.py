"""The word-level text processing of the official rule-based scorers, through the libraries they call.

- :func:`word_tokenize` is ``nltk.word_tokenize``: Punkt sentence splitting with NLTK's pretrained
  English model (``punkt_tab``), then the Treebank word splitter on each sentence. CHAIR (both
  variants), AMBER and MCM-DPO's ``get_score.py`` tokenise with it.
- :func:`pos_tag` is ``nltk.pos_tag`` (the averaged perceptron tagger), AMBER's noun filter.
- :func:`wordnet_lemma` is ``nltk.stem.WordNetLemmatizer().lemmatize(word)`` (noun lemma), used by
  AMBER and by RLHF-V's CHAIR.
- :func:`inflect_singular` is ``inflect.engine().singular_noun(word)``, or ``word`` itself when inflect
  does not take it for a plural: the stand-in for ``pattern.en.singularize`` of the original CHAIR
  code (``pattern`` no longer installs, clips/pattern#275). Where the two differ is listed in
  :mod:`mmpo.benchmarks.coco_objects`.

The NLTK data they read is installed offline (:mod:`mmpo.benchmarks.nltk_data`, ``make nltk-data``);
when it is absent each function raises :class:`~mmpo.benchmarks.nltk_data.NltkDataMissing` with the
install line. Nothing is downloaded.
"""

from __future__ import annotations

from functools import cache, lru_cache

import inflect
import nltk
from nltk.stem import WordNetLemmatizer

from mmpo.benchmarks.nltk_data import NltkDataMissing


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` (English Punkt model)."""
    try:
        return nltk.word_tokenize(text)
    except LookupError as error:
        raise NltkDataMissing("nltk.word_tokenize", ["punkt_tab"]) from error


def pos_tag(tokens: list[str]) -> list[tuple[str, str]]:
    """``nltk.pos_tag(tokens)``: (token, Penn Treebank tag) pairs."""
    try:
        return nltk.pos_tag(tokens)
    except LookupError as error:
        raise NltkDataMissing("nltk.pos_tag", ["averaged_perceptron_tagger_eng"]) from error


@cache
def _lemmatizer() -> WordNetLemmatizer:
    return WordNetLemmatizer()


@lru_cache(maxsize=65536)
def wordnet_lemma(word: str) -> str:
    """``WordNetLemmatizer().lemmatize(word)``: the shortest WordNet noun base form, else ``word``."""
    try:
        return _lemmatizer().lemmatize(word)
    except LookupError as error:
        raise NltkDataMissing("nltk's WordNetLemmatizer", ["wordnet"]) from error


@cache
def _inflect_engine() -> inflect.engine:
    return inflect.engine()


@lru_cache(maxsize=65536)
def inflect_singular(word: str) -> str:
    """``inflect.engine().singular_noun(word)``, or ``word`` when that is ``False`` (not a plural) or empty."""
    return _inflect_engine().singular_noun(word) or word
