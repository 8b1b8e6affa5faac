"""CLIP image and text embeddings, batched, from a local model directory (methods.md §4.3).

``h_v = normalize(CLIP image embedding)`` and ``h_t = normalize(CLIP text embedding)``: the projected
features of transformers' ``CLIPModel`` (``get_image_features`` / ``get_text_features``), L2-normalised so
that inner products are cosine similarities. The CLIP variant MISP-DPO uses is not known ([?]); any
``CLIPModel`` directory in Hugging Face layout works (e.g. ``openai/clip-vit-large-patch14``, D = 768).
Prompts longer than the text encoder's context (77 tokens for OpenAI CLIP) are truncated.

Images are read and preprocessed in a ``torch.utils.data.DataLoader`` (``num_workers`` processes) and
embedded in batches. An image that cannot be read raises :class:`UnreadableImage` naming the file, or,
with ``on_error="skip"``, is left out and listed in :attr:`ImageEmbeddings.failures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import CLIPModel, CLIPProcessor

ON_ERROR = ("raise", "skip")


class UnreadableImage(ValueError):
    """An image file that PIL cannot open or decode."""


def read_image(path: str | Path) -> Image.Image:
    """The RGB image at ``path``; :class:`UnreadableImage` naming the file if PIL cannot read it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"image {str(path)!r} cannot be read: {error}") from None


@dataclass
class ImageEmbeddings:
    """Embeddings ``[N, D]`` (float32, unit rows) of the images in ``paths``, in that order, and the
    ``{"path", "error"}`` of each image left out with ``on_error="skip"``."""

    embeddings: np.ndarray
    paths: list[str]
    failures: list[dict[str, str]] = field(default_factory=list)


class _ImageFiles(Dataset):
    """``(index, pixel_values [3, H, W] or None, error or None)`` per image file."""

    def __init__(self, paths: Sequence[str], image_processor) -> None:
        self.paths = list(paths)
        self.image_processor = image_processor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = read_image(self.paths[index])
        except UnreadableImage as error:
            return index, None, str(error)
        return index, self.image_processor(images=image, return_tensors="pt")["pixel_values"][0], None


def _normalize(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


class ClipEmbedder:
    """Normalised CLIP embeddings of images and texts (module docstring)."""

    def __init__(self, model: CLIPModel, processor: CLIPProcessor, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    @classmethod
    def from_path(cls, path: str | Path, device: str = "cpu") -> ClipEmbedder:
        """Load ``CLIPModel`` and ``CLIPProcessor`` from a local directory (nothing is downloaded)."""
        directory = Path(path)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(
                f"CLIP model directory {str(directory)!r} has no config.json: put a CLIPModel in Hugging Face "
                "layout there (e.g. a local copy of openai/clip-vit-large-patch14)"
            )
        model = CLIPModel.from_pretrained(directory, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(directory, local_files_only=True)
        return cls(model, processor, device)

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
        """``[len(texts), D]`` float32 unit rows."""
        max_length = self.model.config.text_config.max_position_embeddings
        out = []
        for start in tqdm(range(0, len(texts), batch_size), desc="embed texts", disable=not progress):
            tokens = self.processor.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(self.device)
            out.append(_normalize(self.model.get_text_features(**tokens).pooler_output))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def embed_images(
        self,
        paths: Sequence[str],
        batch_size: int = 64,
        num_workers: int = 0,
        on_error: str = "raise",
        progress: bool = True,
    ) -> ImageEmbeddings:
        """Embeddings of the readable images among ``paths`` (order kept); ``on_error`` in :data:`ON_ERROR`."""
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r}; allowed: {list(ON_ERROR)}")
        loader = DataLoader(
            _ImageFiles(paths, self.processor.image_processor),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=list,
        )
        chunks, kept, failures = [], [], []
        for items in tqdm(loader, desc="embed images", unit="batch", disable=not progress):
            good = []
            for index, pixels, error in items:
                if error is None:
                    good.append((index, pixels))
                elif on_error == "raise":
                    raise UnreadableImage(
                        f"{error} (on_error='skip', --on-error skip in the scripts, leaves it out)"
                    )
                else:
                    failures.append({"path": str(paths[index]), "error": error})
            if good:
                pixels = torch.stack([p for _, p in good]).to(self.device)
                chunks.append(_normalize(self.model.get_image_features(pixel_values=pixels).pooler_output))
                kept += [str(paths[i]) for i, _ in good]
        embeddings = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return ImageEmbeddings(embeddings, kept, failures)
