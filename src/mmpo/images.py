"""Image files as the data pipeline reads them."""

from __future__ import annotations

from PIL import Image


def load_image(path: str) -> Image.Image:
    """The image at ``path`` as RGB, its file closed."""
    with Image.open(path) as image:
        return image.convert("RGB")
