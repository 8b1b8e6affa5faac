"""Alt-text on held-out shapes scenes (``benchmark=shapes_alt_text``), scored as MCM-DPO's ``get_score.py``.

The items are the records of ``alt_text_<split>.jsonl`` of the shapes world (default ``test``: scenes no
training split shows; :mod:`mmpo.data.shapes`): the scene's image and MCM-DPO's instruction with the
record's context in ``context_template``, as the alt-text records are trained (the context names the
poster and the subject, which the alt-text must mention). The reference is the record's chosen alt-text.
The world (``world: {num_scenes, seed, image_size}``) is generated under ``path`` when absent, with
the rules of :class:`~mmpo.benchmarks.shapes.ShapesWorld`. Metrics and their libraries are those of
``benchmark=alt_text`` (:mod:`mmpo.benchmarks.alt_text`): ``bleu_4`` (4-gram precision only),
``cumulative_bleu_4``, ``bleu_1``, ``meteor``, ``rouge_l``, ``cider`` (CIDEr-D, IDF over the evaluated
references) and ``edit_distance``; decoding as the official inference (3 beams, greedy).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmpo.benchmarks.alt_text import AltText
from mmpo.benchmarks.base import EvalItem, read_jsonl
from mmpo.benchmarks.shapes import ShapesCHAIR, ShapesWorld


class ShapesAltText(AltText):
    """Alt-text of held-out shapes scenes (module docstring); scored by :meth:`AltText.score`."""

    name = "shapes_alt_text"
    source = ShapesCHAIR.source

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        world: Mapping[str, int] | None = None,
        split: str = "test",
        context_template: str = "{prompt}\nContext:\n{context}",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.world = ShapesWorld(path, **(world or {}))
        self.split = split
        self.context_template = context_template

    @property
    def question_file(self) -> str:
        return f"alt_text_{self.split}.jsonl"

    def data_files(self) -> list[Path]:
        return self.world.data_files(f"alt_text_{self.split}")

    def items(self) -> list[EvalItem]:
        root = self.world.ensure()
        items = [
            EvalItem(
                id=row["id"],
                image=str(root / row["images"][0]),
                prompt=self.with_suffix(
                    self.context_template.format(prompt=row["prompt"], context=row["context"])
                ),
                meta={"reference": row["chosen"], "context": row["context"]},
            )
            for row in read_jsonl(root / self.question_file)
        ]
        return self.truncate(items)
