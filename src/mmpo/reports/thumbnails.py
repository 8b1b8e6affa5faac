"""Item images as small RGB thumbnails, for the contact sheet and as ``data:`` URIs for the HTML pages."""

from __future__ import annotations

import base64
import io
from functools import lru_cache

from PIL import Image, UnidentifiedImageError


@lru_cache(maxsize=512)
def thumbnail(path: str | None, size: int) -> Image.Image | None:
    """The image at ``path`` in RGB, scaled to fit ``size`` x ``size`` (aspect kept, small images
    enlarged with nearest-neighbour so that tiny scenes stay legible); ``None`` when there is no image
    or the file cannot be read."""
    if not path:
        return None
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    scale = size / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return image.resize(target, resample)


@lru_cache(maxsize=512)
def data_uri(path: str | None, size: int) -> str | None:
    """The thumbnail as ``data:image/png;base64,...`` (a page needs no other file), or ``None``."""
    image = thumbnail(path, size)
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
