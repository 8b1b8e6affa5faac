"""One benchmark record as a person reads it: image, question, answer, reference, verdict, hallucinations.

The scorers' records (:mod:`mmpo.benchmarks`) are read by the fields they hold, not by benchmark name:

- ``correct`` (POPE, shapes_pope, HallusionBench, MMVP): the verdict;
- ``hallucinated`` (CHAIR records of object_halbench and shapes_chair: ``[word, category]`` pairs;
  AMBER generative: nouns): the objects named that are not in the image; any makes the answer wrong;
- ``parsed`` and ``label`` without ``correct`` (AMBER discriminative): right when equal;
- ``rating`` (MMHal-Bench): wrong when unparsed or below :data:`~mmpo.benchmarks.mmhal.HALLUCINATION_BELOW`;
- the reference: ``label``, ``gt_objects``, ``reference`` (alt-text), ``answer`` (MMVP's option),
  ``gt_answer`` (HallusionBench, ``1`` yes / ``0`` no) or AMBER's ``covered`` of ``n_truth``.

In the answer the hallucinated words are marked where they occur as whole words, case-insensitive,
with an optional plural ``s``/``es`` (a visual aid: the scorer's own match is in the record).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmpo.benchmarks.mmhal import HALLUCINATION_BELOW

HALLUSION_ANSWERS = {"1": "yes", "0": "no"}


@dataclass(frozen=True)
class ItemView:
    """What a report shows of one item; ``segments`` is the answer split into (text, marked) runs."""

    id: str
    image: str | None
    question: str
    answer: str
    segments: tuple[tuple[str, bool], ...]
    reference: str | None
    parsed: str | None
    hallucinated: tuple[str, ...]
    verdict: str | None

    @property
    def wrong(self) -> bool:
        return self.verdict == "wrong"


def hallucinations(record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(objects, words) of a record's hallucinations: CHAIR's ``[word, category]`` pairs give the
    category as the object and the word as the answer spelled it; AMBER's nouns are both."""
    pairs = [
        (entry[1], entry[0]) if isinstance(entry, (list, tuple)) else (entry, entry)
        for entry in record.get("hallucinated") or []
    ]
    objects = list(dict.fromkeys(str(obj) for obj, _ in pairs))
    return objects, list(dict.fromkeys(str(word) for _, word in pairs))


def verdict(record: Mapping[str, Any]) -> str | None:
    """``"right"``, ``"wrong"`` or ``None`` (nothing to judge by, e.g. alt-text) (module docstring)."""
    if "correct" in record:
        return "right" if record["correct"] else "wrong"
    if "hallucinated" in record:
        return "wrong" if record["hallucinated"] else "right"
    if "parsed" in record and "label" in record:
        return "right" if record["parsed"] == record["label"] else "wrong"
    if "rating" in record:
        rating = record["rating"]
        return "wrong" if rating is None or rating < HALLUCINATION_BELOW else "right"
    return None


def reference(record: Mapping[str, Any]) -> str | None:
    """The expected answer or ground truth of a record, as text (module docstring)."""
    if "label" in record:
        return str(record["label"])
    if "gt_objects" in record:
        return "objects: " + (", ".join(record["gt_objects"]) or "none")
    if "reference" in record:
        return str(record["reference"])
    if "answer" in record:
        return f"({record['answer']})"
    if "gt_answer" in record:
        return HALLUSION_ANSWERS.get(str(record["gt_answer"]), str(record["gt_answer"]))
    if "covered" in record:
        covered = record["covered"]
        return f"truth objects named: {', '.join(covered) or 'none'} ({len(covered)} of {record['n_truth']})"
    return None


def parsed(record: Mapping[str, Any]) -> str | None:
    """What the scorer read from the answer (a yes/no, an option letter, a judge's rating)."""
    if "rating" in record:
        return "unparsed judge reply" if record["rating"] is None else f"rating {record['rating']}"
    value = record.get("parsed")
    return None if value is None or isinstance(value, bool) else str(value)


def mark(text: str, words: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """``text`` as runs of (text, marked): every whole-word occurrence of ``words`` (plural allowed) marked."""
    if not words or not text:
        return ((text, False),)
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?:e?s)?(?!\w)", re.IGNORECASE)
    segments, start = [], 0
    for match in pattern.finditer(text):
        if match.start() > start:
            segments.append((text[start : match.start()], False))
        segments.append((match.group(0), True))
        start = match.end()
    if start < len(text):
        segments.append((text[start:], False))
    return tuple(segments)


def view(record: Mapping[str, Any]) -> ItemView:
    """The :class:`ItemView` of one scorer record; a wrong answer without named objects is marked whole."""
    objects, words = hallucinations(record)
    answer = str(record.get("output", ""))
    judged = verdict(record)
    segments = mark(answer, words) if words or judged != "wrong" else ((answer, True),)
    return ItemView(
        id=str(record["id"]),
        image=record.get("image"),
        question=str(record.get("prompt", "")),
        answer=answer,
        segments=segments,
        reference=reference(record),
        parsed=parsed(record),
        hallucinated=tuple(objects),
        verdict=judged,
    )


def sample(records: Sequence[Mapping[str, Any]], count: int, seed: int) -> list[Mapping[str, Any]]:
    """``count`` records drawn without replacement by ``random.Random(seed)``, in their original order
    (all of them when there are no more than ``count``)."""
    if count < 1:
        raise ValueError(f"report.items must be a positive number of items, got {count}")
    if len(records) <= count:
        return list(records)
    chosen = sorted(random.Random(seed).sample(range(len(records)), count))
    return [records[index] for index in chosen]
