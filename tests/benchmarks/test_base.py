"""The benchmark contract: missing data errors, option checks, and the conf/benchmark configs."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmpo.benchmarks.alt_text import AltText
from mmpo.benchmarks.amber import AMBER
from mmpo.benchmarks.base import Benchmark, BenchmarkDataMissing
from mmpo.benchmarks.hallusionbench import HallusionBench
from mmpo.benchmarks.mmhal import MMHalBench
from mmpo.benchmarks.mmvp import MMVP
from mmpo.benchmarks.object_halbench import ObjectHalBench
from mmpo.benchmarks.pope import POPE

CONF = Path(__file__).resolve().parents[2] / "conf" / "benchmark"

# benchmark class -> a file its error message must name
EXPECTED_FILE = {
    POPE: "coco_pope_random.json",
    ObjectHalBench: "obj_halbench_300_with_image.jsonl",
    AMBER: "data/annotations.json",
    MMHalBench: "response_template.json",
    HallusionBench: "HallusionBench.json",
    MMVP: "Questions.csv",
    AltText: "twitter_test.json",
}


@pytest.mark.parametrize("cls", list(EXPECTED_FILE), ids=lambda cls: cls.name)
def test_missing_data_names_key_files_and_source(cls, tmp_path):
    for path, state in ((None, "is not set"), (str(tmp_path / "nowhere"), "nowhere")):
        with pytest.raises(BenchmarkDataMissing) as error:
            cls(path=path).items()
        message = str(error.value)
        assert message.startswith(f"{cls.name}: benchmark data not found")
        assert f"`benchmarks.{cls.name}.path`" in message and state in message
        assert EXPECTED_FILE[cls] in message
        assert cls.source in message
    assert issubclass(BenchmarkDataMissing, FileNotFoundError)


def test_unknown_options_fail_at_construction():
    with pytest.raises(TypeError, match="unknown option"):
        POPE(path="x", batch_size=4)
    with pytest.raises(ValueError, match="limit"):
        MMVP(limit=0)
    bench = MMVP(generation={"max_new_tokens": 8})
    assert bench.generation == {"max_new_tokens": 8}


REAL = ["pope", "object_halbench", "amber", "mmhal", "hallusionbench", "mmvp"]


@pytest.mark.parametrize("name", [*REAL, "alt_text"])
def test_configs_instantiate_with_pinned_decoding(name, tmp_path):
    config = OmegaConf.create(
        {"paths": {"data_dir": str(tmp_path)}, "benchmark": OmegaConf.load(CONF / f"{name}.yaml")}
    )
    bench = instantiate(config.benchmark)
    assert isinstance(bench, Benchmark) and bench.name == name
    expected_root = tmp_path / "benchmarks" / name
    assert bench.path == expected_root or bench.path.parent == expected_root  # alt_text/<subset>
    assert bench.limit is None
    assert set(bench.generation) == {"max_new_tokens", "num_beams", "do_sample"}
    assert bench.generation["do_sample"] is False
    if name in REAL:
        assert bench.generation["num_beams"] == 1
    with pytest.raises(BenchmarkDataMissing):
        bench.items()
