"""What the reward MLLM is asked about an (image, text) pair, and how its answers become one score.

MAPLE asks one yes/no question per pair, whether the text matches the image (methods.md §3.2), which
presumes a reward model that can judge a whole text. ``questions`` (one of :data:`QUESTIONS`) says how a
text becomes the questions put to :class:`~mmpo.embedding.scorer.AlignmentScorer` (each through its
``prompt``):

- ``text``: the text itself, one question (MAPLE);
- ``shapes_objects``: one question per ``<colour> <shape>`` object the text mentions
  (:func:`mmpo.benchmarks.shapes.extract_mentions`), e.g. "a red circle". The shapes world's SFT base
  was trained to answer "Is there a red circle in the image? Answer yes or no." and nothing else about
  a scene, so it judges objects, not captions; its positions it cannot judge at all.

With ``alpha(image, q)`` the scorer's yes-probability of question ``q``, the score of the pair is

    alpha(image, text) = prod_{q in questions(text)} alpha(image, q)

the probability that every question is answered yes, taking the answers as independent (for one
question, the scorer's own score). Question-decomposition scores of text-image faithfulness (TIFA,
DSG) average the answers instead; the product keeps MAPLE's reading of alpha as the probability that
the pair matches. Each question is cached on its own (:class:`~mmpo.embedding.score_cache.ScoreCache`),
so questions that several texts share are scored once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mmpo.embedding.scorer import AlignmentScorer, ImageInput


def _text(text: str) -> list[str]:
    return [text]


def _shapes_objects(text: str) -> list[str]:
    from mmpo.benchmarks.shapes import extract_mentions
    from mmpo.data.shapes import with_article

    return [with_article(mention.category) for mention in extract_mentions(text)]


QUESTIONS: dict[str, Callable[[str], list[str]]] = {"text": _text, "shapes_objects": _shapes_objects}
"""``module.scorer.questions``: how a text becomes its questions (module docstring)."""


class QuestionScorer:
    """``alpha(image, text)`` of the pairs from the yes/no answers of ``scorer`` (module docstring)."""

    def __init__(self, scorer: AlignmentScorer, questions: str = "text") -> None:
        if questions not in QUESTIONS:
            raise ValueError(f"module.scorer.questions={questions!r}; allowed: {list(QUESTIONS)}")
        self.scorer = scorer
        self.questions = questions

    @property
    def lookups(self) -> tuple[int, int]:
        """(cache hits, misses) so far, counted per question."""
        return self.scorer.hits, self.scorer.misses

    def __call__(
        self, images: Sequence[ImageInput], texts: Sequence[str], image_keys: Sequence[str] | None = None
    ) -> Tensor:
        """``[N]`` scores of the pairs ``(images[n], texts[n])``; ``image_keys`` as for the scorer."""
        asked = [QUESTIONS[self.questions](text) for text in texts]
        if empty := [text for text, questions in zip(texts, asked, strict=True) if not questions]:
            raise ValueError(
                f"module.scorer.questions={self.questions}: no question in the text {empty[0]!r}; "
                f"allowed: {list(QUESTIONS)}"
            )
        owner = [n for n, questions in enumerate(asked) for _ in questions]
        keys = None if image_keys is None else [image_keys[n] for n in owner]
        answers = self.scorer([images[n] for n in owner], [q for qs in asked for q in qs], keys)
        parts = answers.split([len(questions) for questions in asked])
        return torch.stack([part.prod() for part in parts]) if parts else torch.empty(0)
