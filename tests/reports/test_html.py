"""The HTML report: self-contained (data: URIs only), every text escaped, hallucinations marked."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

from PIL import Image

from mmpo.reports import write_reports
from mmpo.reports.html import THUMBNAIL, number

from .helpers import BLUE, RED, chair_record, document, solid_image


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_page_embeds_thumbnails_escapes_text_and_marks_hallucinations(tmp_path):
    records = [
        chair_record(
            "s1",
            solid_image(tmp_path / "s1.png", RED),
            "A red cube and a blue ball.",
            ["blue ball"],
            ["red cube"],
        ),
        chair_record("s2", solid_image(tmp_path / "s2.png", BLUE), "A blue cube.", [], ["blue cube"]),
        chair_record("s3", str(tmp_path / "gone.png"), "<script>alert(1)</script> & more", [], ["red cube"]),
        chair_record("s4", None, "text only", [], []),
    ]
    records[1]["prompt"] = 'Describe "this" <b>image</b>.'
    page_path, sheet_path = write_reports(document(records), tmp_path / "out", items=24, seed=0)
    page = page_path.read_text()
    parsed = Elements(page)

    # self-contained: no script, stylesheet link, or any URL other than embedded PNGs
    assert not [tag for tag, _ in parsed.tags if tag in ("script", "link", "iframe")]
    sources = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    assert len(sources) == 2 and all(src.startswith("data:image/png;base64,") for src in sources)
    for src, colour in zip(sources, (RED, BLUE), strict=True):
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.size == (THUMBNAIL, THUMBNAIL) and image.convert("RGB").getpixel((5, 5)) == colour
    assert "http://" not in page and "https://" not in page

    # text is escaped: the model's "<script>" and the prompt's "<b>" are text, not elements
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "Describe &#34;this&#34; &lt;b&gt;image&lt;/b&gt;." in page
    assert sum(tag == "b" for tag, _ in parsed.tags) == 2 * len(records)  # only the template's Q and A
    # the hallucinated object is marked in the answer and listed; verdicts frame the items
    assert "A red cube and a <mark>blue ball</mark>." in page
    figures = [attrs["class"] for tag, attrs in parsed.tags if tag == "figure"]
    assert figures == ["item wrong", "item right", "item right", "item right"]
    assert "image not found: " + str(tmp_path / "gone.png") in page and "no image (text-only item)" in page
    # metrics, provenance, sample size
    assert '<td class="number">0.25</td>' in page and '<td class="number">nan</td>' in page
    assert "a" * 16 in page and "4 of 4 items (seed 0), 1 wrong" in page
    assert sheet_path.name == "shapes_chair.png" and sheet_path.read_bytes()[:4] == b"\x89PNG"


def test_report_shows_the_seeded_sample(tmp_path):
    records = [chair_record(f"s{i}", None, "x", [], []) for i in range(30)]
    page_path, _ = write_reports(document(records), tmp_path, items=5, seed=1)
    again, _ = write_reports(document(records), tmp_path / "again", items=5, seed=1)
    page = page_path.read_text()
    assert page.count("<figure") == 5 and "5 of 30 items (seed 1)" in page
    assert page == again.read_text()


def test_number_formats_metrics():
    assert [number(0.123456), number(None), number(float("nan")), number(-0.05, signed=True)] == [
        "0.1235",
        "—",
        "nan",
        "-0.05",
    ]
