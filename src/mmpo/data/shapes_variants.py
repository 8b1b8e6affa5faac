"""Fine-grained neighbours of a shapes scene: the scenes that differ from it in exactly one attribute.

For a scene of the shapes world (:mod:`mmpo.data.shapes`) and an attribute in :data:`ATTRIBUTES`, a
variant changes one object's

- ``color``: to another colour,
- ``shape``: to another shape,
- ``position``: to a free cell of the 2x2 grid,

keeping the world's rules (object names unique within a scene, one object per cell, objects ordered
by cell). The variants of a scene are listed in a fixed order (object, then the new value in the
world's order) and named ``<scene id>-<attribute>-<index>``, so a seeded choice among them repeats.
They are MAPLE's hard negatives in a world where the difference is known exactly (methods.md §3.3):
candidate images (:func:`~mmpo.data.shapes.render` of a variant) and candidate texts (its
:func:`~mmpo.data.shapes.describe`).
"""

from __future__ import annotations

import random

from mmpo.data.shapes import CELLS, COLORS, SHAPES, Scene, ShapeObject

ATTRIBUTES = ("color", "shape", "position")


def _changed(obj: ShapeObject, attribute: str, free_cells: list[str]) -> list[ShapeObject]:
    if attribute == "color":
        return [ShapeObject(c, obj.shape, obj.cell) for c in COLORS if c != obj.color]
    if attribute == "shape":
        return [ShapeObject(obj.color, s, obj.cell) for s in SHAPES if s != obj.shape]
    if attribute == "position":
        return [ShapeObject(obj.color, obj.shape, cell) for cell in free_cells]
    raise ValueError(f"shapes variant attribute {attribute!r}; allowed: {list(ATTRIBUTES)}")


def variants(scene: Scene, attribute: str) -> list[Scene]:
    """Every scene that differs from ``scene`` in ``attribute`` of exactly one object (module docstring)."""
    free_cells = [cell for cell in CELLS if cell not in {o.cell for o in scene.objects}]
    out = []
    for index, obj in enumerate(scene.objects):
        others = [o for i, o in enumerate(scene.objects) if i != index]
        taken = {o.name for o in others}
        for new in _changed(obj, attribute, free_cells):
            if new.name in taken:
                continue
            objects = tuple(sorted([*others, new], key=lambda o: CELLS.index(o.cell)))
            out.append(Scene(f"{scene.id}-{attribute}-{len(out)}", objects))
    return out


def sample_variant(scene: Scene, attribute: str, seed: int | str) -> Scene | None:
    """One variant, chosen by a generator seeded with ``(seed, scene id, attribute)``; None when the
    scene has none (three shapes of one colour have no ``shape`` variant)."""
    options = variants(scene, attribute)
    return random.Random(f"{seed}:{scene.id}:{attribute}").choice(options) if options else None
