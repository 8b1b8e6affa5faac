"""Reports a person looks at: a benchmark's results as an HTML page and a PNG contact sheet, and two
runs side by side.

``evaluate.py`` calls :func:`write_reports` for every result document it writes, so beside
``<run>/benchmarks/<name>.json`` lie ``<name>.html`` (metrics, provenance and the sampled items with
embedded thumbnails: one file, no external assets) and ``<name>.png`` (the same items on a contact
sheet). The sample is ``report.items`` records drawn with ``report.seed`` (``conf/eval.yaml``), the same
for every run of a benchmark with the same items. ``scripts/compare_runs.py`` renders
:func:`~mmpo.reports.html.render_comparison` of two runs.

Modules: :mod:`~mmpo.reports.items` (a record as shown), :mod:`~mmpo.reports.thumbnails`,
:mod:`~mmpo.reports.html`, :mod:`~mmpo.reports.contact_sheet`, :mod:`~mmpo.reports.compare`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmpo.reports.contact_sheet import contact_sheet
from mmpo.reports.html import number, render_report
from mmpo.reports.items import sample, view


def report_problems(report: Mapping[str, Any]) -> list[str]:
    """Start-up check of the ``report`` config node (``conf/eval.yaml``)."""
    items = report.get("items")
    if report.get("enabled") and (isinstance(items, bool) or not isinstance(items, int) or items < 1):
        return [f"report.items={items!r}: give a positive number of items to show (or report.enabled=false)"]
    return []


def write_reports(document: Mapping[str, Any], directory: str | Path, items: int, seed: int) -> list[Path]:
    """Write ``<benchmark>.html`` and ``<benchmark>.png`` of ``document`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = document["benchmark"]
    shown = [view(record) for record in sample(document["records"], items, seed)]
    page = directory / f"{name}.html"
    page.write_text(render_report(document, shown, seed), encoding="utf-8")
    metrics = "  ".join(f"{key}={number(value)}" for key, value in list(document["metrics"].items())[:8])
    header = [
        f"{name}: {document['model'].get('run') or 'base model'}",
        f"{len(shown)} of {len(document['records'])} items (seed {seed}); red frame: wrong, green: right",
        metrics,
    ]
    return [page, contact_sheet(shown, header, directory / f"{name}.png")]
