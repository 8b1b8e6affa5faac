"""Lightning callbacks that ``conf/callbacks/*.yaml`` add to a training run."""

from mmpo.callbacks.benchmark import BenchmarkCallback
from mmpo.callbacks.generations import LogGenerations
from mmpo.callbacks.interrupt import SaveOnInterrupt
from mmpo.callbacks.log_config import LogConfig

GENERATE_ON_RANK_ZERO = (BenchmarkCallback, LogGenerations)
"""The callbacks that run the policy on the global-zero process only (the other ranks wait)."""

__all__ = ["GENERATE_ON_RANK_ZERO", "BenchmarkCallback", "LogConfig", "LogGenerations", "SaveOnInterrupt"]
