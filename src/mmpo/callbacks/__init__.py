"""Lightning callbacks that ``conf/callbacks/*.yaml`` add to a training run."""

from mmpo.callbacks.benchmark import BenchmarkCallback
from mmpo.callbacks.generations import LogGenerations
from mmpo.callbacks.interrupt import SaveOnInterrupt
from mmpo.callbacks.log_config import LogConfig

__all__ = ["BenchmarkCallback", "LogConfig", "LogGenerations", "SaveOnInterrupt"]
