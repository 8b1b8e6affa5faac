"""Lightning callbacks that ``conf/callbacks/*.yaml`` add to a training run."""

from mmpo.callbacks.benchmark import BenchmarkCallback

__all__ = ["BenchmarkCallback"]
