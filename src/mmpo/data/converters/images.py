"""Images of converted records: referenced where they lie, or copied into ``OUTPUT/images/``.

A source gives an image as a path (relative to ``--image-root``), as bytes, or as an HF ``Image`` value
``{"bytes": ..., "path": ...}``. Modes (``--images``):

- ``copy`` (default): every image is written once to ``OUTPUT/images/<sha1 of its bytes>.<format>``
  and records name it relative to the output folder (identical images are stored once);
- ``reference``: records name the source file by absolute path (images that exist only as bytes are
  written as in ``copy``);
- ``embed``: as ``copy`` while converting; the arrow output then carries the bytes and the folder is
  removed (JSONL records hold paths, so ``embed`` needs ``--to arrow``).

Every image is opened once with PIL, so a file that is not an image is a bad row here, not a crash
in training.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmpo.data.converters.base import BadRow

IMAGE_MODES = ("copy", "reference", "embed")
IMAGE_DIR = "images"


def image_format(data: bytes, field: str) -> str:
    """The PIL format name of encoded image bytes (a BadRow naming ``field`` if they are no image)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except (UnidentifiedImageError, OSError):
        raise BadRow(field, "not a readable image (PIL cannot decode it)") from None


class ImageStore:
    def __init__(self, mode: str, out_dir: Path, image_root: Path):
        if mode not in IMAGE_MODES:
            raise ValueError(f"--images {mode!r}; allowed: {list(IMAGE_MODES)}")
        self.mode = mode
        self.out_dir = out_dir
        self.image_root = image_root

    def put(self, value: Any, field: str) -> str:
        """The record's path for one source image value."""
        path, data = self._locate(value, field)
        if path is not None and self.mode == "reference":
            image_format(path.read_bytes(), field)
            return str(path)
        data = path.read_bytes() if data is None else data
        suffix = image_format(data, field).lower().replace("jpeg", "jpg")
        name = f"{hashlib.sha1(data).hexdigest()[:20]}.{suffix}"
        target = self.out_dir / IMAGE_DIR / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return f"{IMAGE_DIR}/{name}"

    def _locate(self, value: Any, field: str) -> tuple[Path | None, bytes | None]:
        if isinstance(value, bytes):
            return None, value
        if isinstance(value, dict) and ("bytes" in value or "path" in value):
            if value.get("bytes"):
                path = self._file(value.get("path"))
                return (path if path is not None and path.is_file() else None), value["bytes"]
            value = value.get("path")
        path = self._file(value)
        if path is None:
            raise BadRow(field, f"an image must be a path, bytes or {{'bytes', 'path'}}, got {value!r}")
        if not path.is_file():
            raise BadRow(
                field, f"image file {str(path)!r} does not exist (relative paths start at --image-root)"
            )
        return path, None

    def _file(self, value: Any) -> Path | None:
        if not isinstance(value, str) or not value:
            return None
        path = Path(value)
        return (path if path.is_absolute() else self.image_root / path).resolve()
