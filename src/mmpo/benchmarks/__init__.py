"""Benchmarks: read public evaluation data from local paths, score generated outputs.

One module per benchmark (``pope``, ``object_halbench``, ``amber``, ``mmhal``, ``hallusionbench``,
``mmvp``, ``alt_text``) plus shared pieces (``base``, ``text``, ``nltk_data``, ``coco_objects``,
``chair``, ``yes_no``, ``judge``). Configs in ``conf/benchmark/`` instantiate the benchmark classes with Hydra
``_target_``; the harness calls ``items()`` and ``score()``.

Benchmarks scored from embeddings instead of generated text (MAPLE) subclass
:class:`~mmpo.benchmarks.retrieval.EmbeddingBenchmark` and are scored by ``evaluate(encoder)``:
``retrieval`` (COCO / Flickr30K Recall@K), ``winoground``, ``naturalbench``, ``mmvp_vlm``,
``shapes_retrieval``; ``modality_gap`` is MAPLE's score-distribution diagnostic.
"""

from mmpo.benchmarks.base import Benchmark, BenchmarkDataMissing, EvalItem

__all__ = ["Benchmark", "BenchmarkDataMissing", "EvalItem"]
