"""Lightning callbacks that ``conf/callbacks/*.yaml`` add to a training run."""

from mmpo.callbacks.benchmark import BenchmarkCallback
from mmpo.callbacks.interrupt import SaveOnInterrupt

__all__ = ["BenchmarkCallback", "SaveOnInterrupt"]
