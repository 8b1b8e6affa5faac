"""Benchmarks: read public evaluation data from local paths, score generated outputs.

One module per benchmark (``pope``, ``object_halbench``, ``amber``, ``mmhal``, ``hallusionbench``,
``mmvp``, ``alt_text``) plus shared pieces (``base``, ``text``, ``nltk_data``, ``coco_objects``,
``chair``, ``yes_no``, ``judge``) and the retrieval metrics (``retrieval``). Configs in ``conf/benchmark/``
instantiate the benchmark classes with Hydra ``_target_``; the harness calls ``items()`` and ``score()``.
"""

from mmpo.benchmarks.base import Benchmark, BenchmarkDataMissing, EvalItem

__all__ = ["Benchmark", "BenchmarkDataMissing", "EvalItem"]
