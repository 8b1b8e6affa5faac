"""The PNG contact sheet: grid size, verdict frames, the item images in place, marked words in red."""

from __future__ import annotations

from PIL import Image

from mmpo.reports.contact_sheet import (
    BORDER,
    CELL_HEIGHT,
    CELL_WIDTH,
    COLUMNS,
    FRAME,
    HEADER,
    IMAGE,
    MARK,
    PAD,
    cell_origin,
    contact_sheet,
    grid,
)
from mmpo.reports.items import view

from .helpers import BLUE, GREEN, RED, chair_record, solid_image


def test_grid_fills_rows_of_at_most_six():
    assert [grid(n) for n in (1, 6, 7, 24)] == [(1, 1), (6, 1), (6, 2), (6, 4)]
    assert COLUMNS == 6


def test_sheet_places_each_item_with_its_frame_and_image(tmp_path):
    colours = [RED, BLUE, GREEN, RED, BLUE, GREEN, RED]
    records = [
        chair_record(f"s{i}", solid_image(tmp_path / f"{i}.png", colour), "A red cube.", [], ["red cube"])
        for i, colour in enumerate(colours)
    ]
    records[1] = chair_record(
        "s1", records[1]["image"], "A red cube and a blue ball.", ["blue ball"], ["red cube"]
    )
    records[6]["image"] = None  # a text-only item
    path = contact_sheet([view(r) for r in records], ["header"], tmp_path / "sheet.png")
    sheet = Image.open(path).convert("RGB")
    assert sheet.size == (6 * CELL_WIDTH, HEADER + 2 * CELL_HEIGHT)
    for index, colour in enumerate(colours):
        x, y = cell_origin(index, 6)
        verdict = "wrong" if index == 1 else "right"
        assert sheet.getpixel((x + PAD + 1, y + PAD + 1)) == FRAME[verdict]
        centre = (x + PAD + BORDER + IMAGE // 2, y + PAD + BORDER + IMAGE // 2)
        if index < 6:
            assert sheet.getpixel(centre) == colour
        else:  # no image: the empty grey field
            assert sheet.getpixel((x + PAD + BORDER + 2, y + PAD + BORDER + 2)) == (245, 245, 245)

    # the hallucinated "blue ball" of item 1 is drawn on pink under its image, and nowhere else
    def pink_pixels(index):
        x, y = cell_origin(index, 6)
        text_area = sheet.crop((x, y + PAD + IMAGE + 2 * BORDER, x + CELL_WIDTH, y + CELL_HEIGHT))
        return sum(1 for pixel in text_area.getdata() if pixel == MARK)

    assert pink_pixels(1) > 50 and pink_pixels(0) == 0


def test_long_text_stays_inside_its_cell(tmp_path):
    long = chair_record("s0", None, "word " * 500, [], [])
    long["prompt"] = "Q" * 400  # one unbreakable word, many cells wide
    short = chair_record("s1", None, "ok", [], [])
    path = contact_sheet([view(long), view(short)], [], tmp_path / "sheet.png")
    sheet = Image.open(path).convert("RGB")
    assert sheet.size == (2 * CELL_WIDTH, HEADER + CELL_HEIGHT)
    gap = sheet.crop((CELL_WIDTH - PAD // 2, HEADER, CELL_WIDTH + PAD, HEADER + CELL_HEIGHT))
    assert set(gap.getdata()) == {(255, 255, 255)}  # nothing of cell 0 ran into cell 1
