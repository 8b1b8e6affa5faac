"""The negatives a pool sampler chose: one JSON line per draw, keyed by (seed, record id, epoch, stream).

A :class:`SelectionStore` is the file ``<directory>/<digest>.jsonl``, ``digest`` a hash of the sampler's
fingerprint fields (pool fingerprint, SAE checkpoint digest, selection options), so one file holds the
draws of one sampler configuration only. Each line::

    {"seed": 0, "record_id": "s0-00001-caption", "epoch": 0, "stream": "sae",
     "candidates": [3, 0, 7], "images": ["/.../a.png", ...], "log_q": [-2.1, -1.7, -2.9] or null}

(``candidates``: positions among the record's M retrieved candidates, in selection order). A draw found
in the file is read back instead of being made again, so a resumed run, the reference precompute pass
and a re-run see exactly the stored negatives; a new draw is appended in one flushed write, so data
loader workers and parallel runs may share the file (a line written twice is the same draw; the last
line of a key wins).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mmpo.negatives.base import SamplingKey


@dataclass(frozen=True)
class Selection:
    """K negatives of a record: candidate positions, image paths and, for importance draws, ``log q``."""

    candidates: tuple[int, ...]
    images: tuple[str, ...]
    log_q: tuple[float, ...] | None = None

    def first(self, count: int) -> Selection:
        """The first ``count`` negatives (every selection rule here keeps its order when K grows)."""
        log_q = None if self.log_q is None else self.log_q[:count]
        return Selection(self.candidates[:count], self.images[:count], log_q)


class SelectionStore:
    """Draws of one sampler configuration (module docstring), read on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._draws: dict[SamplingKey, Selection] | None = None

    def _read(self) -> dict[SamplingKey, Selection]:
        if self._draws is None:
            self._draws = {}
            if self.path.is_file():
                for line in self.path.read_text().splitlines():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by a killed writer: drawn again
                        continue
                    key = SamplingKey(row["seed"], row["record_id"], row["epoch"], row["stream"])
                    log_q = None if row["log_q"] is None else tuple(row["log_q"])
                    self._draws[key] = Selection(tuple(row["candidates"]), tuple(row["images"]), log_q)
        return self._draws

    def get(self, key: SamplingKey) -> Selection | None:
        return self._read().get(key)

    def put(self, key: SamplingKey, selection: Selection) -> None:
        self._read()[key] = selection
        row = {**asdict(key), **asdict(selection)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
