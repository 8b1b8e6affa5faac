"""Shapes retrieval: a pixel-exact encoder gets everything right; a colour-blind one fails exactly the
colour items (its scores tie), which checks that each item pairs a scene with its own variant."""

import re

import pytest
import torch

from mmpo.benchmarks.shapes_retrieval import ShapesRetrieval
from mmpo.data import shapes

OBJECT = re.compile(
    rf"(?:an?) ({'|'.join(shapes.COLORS)}) ({'|'.join(shapes.SHAPES)}) at the ({'|'.join(shapes.CELLS)})"
)


def scene_of(caption: str) -> shapes.Scene:
    return shapes.Scene("parsed", tuple(shapes.ShapeObject(*m) for m in OBJECT.findall(caption.lower())))


class PixelEncoder:
    """Image = its pixels; text = the pixels of the scene it describes, rendered. ``colour_blind`` keeps
    only where the shapes are."""

    def __init__(self, image_size: int, colour_blind: bool = False) -> None:
        self.image_size = image_size
        self.colour_blind = colour_blind

    def features(self, image) -> torch.Tensor:
        pixels = torch.tensor(list(image.convert("RGB").getdata()), dtype=torch.float32)
        if self.colour_blind:
            pixels = (pixels.sum(-1) < 3 * 255).float()[:, None]
        return pixels.flatten()

    def encode_images(self, images):
        return torch.stack([self.features(image) for image in images])

    def encode_texts(self, texts):
        return torch.stack([self.features(shapes.render(scene_of(t), self.image_size)) for t in texts])


@pytest.fixture
def benchmark(tmp_path):
    return ShapesRetrieval(
        str(tmp_path / "world"), world={"num_scenes": 40, "seed": 0, "image_size": 32}, ks=(1,)
    )


def test_pixel_exact_encoder_scores_one_everywhere(benchmark):
    items = benchmark.items()
    assert {item.meta["tag"] for item in items} == {"color", "shape", "position"}
    assert all(item.meta["captions"][0] != item.meta["captions"][1] for item in items)
    metrics, records = benchmark.evaluate(PixelEncoder(32))
    assert set(metrics.values()) == {1.0}
    assert {"t2i/R@1", "i2t/R@1", "color/group", "shape/group", "position/group", "group"} <= set(metrics)
    assert len(records) == len(items)


def test_colour_blind_encoder_fails_only_the_colour_items(benchmark):
    metrics, _ = benchmark.evaluate(PixelEncoder(32, colour_blind=True))
    assert metrics["color/text"] == metrics["color/image"] == 0.0  # ties are wrong
    assert metrics["shape/group"] == metrics["position/group"] == 1.0


def test_attributes_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"allowed: \['color', 'shape', 'position'\]"):
        ShapesRetrieval(str(tmp_path), attributes=["size"])
