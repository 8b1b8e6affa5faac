"""Read what a training run left in its directory (``train.py`` writes it; see the README's table).

- ``.hydra/overrides.yaml``: the command-line overrides of the run (Hydra writes it when the job starts);
- ``metrics.csv``: every logged metric (Lightning's CSV logger), one row per logging call;
- ``summary.txt``: one line ``<run_name>: key=value key=value ... time=<s>s`` written at the end.

Used by the sweep summary (:mod:`mmpo.sweeps`) and by ``scripts/results_table.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml


def read_overrides(run: Path) -> list[str]:
    """The run's command-line overrides, as Hydra recorded them; ``[]`` when there is no record."""
    path = run / ".hydra" / "overrides.yaml"
    return (yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def final_metrics(run: Path, prefix: str = "") -> dict[str, float]:
    """The last logged value of every ``metrics.csv`` column whose name starts with ``prefix``; ``{}``
    without a ``metrics.csv``."""
    if not (run / "metrics.csv").is_file():
        return {}
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: float(row[key]) for row in rows for key in row if key.startswith(prefix) and row[key]}


def read_summary(run: Path) -> dict[str, str]:
    """The ``key=value`` fields of ``summary.txt`` (``status``, ``steps``, ``loss``, ...); ``{}`` when the
    run wrote none (it crashed, or is still running)."""
    path = run / "summary.txt"
    if not path.is_file():
        return {}
    fields = path.read_text().strip().split(": ", 1)[-1].split()
    return dict(field.split("=", 1) for field in fields if "=" in field)
