"""Image decoding: every mode and size has a defined outcome (RGB, a counted change, or a named refusal)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmpo import images
from mmpo.images import BadImage, embedded_reference, inspect_image, load_image


def saved(tmp_path, image: Image.Image, name: str = "x.png", **options) -> str:
    path = tmp_path / name
    image.save(path, **options)
    return str(path)


def test_half_transparent_pixels_are_composited_onto_white_and_counted(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red over white: (255, 127, 127)
    rgba.putpixel((1, 0), (0, 0, 255, 0))  # invisible blue: white
    image, changes = inspect_image(saved(tmp_path, rgba))
    assert image.mode == "RGB" and changes == ["alpha_flattened"]
    assert image.getpixel((0, 0)) == (255, 127, 127)
    assert image.getpixel((1, 0)) == (255, 255, 255)
    assert image.getpixel((2, 2)) == (255, 0, 0)


def test_an_opaque_rgba_image_is_converted_without_a_change_to_count(tmp_path):
    image, changes = inspect_image(saved(tmp_path, Image.new("RGBA", (4, 4), (10, 20, 30, 255))))
    assert changes == [] and image.getpixel((3, 3)) == (10, 20, 30)


def test_a_palette_image_with_a_transparent_colour_is_flattened(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    image, changes = inspect_image(saved(tmp_path, palette, transparency=0))
    assert changes == ["alpha_flattened"]
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 0)) == (200, 10, 10)


def test_a_fully_transparent_image_is_refused_not_turned_into_a_solid_colour(tmp_path):
    with pytest.raises(BadImage, match="fully transparent") as error:
        load_image(saved(tmp_path, Image.new("RGBA", (8, 8), (255, 0, 0, 0))))
    assert error.value.reason == "image_transparent"


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    grey = np.array([[0, 32896, 65535]], dtype=np.uint16)
    image = load_image(saved(tmp_path, Image.fromarray(grey)))
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_greyscale_cmyk_and_float_modes(tmp_path):
    assert load_image(saved(tmp_path, Image.new("L", (2, 2), 7))).getpixel((0, 0)) == (7, 7, 7)
    cmyk = load_image(saved(tmp_path, Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "c.jpg", quality=100))
    red = cmyk.getpixel((0, 0))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15
    with pytest.raises(BadImage, match="pixel mode 'F'") as error:
        load_image(saved(tmp_path, Image.new("F", (2, 2), 0.5), "f.tiff"))
    assert error.value.reason == "image_mode"


def test_an_animation_gives_its_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (4, 4), colour) for colour in ("red", "blue")]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image, changes = inspect_image(str(path))
    assert changes == ["first_frame"] and image.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"not an image at all", "is not an image"),
        ("truncated", "does not decode"),
    ],
)
def test_files_that_do_not_decode_are_refused_with_a_reason(tmp_path, content, message):
    if content == "truncated":
        buffer = io.BytesIO()
        Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "PNG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(BadImage, match=message) as error:
        load_image(str(path))
    assert error.value.reason == "image_unreadable"


def test_extreme_sizes_are_refused_before_decoding(tmp_path, monkeypatch):
    with pytest.raises(BadImage, match="aspect ratio 200:1") as error:
        load_image(saved(tmp_path, Image.new("RGB", (201, 1))))
    assert error.value.reason == "image_aspect_ratio"
    assert load_image(saved(tmp_path, Image.new("RGB", (200, 1)))).size == (200, 1)
    assert load_image(saved(tmp_path, Image.new("RGB", (1, 1)))).size == (1, 1)
    monkeypatch.setattr(images, "MAX_PIXELS", 99)
    with pytest.raises(BadImage, match="10x10 pixels, more than the limit of 99") as error:
        load_image(saved(tmp_path, Image.new("RGB", (10, 10))))
    assert error.value.reason == "image_too_large"


def test_an_embedded_image_is_read_from_the_arrow_table_by_its_reference(tmp_path):
    import datasets

    buffers = []
    for colour in ("red", "lime"):
        buffer = io.BytesIO()
        Image.new("RGB", (3, 3), colour).save(buffer, "PNG")
        buffers.append(buffer.getvalue())
    rows = {"images": [[{"bytes": buffers[0], "path": "a.png"}], [{"bytes": buffers[1], "path": "b.png"}]]}
    features = datasets.Features({"images": datasets.List(datasets.Image())})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "train"))
    assert load_image(embedded_reference(tmp_path / "train", "images", 1, 0)).getpixel((1, 1)) == (0, 255, 0)
    assert load_image(embedded_reference(tmp_path / "train", "images", 0, 0)).getpixel((1, 1)) == (255, 0, 0)
