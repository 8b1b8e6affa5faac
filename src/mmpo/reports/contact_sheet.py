"""A PNG contact sheet of report items: one cell per item on a grid of up to :data:`COLUMNS` columns.

A cell is the item's image (scaled to :data:`IMAGE` pixels), framed by its verdict (:data:`FRAME`:
red wrong, green right, grey when the benchmark gives none), then its id, question, answer (the
hallucinated words or a wrong yes/no in red on pink), what the scorer read, the reference and the
hallucinated objects, each cut to a few lines. A header names the benchmark, the run and the sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mmpo.reports.items import ItemView
from mmpo.reports.thumbnails import thumbnail

COLUMNS = 6
IMAGE = 224
PAD = 8
BORDER = 4
FONT_SIZE = 13
LINE = 16
HEADER = 3 * LINE + 2 * PAD
#: (field, lines at most) of the text under each image.
TEXT_FIELDS = (
    ("id", 1),
    ("question", 3),
    ("answer", 4),
    ("parsed", 1),
    ("reference", 2),
    ("hallucinated", 2),
)
CELL_WIDTH = IMAGE + 2 * (PAD + BORDER)
CELL_HEIGHT = 2 * BORDER + IMAGE + PAD + LINE * sum(lines for _, lines in TEXT_FIELDS) + 2 * PAD
FRAME = {"wrong": (214, 39, 40), "right": (44, 160, 44), None: (170, 170, 170)}
INK, MUTED, ALARM, MARK = (20, 20, 20), (90, 90, 90), (180, 0, 0), (255, 214, 214)


@dataclass(frozen=True)
class Word:
    text: str
    marked: bool = False


def grid(count: int) -> tuple[int, int]:
    """(columns, rows) of the sheet for ``count`` items."""
    columns = max(1, min(COLUMNS, count))
    return columns, max(1, math.ceil(count / columns))


def cell_origin(index: int, columns: int) -> tuple[int, int]:
    """Top-left pixel of the cell of item ``index``."""
    return (index % columns) * CELL_WIDTH, HEADER + (index // columns) * CELL_HEIGHT


def _words(segments: Sequence[tuple[str, bool]]) -> list[Word]:
    return [Word(word, marked) for text, marked in segments for word in text.split()]


def _field_words(view: ItemView, field: str) -> tuple[list[Word], tuple[int, int, int]]:
    if field == "answer":
        return [Word("A:"), *_words(view.segments)], INK
    if field == "hallucinated":
        words = [Word(w, True) for w in view.hallucinated]
        return ([Word("hallucinated:"), *words] if words else []), ALARM
    text = {
        "id": f"[{view.verdict}] {view.id}" if view.verdict else view.id,
        "question": f"Q: {view.question}",
        "parsed": f"read as: {view.parsed}" if view.parsed else "",
        "reference": f"ref: {view.reference}" if view.reference else "",
    }[field]
    return [Word(w) for w in text.split()], (MUTED if field in ("id", "parsed", "reference") else INK)


def _fit(word: Word, font: ImageFont.FreeTypeFont, width: int) -> Word:
    """``word`` cut (with an ellipsis) to ``width`` pixels, so that it never runs into the next cell."""
    text = word.text
    while len(text) > 1 and font.getlength(text) > width:
        text = text[:-2] + "…"
    return Word(text, word.marked)


def _lines(words: list[Word], font: ImageFont.FreeTypeFont, width: int, limit: int) -> list[list[Word]]:
    """Greedy line breaking by pixel width; the last kept line ends in an ellipsis when text is cut."""
    lines: list[list[Word]] = [[]]
    for word in (_fit(w, font, width) for w in words):
        candidate = " ".join(w.text for w in [*lines[-1], word])
        if lines[-1] and font.getlength(candidate) > width:
            lines.append([])
        lines[-1].append(word)
    if len(lines) > limit:
        lines = lines[:limit]
        lines[-1] = [*lines[-1][:-1], Word("…")] if len(lines[-1]) > 1 else [Word("…")]
    return [line for line in lines if line]


def _draw_words(draw: ImageDraw.ImageDraw, origin: tuple[int, int], line: list[Word], font, colour) -> None:
    x, y = origin
    space = font.getlength(" ")
    for word in line:
        length = font.getlength(word.text)
        if word.marked:
            draw.rectangle((x - 1, y, x + length + 1, y + LINE - 1), fill=MARK)
        draw.text((x, y), word.text, font=font, fill=ALARM if word.marked else colour)
        x += length + space


def _draw_cell(sheet: Image.Image, view: ItemView, origin: tuple[int, int], font) -> None:
    draw = ImageDraw.Draw(sheet)
    x0, y0 = origin
    frame = (x0 + PAD, y0 + PAD, x0 + PAD + IMAGE + 2 * BORDER - 1, y0 + PAD + IMAGE + 2 * BORDER - 1)
    draw.rectangle(frame, fill=FRAME[view.verdict])
    inner = (x0 + PAD + BORDER, y0 + PAD + BORDER)
    draw.rectangle((*inner, inner[0] + IMAGE - 1, inner[1] + IMAGE - 1), fill=(245, 245, 245))
    image = thumbnail(view.image, IMAGE)
    if image is None:
        draw.text((inner[0] + PAD, inner[1] + IMAGE // 2), "no image", font=font, fill=MUTED)
    else:
        sheet.paste(image, (inner[0] + (IMAGE - image.width) // 2, inner[1] + (IMAGE - image.height) // 2))
    y = frame[3] + PAD
    width = CELL_WIDTH - 2 * PAD
    for field, limit in TEXT_FIELDS:
        words, colour = _field_words(view, field)
        for line in _lines(words, font, width, limit):
            _draw_words(draw, (x0 + PAD, y), line, font, colour)
            y += LINE


def contact_sheet(views: Sequence[ItemView], header: Sequence[str], path: str | Path) -> Path:
    """Draw ``views`` with up to three ``header`` lines and save the PNG to ``path``."""
    columns, rows = grid(len(views))
    sheet = Image.new("RGB", (columns * CELL_WIDTH, HEADER + rows * CELL_HEIGHT), "white")
    font = ImageFont.load_default(size=FONT_SIZE)
    draw = ImageDraw.Draw(sheet)
    for number, line in enumerate(header[:3]):
        draw.text((PAD, PAD + number * LINE), line, font=font, fill=INK)
    for index, view in enumerate(views):
        _draw_cell(sheet, view, cell_origin(index, columns), font)
    path = Path(path)
    sheet.save(path, format="PNG", optimize=True)
    return path
