"""The offline NLTK data installer: its safe unpickler and the WordNet directory it lays out."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle

import pytest

from ..conftest import ROOT

spec = importlib.util.spec_from_file_location("install_nltk_data", ROOT / "scripts" / "install_nltk_data.py")
installer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(installer)


def test_tagger_unpickler_admits_only_builtin_sets():
    model = ({"bias": {"NN": 1.5}}, {"the": "DT"}, {"NN", "DT"})
    assert installer._SetOnlyUnpickler(io.BytesIO(pickle.dumps(model, protocol=2))).load() == model
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        installer._SetOnlyUnpickler(io.BytesIO(pickle.dumps(os.system))).load()


def test_lexnames_has_the_45_wordnet_files_in_nltk_reader_format(tmp_path):
    source = tmp_path / "dict"
    source.mkdir()
    for name in installer.WORDNET_FILES:
        (source / name).write_text(name, encoding="utf-8")
    installer.install_wordnet(tmp_path / "target", source)
    wordnet = tmp_path / "target" / "corpora" / "wordnet"
    lines = (wordnet / "lexnames").read_text(encoding="utf-8").splitlines()
    # NLTK's WordNetCorpusReader: "index name category" per line, index == line number
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"
    assert all(int(line.split()[0]) == i for i, line in enumerate(lines))
    # copies, not links: NLTK refuses to follow a link out of its data directory
    assert all(
        (wordnet / name).is_file() and not (wordnet / name).is_symlink() for name in installer.WORDNET_FILES
    )


def test_missing_wordnet_files_name_the_debian_packages(tmp_path):
    (tmp_path / "dict").mkdir()
    with pytest.raises(SystemExit, match="apt-get install -y wordnet-base wordnet-sense-index"):
        installer.install_wordnet(tmp_path / "target", tmp_path / "dict")
