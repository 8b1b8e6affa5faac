"""Provenance: SHA-256 of the files a benchmark read, and which settings make two numbers incomparable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmpo.benchmarks.mmvp_vlm import MMVPVLM
from mmpo.benchmarks.naturalbench import NaturalBenchRetrieval
from mmpo.benchmarks.pope import POPE
from mmpo.benchmarks.retrieval import KarpathyRetrieval
from mmpo.benchmarks.shapes import ShapesCHAIR, ShapesPOPE
from mmpo.benchmarks.shapes_retrieval import ShapesRetrieval
from mmpo.benchmarks.winoground import Winoground
from mmpo.provenance import CHUNK, comparability_problems, data_provenance, sha256_file

from .benchmarks.fixtures import files_opened, write_json, write_jsonl, write_pope
from .benchmarks.test_retrieval import write_karpathy
from .reports.helpers import document


def test_sha256_file_streams_files_larger_than_a_chunk(tmp_path):
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * (3 * CHUNK // 256 + 7)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_pope_hashes_the_question_file_of_each_split_it_reads(tmp_path):
    root = write_pope(tmp_path / "pope", {"random": [(1, "dog", "yes")], "popular": [(2, "cat", "no")]})
    benchmark = POPE(path=str(root), splits=["popular"])
    benchmark.items()
    expected = hashlib.sha256((root / "coco_pope_popular.json").read_bytes()).hexdigest()
    assert data_provenance(benchmark) == {"root": str(root), "files": {"coco_pope_popular.json": expected}}


def test_shapes_benchmarks_hash_the_world_files_of_their_splits(shapes_dir):
    world = {"num_scenes": 40, "seed": 0, "image_size": 64}
    chair = ShapesCHAIR(path=str(shapes_dir), world=world)
    pope = ShapesPOPE(path=str(shapes_dir), world=world)
    assert set(data_provenance(chair)["files"]) == {"manifest.json", "scenes.jsonl", "test.jsonl"}
    files = data_provenance(pope)["files"]  # its negatives come from the training scenes' statistics
    assert set(files) == {"manifest.json", "scenes.jsonl", "train.jsonl", "test.jsonl"}
    assert files["train.jsonl"] == hashlib.sha256((shapes_dir / "train.jsonl").read_bytes()).hexdigest()


def test_comparability_names_each_differing_setting():
    base = document([])
    assert comparability_problems(base, document([])) == []
    moved = document(
        [], config={**base["config"], "path": "/elsewhere"}, data={**base["data"], "root": "/elsewhere"}
    )
    assert comparability_problems(base, moved) == []  # the same files in another place

    other = document(
        [],
        decoding={**base["decoding"], "num_beams": 3},
        data={"root": "/data/shapes", "files": {"test.jsonl": "b" * 64}},
        config={**base["config"], "limit": 10, "generation": {"num_beams": 3}},
        judge={"backend": "openai", "model": "judge-7b", "served_model": "judge-7b-0613"},
    )
    assert comparability_problems(base, other) == [
        f"data.files.test.jsonl: {'a' * 64!r} vs {'b' * 64!r}",
        "decoding.num_beams: 1 vs 3",
        "judge: None vs {'backend': 'openai', 'model': 'judge-7b', 'served_model': 'judge-7b-0613'}",
        "config.limit: None vs 10",
    ]
    judged = document([], judge={"backend": "openai", "model": "judge-7b", "served_model": "judge-7b-0314"})
    assert comparability_problems(
        other, {**judged, **{k: other[k] for k in ("data", "decoding", "config")}}
    ) == ["judge.served_model: 'judge-7b-0613' vs 'judge-7b-0314'"]
    old = {key: value for key, value in base.items() if key not in ("data", "judge")}  # an older results file
    data, judge = comparability_problems(old, base)
    assert data.startswith("data: not recorded vs {'files': {'test.jsonl': 'aaaa") and data.endswith("...")
    assert judge == "judge: not recorded vs None"


def write_embedding_data(name: str, root: Path) -> None:
    """The smallest data set each embedding benchmark's ``items()`` reads (images are not opened there)."""
    pair = {"image_0": "a", "image_1": "b", "caption_0": "red", "caption_1": "blue"}
    if name == "retrieval":
        write_karpathy(root)
    elif name == "winoground":
        write_jsonl(root / "data" / "examples.jsonl", [{"id": 0, **pair}])
    elif name == "naturalbench":
        write_json(root / "metadata.json", [{"index": 0, **pair}])
    elif name == "mmvp_vlm":
        root.mkdir(parents=True)
        (root / "Questions.csv").write_text("Question ID,Type,Statement\n1,Color,red\n2,Color,blue\n")


EMBEDDING = {
    "retrieval": KarpathyRetrieval,
    "winoground": Winoground,
    "naturalbench": NaturalBenchRetrieval,
    "mmvp_vlm": MMVPVLM,
}


@pytest.mark.parametrize("name", [*EMBEDDING, "shapes_retrieval"])
def test_embedding_benchmarks_hash_exactly_the_files_they_read(name, tmp_path):
    root = tmp_path / name
    if name == "shapes_retrieval":
        benchmark = ShapesRetrieval(str(root), world={"num_scenes": 40, "seed": 0, "image_size": 32})
        benchmark.world.ensure()
    else:
        write_embedding_data(name, root)
        benchmark = EMBEDDING[name](str(root))
    with files_opened(root) as opened:
        benchmark.items()
    provenance = data_provenance(benchmark)
    assert set(provenance["files"]) == opened and opened
    for file, digest in provenance["files"].items():
        assert digest == hashlib.sha256((root / file).read_bytes()).hexdigest()
