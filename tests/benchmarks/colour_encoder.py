"""An encoder whose similarities are known by construction (tests only): an image is its mean colour,
a text the colour words it names, so cosine = 1 for a colour match and 0 otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class ColourEncoder:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        self.calls.append(len(images))
        return torch.stack(
            [torch.tensor(image.resize((1, 1)).getpixel((0, 0)), dtype=torch.float32) for image in images]
        )

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(len(texts))
        rows = [[float(word in text.split()) for word in COLOURS] for text in texts]
        return torch.tensor(rows) + 1e-6  # a text naming no colour is not a zero vector
