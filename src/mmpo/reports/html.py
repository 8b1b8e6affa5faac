"""Self-contained HTML pages (Jinja2 templates in ``templates/``, every text autoescaped).

The images are embedded as PNG ``data:`` URIs (:func:`~mmpo.reports.thumbnails.data_uri`), the styles
inline: a page is one file that opens anywhere, with nothing to fetch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from mmpo.reports.compare import Comparison
from mmpo.reports.items import ItemView
from mmpo.reports.thumbnails import data_uri

THUMBNAIL = 192
COMPARE_THUMBNAIL = 128


def number(value: float | None, signed: bool = False) -> str:
    """A metric as text: 4 significant digits, ``nan`` and ``—`` (missing) spelled out."""
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("mmpo.reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters["number"] = number


def render_report(document: Mapping[str, Any], shown: Sequence[ItemView], seed: int) -> str:
    """The page of one result document with the items ``shown`` (a sample of its records)."""
    return ENVIRONMENT.get_template("report.html.j2").render(
        title=f"{document['benchmark']}: {document['model'].get('run') or 'base model'}",
        document=document,
        shown=[(item, data_uri(item.image, THUMBNAIL)) for item in shown],
        wrong=sum(item.wrong for item in shown),
        seed=seed,
        thumb=THUMBNAIL,
    )


def render_comparison(comparisons: Sequence[Comparison], labels: Sequence[str], items: int) -> str:
    """The side-by-side page of two runs: per benchmark its first ``items`` pairs (differences first)."""
    sections = [
        (
            comparison,
            [(pair, data_uri(pair.first.image, COMPARE_THUMBNAIL)) for pair in comparison.pairs[:items]],
        )
        for comparison in comparisons
    ]
    return ENVIRONMENT.get_template("compare.html.j2").render(
        title=f"{labels[0]} vs {labels[1]}", labels=labels, sections=sections, thumb=COMPARE_THUMBNAIL
    )
