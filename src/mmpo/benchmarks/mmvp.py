"""MMVP (Tong et al., CVPR 2024): 150 pairs of near-identical images with two-option questions.

Data layout under ``benchmark.path``: ``Questions.csv`` (columns ``Question``, ``Options`` such as
``"(a) Open (b) Closed"``, ``Correct Answer`` such as ``"(a)"``; row ``i`` (1-based) uses image
``i.jpg``) and the images in ``MMVP Images/`` (option ``image_dir``; the official script spells it
``MMVP Imgaes``). Prompt = ``Question + " " + Options`` (official ``evaluate_mllm.py``).

Grading: the official grader asks GPT-4 whether the answer is correct. Offline we match the answer to
an option by rules (:func:`match_option`), in this order:

1. exactly one option letter in parentheses, e.g. "(b)" or "(b) Closed";
2. a bare option letter at the start: "b", "B.", "b)", "Option b", "Answer: b" (but not the
   article of "A dog ...");
3. exactly one option text as a whole phrase, case-insensitive: "The door is closed".

Anything else -- no match, two letters in parentheses, or two options named ("not open but
closed") -- is unmatched and wrong.
The GPT grader may accept paraphrases (e.g. "shut" for "Closed") that these rules miss.

Metrics: ``pair_accuracy`` = pairs (rows 1-2, 3-4, ...) with both questions right / complete pairs
(the MMVP score); ``accuracy`` = questions right / questions.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import Benchmark, EvalItem, ratio

_OPTION = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.IGNORECASE | re.DOTALL)
# "b", "B.", "(b)", "b)" at the start, or "Option b" / "Answer: b"; not the article in "A dog ...".
_LEADING_LETTER = re.compile(
    r"^\s*(?:(?:option|answer)\s*:?\s*\(?([a-z])\b|\(?([a-z])(?:[).:,]|\s*$))", re.IGNORECASE
)


def parse_options(options: str) -> dict[str, str]:
    """``"(a) Open (b) Closed"`` -> ``{"a": "Open", "b": "Closed"}``."""
    return {letter.lower(): text.strip() for letter, text in _OPTION.findall(options)}


def match_option(answer: str, options: dict[str, str]) -> str | None:
    """The chosen option letter by the rules in the module docstring, or ``None``."""
    in_parentheses = {m.lower() for m in re.findall(r"\(([a-z])\)", answer, re.IGNORECASE)} & set(options)
    if len(in_parentheses) > 1:
        return None
    if in_parentheses:
        return in_parentheses.pop()
    leading = _LEADING_LETTER.match(answer)
    letter = (leading.group(1) or leading.group(2)).lower() if leading else None
    if letter in options:
        return letter
    named = [
        letter
        for letter, text in options.items()
        if text and re.search(rf"(?<!\w){re.escape(text.lower())}(?!\w)", answer.lower())
    ]
    return named[0] if len(named) == 1 else None


class MMVP(Benchmark):
    """MMVP with rule-based option matching and pair accuracy."""

    name = "mmvp"
    source = (
        "MMVP/MMVP dataset on the Hugging Face Hub (Questions.csv and 'MMVP Images/'), downloaded beforehand"
    )

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        question_file: str = "Questions.csv",
        image_dir: str = "MMVP Images",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.question_file = question_file
        self.image_dir = image_dir

    def data_files(self) -> list[Path]:
        return self.under_root(self.question_file)

    def items(self) -> list[EvalItem]:
        root = self.require(self.question_file)
        image_dir = self.resolve(self.image_dir)
        with (root / self.question_file).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        items = []
        for number, row in enumerate(rows, start=1):
            correct = re.search(r"[a-z]", row["Correct Answer"], re.IGNORECASE)
            if correct is None:
                raise ValueError(
                    f"{root / self.question_file}: row {number} has no option letter in 'Correct Answer'"
                )
            items.append(
                EvalItem(
                    id=str(number),
                    image=str(image_dir / f"{number}.jpg"),
                    prompt=self.with_suffix(f"{row['Question']} {row['Options']}"),
                    meta={
                        "options": parse_options(row["Options"]),
                        "answer": correct.group(0).lower(),
                        "pair": (number - 1) // 2,
                    },
                )
            )
        return self.truncate(items)

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        records = []
        for item, answer in zip(items, self.outputs_for(items, outputs), strict=True):
            chosen = match_option(answer, item.meta["options"])
            records.append(
                {"id": item.id, "prompt": item.prompt, "output": answer, "parsed": chosen,
                 "answer": item.meta["answer"], "pair": item.meta["pair"], "correct": chosen == item.meta["answer"]}
            )  # fmt: skip
        pairs: dict[int, list[bool]] = {}
        for record in records:
            pairs.setdefault(record["pair"], []).append(record["correct"])
        complete = [results for results in pairs.values() if len(results) == 2]
        metrics = {
            "pair_accuracy": ratio(sum(all(results) for results in complete), len(complete)),
            "accuracy": ratio(sum(r["correct"] for r in records), len(records)),
        }
        return metrics, records
