"""VLFeedback / Silkie (HF ``MMInstruction/VLFeedback``): rated completions become preference pairs.

Schema (the data set card ``README.md`` and loader ``VLFeedback.py`` of ``MMInstruction/VLFeedback``):
``{"id": str, "prompt": str, "models": [str], "completions": [{"annotations": {"Helpfulness":
{"Rating": str, "Rationale": str}, "Ethical Considerations": {...}, "Visual Faithfulness": {...}},
"model": str, "response": str}], "img_path": str}`` (the parquet conversions carry an ``image`` column
instead of ``img_path``). ``completions`` arrives as a list of structs, or as a struct of lists when
written by ``datasets`` (``Sequence`` of a dict); both are read.

Score of a completion: the mean of its aspect ratings. A completion with a rating that is no number
(e.g. ``"N/A"``) or a missing aspect has no score and takes part in no pair. Pair rules (``--pairs``):

- ``all`` (default, **Silkie's published rule**, vlf-silkie/VLFeedback ``run_dpo.py``
  ``make_vlfeedback_paired_dataset``): every two scored completions whose scores differ by more than
  ``--margin`` (Silkie: 0, i.e. ties dropped) give one record, the higher score chosen;
- ``best_worst``: the best against the worst completion, if their scores differ by more than the margin;
- ``ranked``: one record per prompt, chosen = the best, ``rejected`` = every completion scoring more than
  the margin below it, best first (a list of rejected responses).

Ties in the best score go to the earlier completion. A row whose completions give no pair yields no
record; the report counts it.

    python scripts/convert.py --format vlfeedback --input vlfeedback_80k.jsonl --image-root merged_images/ --output data/vlf
"""

from __future__ import annotations

from itertools import combinations
from statistics import fmean

from mmpo.data.converters.base import BadRow, Draft, Options, image_list, strip_placeholders, text

PAIR_RULES = ("all", "best_worst", "ranked")


def completions(row: dict) -> list[dict]:
    value = row.get("completions")
    if isinstance(value, dict):  # a struct of lists, as datasets' Sequence(dict) gives it
        keys = list(value)
        value = [dict(zip(keys, items, strict=True)) for items in zip(*value.values(), strict=True)]
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise BadRow("completions", f"must be a list of completions, got {type(value).__name__}")
    return value


def score(completion: dict) -> float | None:
    """Mean rating over the annotated aspects; None if any rating is missing or not a number."""
    annotations = completion.get("annotations")
    if not isinstance(annotations, dict) or not annotations:
        return None
    try:
        return fmean(float(aspect["Rating"]) for aspect in annotations.values())
    except (TypeError, KeyError, ValueError):
        return None


def pairs(scores: list[float], rule: str, margin: float) -> list[tuple[int, list[int]]]:
    """(chosen index, rejected indices best first) for completions with these scores."""
    if rule == "all":
        found = []
        for i, j in combinations(range(len(scores)), 2):
            if abs(scores[i] - scores[j]) > margin:
                found.append((i, [j]) if scores[i] > scores[j] else (j, [i]))
        return found
    if rule not in PAIR_RULES[1:]:
        raise ValueError(f"--pairs {rule!r}; allowed: {list(PAIR_RULES)}")
    best = max(range(len(scores)), key=lambda k: (scores[k], -k))
    if rule == "best_worst":
        worst = min(range(len(scores)), key=lambda k: (scores[k], k))
        return [(best, [worst])] if scores[best] - scores[worst] > margin else []
    rejected = sorted(
        (k for k in range(len(scores)) if scores[best] - scores[k] > margin), key=lambda k: -scores[k]
    )
    return [(best, rejected)] if rejected else []


def to_drafts(row: dict, index: int, options: Options) -> list[Draft]:
    source_id = text(row, "id")
    image_field = "image" if row.get("image") is not None else "img_path"
    images = image_list(row, image_field)
    prompt = strip_placeholders(text(row, "prompt"), len(images), "prompt", required=False)
    scored = [(k, c, score(c)) for k, c in enumerate(completions(row))]
    scored = [(k, c, value) for k, c, value in scored if value is not None]
    responses = [_response(c, k) for k, c, _ in scored]
    drafts = []
    for chosen, rejected in pairs([value for _, _, value in scored], options.pairs, options.margin):
        ranks = [chosen, *rejected]
        name = "ranked" if options.pairs == "ranked" else "-".join(str(scored[r][0]) for r in ranks)
        drafts.append(
            Draft(
                id=f"{source_id}-{name}",
                images=images,
                image_field=image_field,
                prompt=prompt,
                chosen=responses[chosen],
                rejected=[responses[r] for r in rejected],
                meta={
                    "source": "vlfeedback",
                    "source_id": source_id,
                    "models": [scored[r][1].get("model") for r in ranks],
                    "scores": [scored[r][2] for r in ranks],
                },
            )
        )
    return drafts


def _response(completion: dict, k: int) -> str:
    value = completion.get("response")
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"completions[{k}].response", f"must be a non-empty string, got {value!r}")
    return value.strip()
