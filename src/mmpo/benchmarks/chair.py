"""CHAIR: caption hallucination of COCO objects (Rohrbach et al., EMNLP 2018), as used by Object HalBench.

Ground truth of an image = the canonical COCO categories of its instance annotations (``instances_*``)
∪ the objects that :class:`~mmpo.benchmarks.coco_objects.CocoObjectExtractor` finds in its ground-truth
captions (``captions_*``). A generated mention is *hallucinated* iff its category is not in that set.

Over a set of responses ``c`` with mentions ``M(c)`` and ground truth ``G(c)``:

- ``CHAIRi = Σ_c |{m ∈ M(c): m ∉ G(c)}| / Σ_c |M(c)|`` (mention level, duplicates count);
- ``CHAIRs = |{c: some m ∈ M(c) ∉ G(c)}| / |{c}|`` (response level);
- ``CHAIRs_refine = |{c: some m ∉ G(c)}| / |{c: M(c) ≠ ∅}|`` -- RLHF-V's "Response Hall", which
  divides by the responses that mention at least one COCO object (mDPO's CHAIRs follows this setting);
- ``recall = Σ_c |{categories of M(c)} ∩ G(c)| / Σ_c |G(c)|`` (RLHF-V ``obj_rec``);
- ``avg_words = mean_c |c.strip().split(" ")|`` (RLHF-V ``avg_word_len``).

All are fractions in [0, 1]. These are the formulas of both official codes (LisaAnne/Hallucination
``compute_chair``; RLHF-V ``compute_chair``, which adds ``CHAIRs_refine``, ``obj_rec`` and
``avg_word_len``); the mentions come from the variant's extractor (:mod:`mmpo.benchmarks.coco_objects`).
Known difference: an empty denominator gives 0 here, where the official code divides by zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import ratio
from mmpo.benchmarks.coco_objects import CocoObjectExtractor, ObjectMention


def coco_ground_truth(
    instance_files: Iterable[Path],
    caption_files: Iterable[Path],
    image_ids: Iterable[int],
    extractor: CocoObjectExtractor,
) -> dict[int, set[str]]:
    """Ground-truth COCO categories per image from instance and caption annotation files.

    The files are the official COCO 2014 ``instances_<split>.json`` (``categories`` with ``id``/``name``,
    ``annotations`` with ``image_id``/``category_id``) and ``captions_<split>.json`` (``annotations``
    with ``image_id``/``caption``). Images without any annotation get an empty set.
    """
    truth: dict[int, set[str]] = {int(image_id): set() for image_id in image_ids}
    for path in instance_files:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        names = {category["id"]: extractor.canonical(category["name"]) for category in data["categories"]}
        for annotation in data["annotations"]:
            objects = truth.get(int(annotation["image_id"]))
            if objects is not None:
                objects.add(names[annotation["category_id"]])
    for path in caption_files:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for annotation in data["annotations"]:
            objects = truth.get(int(annotation["image_id"]))
            if objects is not None:
                objects.update(mention.category for mention in extractor.mentions(annotation["caption"]))
    return truth


def chair_metrics(
    mentions: Sequence[Sequence[ObjectMention]], truths: Sequence[set[str]], responses: Sequence[str]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """CHAIR metrics (module docstring) and per-response details, for aligned lists of responses."""
    if not len(mentions) == len(truths) == len(responses):
        raise ValueError("mentions, truths and responses must have the same length")
    n_mentions = n_hallucinated = n_hallucinated_responses = n_responses_with_objects = 0
    n_recalled = n_truth = n_words = 0
    details = []
    for found, truth, response in zip(mentions, truths, responses, strict=True):
        hallucinated = [m for m in found if m.category not in truth]
        recalled = {m.category for m in found} & truth
        n_mentions += len(found)
        n_hallucinated += len(hallucinated)
        n_hallucinated_responses += bool(hallucinated)
        n_responses_with_objects += bool(found)
        n_recalled += len(recalled)
        n_truth += len(truth)
        n_words += len(response.strip().split(" "))
        details.append(
            {
                "mentions": [[m.word, m.category] for m in found],
                "hallucinated": [[m.word, m.category] for m in hallucinated],
                "gt_objects": sorted(truth),
                "chair_s": float(bool(hallucinated)),
                "chair_i": ratio(len(hallucinated), len(found)),
            }
        )
    metrics = {
        "CHAIRs": ratio(n_hallucinated_responses, len(responses)),
        "CHAIRs_refine": ratio(n_hallucinated_responses, n_responses_with_objects),
        "CHAIRi": ratio(n_hallucinated, n_mentions),
        "recall": ratio(n_recalled, n_truth),
        "avg_words": ratio(n_words, len(responses)),
        "n_responses": float(len(responses)),
        "n_mentions": float(n_mentions),
    }
    return metrics, details
