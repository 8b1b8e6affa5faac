"""CLIP embeddings: batched = one at a time through CLIPModel itself; unreadable images; missing model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmpo.retrieval.clip import UnreadableImage, read_image


def direct(embedder, image=None, text=None) -> np.ndarray:
    """The normalised projected feature of one input through CLIPModel, no batching, no padding."""
    with torch.no_grad():
        if image is not None:
            pixels = embedder.processor(images=[read_image(image)], return_tensors="pt")["pixel_values"]
            features = embedder.model.get_image_features(pixel_values=pixels).pooler_output
        else:
            tokens = embedder.processor(text=[text], return_tensors="pt")
            features = embedder.model.get_text_features(**tokens).pooler_output
    return torch.nn.functional.normalize(features, dim=-1)[0].numpy()


def test_batched_image_embeddings_equal_one_at_a_time(embedder, gallery):
    paths = sorted(str(p) for p in (gallery / "images").glob("*.png"))[:7]
    out = embedder.embed_images(paths, batch_size=3, progress=False)
    assert out.paths == paths and out.failures == []
    expected = np.stack([direct(embedder, image=p) for p in paths])
    np.testing.assert_allclose(out.embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out.embeddings, axis=1), 1.0, atol=1e-6)


def test_padded_text_batches_equal_one_at_a_time(embedder):
    texts = ["Describe the image.", "Is there a red circle in the image? Answer yes or no.", "a"]
    out = embedder.embed_texts(texts, batch_size=2, progress=False)
    np.testing.assert_allclose(out, np.stack([direct(embedder, text=t) for t in texts]), atol=1e-5)
    assert not np.allclose(out[0], out[1])


def test_unreadable_image_raises_or_is_skipped(embedder, gallery, tmp_path):
    good = sorted(str(p) for p in (gallery / "images").glob("*.png"))[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths = [good[0], str(broken), *good[1:]]
    with pytest.raises(UnreadableImage, match="broken.jpg.*on_error='skip'"):
        embedder.embed_images(paths, batch_size=2, progress=False)
    out = embedder.embed_images(paths, batch_size=2, on_error="skip", progress=False)
    assert out.paths == good
    assert [f["path"] for f in out.failures] == [str(broken)] and "cannot be read" in out.failures[0]["error"]
    np.testing.assert_allclose(
        out.embeddings, embedder.embed_images(good, progress=False).embeddings, atol=1e-6
    )


def test_missing_model_directory_says_what_to_put_there(tmp_path):
    from mmpo.retrieval.clip import ClipEmbedder

    with pytest.raises(FileNotFoundError, match="no config.json: put a CLIPModel"):
        ClipEmbedder.from_path(tmp_path / "nothing")
