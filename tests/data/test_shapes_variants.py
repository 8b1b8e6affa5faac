"""One-attribute variants of shapes scenes: exactly one attribute of one object changes, world rules kept."""

import pytest

from mmpo.data.shapes import CELLS, Scene, ShapeObject
from mmpo.data.shapes_variants import ATTRIBUTES, sample_variant, variants

ONE = Scene("a", (ShapeObject("red", "circle", "top left"),))
THREE_RED = Scene(
    "b",
    (
        ShapeObject("red", "circle", "top left"),
        ShapeObject("red", "square", "top right"),
        ShapeObject("red", "triangle", "bottom left"),
    ),
)


def changed_attributes(scene: Scene, variant: Scene) -> list[str]:
    """The attributes in which the one replaced object differs (unpacking fails if not exactly one)."""
    (old,), (new,) = set(scene.objects) - set(variant.objects), set(variant.objects) - set(scene.objects)
    fields = {"color": "color", "shape": "shape", "position": "cell"}
    return [a for a in ATTRIBUTES if getattr(old, fields[a]) != getattr(new, fields[a])]


def test_counts_by_hand_for_a_single_object():
    assert len(variants(ONE, "color")) == 5  # six colours
    assert len(variants(ONE, "shape")) == 2  # three shapes
    assert [v.objects[0].cell for v in variants(ONE, "position")] == [
        "top right",
        "bottom left",
        "bottom right",
    ]


def test_three_shapes_of_one_colour_have_no_shape_variant():
    assert variants(THREE_RED, "shape") == []
    assert sample_variant(THREE_RED, "shape", seed=0) is None
    assert len(variants(THREE_RED, "position")) == 3  # each object to the one free cell


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_every_variant_changes_exactly_that_attribute_of_one_object(attribute):
    for variant in variants(THREE_RED, attribute) + variants(ONE, attribute):
        scene = THREE_RED if variant.id.startswith("b") else ONE
        assert changed_attributes(scene, variant) == [attribute]
        assert len({o.name for o in variant.objects}) == len(variant.objects)
        assert [o.cell for o in variant.objects] == sorted((o.cell for o in variant.objects), key=CELLS.index)


def test_sampling_repeats_for_a_seed():
    picks = {sample_variant(THREE_RED, "color", seed).id for seed in range(20)}
    assert sample_variant(THREE_RED, "color", 3) == sample_variant(THREE_RED, "color", 3)
    assert len(picks) > 1
