"""mmpo: multimodal preference optimization as Hydra-composable parts of one Lightning trainer."""

import logging
import warnings

__version__ = "0.1.0"

# Messages of libraries that a user can do nothing about, silenced once for every entry point:
# - bitsandbytes warns at import that the optional `kernels` package (CPU kernels fetched from the Hub) is
#   missing; its built-in CPU fallback is what runs.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# - Lightning 2.6 asks torch whether a pytree spec is a `LeafSpec`, which torch has deprecated.
warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
# - the CSV logger writes metrics.csv into the run directory, which already holds Hydra's .hydra/; it
#   warns that "previous log files" will be deleted, but a run directory is always fresh (train.py).
warnings.filterwarnings("ignore", r"Experiment logs directory .* exists and is not empty", UserWarning)
# - a resumed run writes a new run directory, so its checkpoint directory always differs from the
#   checkpoint's; Lightning warns that it will not reload the top-k bookkeeping, which mmpo does not keep.
warnings.filterwarnings("ignore", r"The dirpath has changed from", UserWarning)
# - a run resumed mid-epoch continues at the next batch (mmpo.data.sampling), but Lightning only knows that
#   of data loaders with a state_dict and warns that the resumed epoch may be unreliable.
warnings.filterwarnings("ignore", r"You're resuming from a checkpoint that ended before the epoch ended")
