"""Images as the data pipeline reads them: references, and what every image mode and size becomes.

A record names each image by a reference: a file path, or ``arrow:<dataset folder>#<column>/<row>/<index>``
for an image whose bytes are embedded in an HF ``datasets`` folder (``scripts/convert.py --to arrow --images
embed``); its bytes are read from the memory-mapped table only when the image is loaded.

:func:`load_image` gives an RGB image:

- RGB as it is; L, 1, P, CMYK, YCbCr, LAB, HSV by PIL's conversion; 16-bit grey (``I;16*``, ``I``) scaled
  to 8 bits; an animation: its first frame;
- an image with transparency (an alpha band, or a palette / colour key) is composited onto white, as the
  Hugging Face image processors do (``transformers.image_transforms.convert_to_rgb``);
- :class:`BadImage` (with the reason of :data:`IMAGE_REASONS`) for a file that does not decode (empty,
  truncated, not an image), a mode of no defined conversion (``F``), more pixels than PIL's
  decompression-bomb limit, an aspect ratio beyond :data:`MAX_ASPECT_RATIO`, or a fully transparent
  image (it would become a solid colour).

:func:`inspect_image` decodes the same way and also says what the conversion changed (the data report
counts it), so the data module checks every image once before training.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

EMBEDDED = "arrow:"
"""Prefix of an embedded image's reference: ``arrow:<dataset folder>#<column>/<row>/<index>``."""
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
"""PIL's decompression-bomb limit (about 89 million pixels): a larger image is refused before decoding."""
MAX_ASPECT_RATIO = 200
"""Longer over shorter side; Qwen2-VL's processor refuses more, LLaVA's resize would blow such an image up."""
IMAGE_REASONS = {
    "image_unreadable": "the file is empty, truncated or not an image",
    "image_mode": "a pixel mode with no defined RGB conversion",
    "image_too_large": f"more than {MAX_PIXELS} pixels",
    "image_aspect_ratio": f"an aspect ratio beyond {MAX_ASPECT_RATIO}:1",
    "image_transparent": "fully transparent (it would become a solid colour)",
}
"""Why an image is refused: reason -> what it means."""
IMAGE_CHANGES = {
    "alpha_flattened": "transparency composited onto white",
    "first_frame": "an animation: only its first frame is used",
}
"""What decoding changed about an image that is used: change -> what it means."""
GREY_16_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImage(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def embedded_reference(folder: str | Path, column: str, row: int, index: int) -> str:
    return f"{EMBEDDED}{folder}#{column}/{row}/{index}"


def is_embedded(reference: str) -> bool:
    return reference.startswith(EMBEDDED)


@functools.lru_cache(maxsize=8)
def _arrow_table(folder: str):
    """The memory-mapped ``pyarrow.Table`` of a ``datasets`` folder (a zero-copy view), opened once per
    process (each dataloader worker maps the files itself)."""
    import datasets

    dataset = datasets.load_from_disk(folder)
    return dataset.with_format("arrow")[0 : len(dataset)]


def read_bytes(reference: str) -> bytes:
    """The encoded bytes of the image ``reference`` names."""
    if not is_embedded(reference):
        return Path(reference).read_bytes()
    folder, _, where = reference[len(EMBEDDED) :].rpartition("#")
    column, row, index = where.split("/")
    value = _arrow_table(folder).column(column)[int(row)][int(index)]
    return value["bytes"].as_py() or Path(value["path"].as_py()).read_bytes()


def inspect_image(reference: str) -> tuple[Image.Image, list[str]]:
    """The image as RGB and the :data:`IMAGE_CHANGES` its conversion made; :class:`BadImage` otherwise."""
    try:
        data = read_bytes(reference)
    except OSError as error:
        raise BadImage("image_unreadable", f"cannot be read ({error.strerror or error})") from None
    if not data:
        raise BadImage("image_unreadable", "is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadImage(
                    "image_too_large", f"has {width}x{height} pixels, more than the limit of {MAX_PIXELS}"
                )
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                raise BadImage(
                    "image_aspect_ratio", f"is {width}x{height}, beyond the aspect ratio {MAX_ASPECT_RATIO}:1"
                )
            changes = ["first_frame"] if getattr(image, "n_frames", 1) > 1 else []
            image.load()
            return _to_rgb(image, changes), changes
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("image_unreadable", "is not an image (PIL cannot identify its format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage("image_unreadable", f"does not decode ({error})") from None


def load_image(reference: str) -> Image.Image:
    """The image ``reference`` names, as RGB (see the module docstring); :class:`BadImage` otherwise."""
    return inspect_image(reference)[0]


def _to_rgb(image: Image.Image, changes: list[str]) -> Image.Image:
    if image.mode in GREY_16_BIT:
        grey = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(grey / 257.0, 0, 255).round().astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        raise BadImage("image_mode", "has pixel mode 'F' (32-bit float), which has no defined RGB conversion")
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        lowest, highest = rgba.getchannel("A").getextrema()
        if highest == 0:
            raise BadImage("image_transparent", "is fully transparent (every pixel's alpha is 0)")
        if lowest == 255:
            return rgba.convert("RGB")
        changes.append("alpha_flattened")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
