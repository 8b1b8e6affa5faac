"""Alignment scores on disk: ``(scorer fingerprint, image key, text) -> score`` in one SQLite file.

MAPLE scores every anchor against its candidate set online (methods.md §3.2); the frozen scorer gives
the same number for the same pair in every epoch, so a pair is computed once and read back afterwards.
A text-to-image anchor with an image candidate and an image-to-text anchor with a text candidate are the
same (image, text) pair, so both directions share one entry. SQLite (Python's ``sqlite3``) serialises
writers, so DDP ranks can share the file; a rank that finds a pair another rank is writing at the same
moment merely computes it again. The connection opens on first use in each process (a pickled
cache, e.g. in a spawned DDP worker, reconnects).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

PairKey = tuple[str, str]
"""(image key, text)."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scores (fingerprint TEXT NOT NULL, image TEXT NOT NULL, text TEXT NOT NULL, "
    "score REAL NOT NULL, PRIMARY KEY (fingerprint, image, text))"
)


class ScoreCache:
    """Scores of one SQLite file (created on first use, with its parent directories)."""

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.timeout = timeout
        self._connection: sqlite3.Connection | None = None

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=self.timeout)
            with self._connection:
                self._connection.execute(_SCHEMA)
        return self._connection

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_connection": None}

    def get(self, fingerprint: str, keys: Iterable[PairKey]) -> dict[PairKey, float]:
        """The stored scores among ``keys``; absent keys are left out."""
        found = {}
        query = "SELECT score FROM scores WHERE fingerprint = ? AND image = ? AND text = ?"
        for key in dict.fromkeys(keys):
            row = self.connection.execute(query, (fingerprint, *key)).fetchone()
            if row is not None:
                found[key] = row[0]
        return found

    def put(self, fingerprint: str, scores: Mapping[PairKey, float]) -> None:
        rows = [(fingerprint, image, text, float(s)) for (image, text), s in scores.items()]
        with self.connection:
            self.connection.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
