"""HallusionBench (Guan et al., CVPR 2024): yes/no questions on charts, tables, maps, illusions, ...

Data layout under ``benchmark.path``: ``HallusionBench.json`` (1129 records with ``category`` VD/VS,
``subcategory``, ``visual_input`` '0' none / '1' original / '2' edited, ``set_id``, ``figure_id``,
``question_id``, ``question``, ``gt_answer`` '1' yes / '0' no, ``filename`` like
``./hallusion_bench/VD/illusion/0_0.png`` or null) and the ``hallusion_bench/`` image tree next to it.

Correctness (offline route, as VLMEvalKit's rule-based rating; the official route asks GPT-4 whether
the answer is correct, incorrect or unclear): :func:`~mmpo.benchmarks.yes_no.extract_yes_no` gives
yes / no / unknown; a match with ``gt_answer`` is code '1', a mismatch '0', unknown '2' (the GPT
route's "unclear"). Then the official rule: on VS questions without a figure (``figure_id`` '0'), '2'
counts as correct (the model may not know without the figure); everywhere else only '1' does.
``uncertain_correct_without_figure=False`` counts '2' wrong there too (VLMEvalKit's choice).
The GPT route also accepts free-form correct answers that contain no yes/no word; this one does not.

Metrics (official ``evaluation.py`` / ``utils.py``, fractions):

- ``aAcc`` = correct questions / questions;
- ``fAcc`` = figures (key category_subcategory_set_figure, VS rows without figure skipped) whose
  questions are all correct / figures;
- ``qAcc`` = question groups (key category_subcategory_set_question, the same question on the
  original and the edited figures) all correct / groups;
- ``easy_aAcc`` / ``hard_aAcc`` = the qAcc grouping restricted to ``visual_input != '2'`` (no or
  original figure) / ``== '2'`` (edited figure).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmpo.benchmarks.base import Benchmark, EvalItem, ratio
from mmpo.benchmarks.yes_no import extract_yes_no


def correctness_code(answer: str, gt_answer: str) -> str:
    """'1' correct, '0' incorrect, '2' unknown (no clear yes/no) for a raw answer and ``gt_answer`` '1'/'0'."""
    extracted = extract_yes_no(answer)
    if extracted == "unknown":
        return "2"
    return "1" if extracted == ("yes" if gt_answer == "1" else "no") else "0"


def is_correct(
    code: str, category: str, figure_id: str, uncertain_correct_without_figure: bool = True
) -> bool:
    """The official rule: '2' also counts on VS questions without a figure (``figure_id`` '0')."""
    if uncertain_correct_without_figure and category == "VS" and str(figure_id) == "0":
        return code in ("1", "2")
    return code == "1"


def _all_correct_share(rows: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]) -> float:
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row["correct"])
    return ratio(sum(all(group) for group in groups.values()), len(groups))


def _figure_key(row: Mapping[str, Any]) -> str:
    return f"{row['category']}_{row['subcategory']}_{row['set_id']}_{row['figure_id']}"


def _question_key(row: Mapping[str, Any]) -> str:
    return f"{row['category']}_{row['subcategory']}_{row['set_id']}_{row['question_id']}"


def hallusion_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """aAcc, fAcc, qAcc, easy_aAcc, hard_aAcc over rows holding the record keys and ``correct``."""
    with_figure = [r for r in rows if not (r["category"] == "VS" and str(r["figure_id"]) == "0")]
    return {
        "aAcc": ratio(sum(r["correct"] for r in rows), len(rows)),
        "fAcc": _all_correct_share(with_figure, _figure_key),
        "qAcc": _all_correct_share(rows, _question_key),
        "easy_aAcc": _all_correct_share([r for r in rows if str(r["visual_input"]) != "2"], _question_key),
        "hard_aAcc": _all_correct_share([r for r in rows if str(r["visual_input"]) == "2"], _question_key),
    }


class HallusionBench(Benchmark):
    """HallusionBench with rule-based yes/no correctness."""

    name = "hallusionbench"
    source = (
        "tianyi-lab/HallusionBench GitHub repository (HallusionBench.json) and its hallusion_bench.zip image "
        "archive (Google-Drive link in the README)"
    )
    _KEYS = ("category", "subcategory", "visual_input", "set_id", "figure_id", "question_id")

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        question_file: str = "HallusionBench.json",
        uncertain_correct_without_figure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.question_file = question_file
        self.uncertain_correct_without_figure = uncertain_correct_without_figure

    def data_files(self) -> list[Path]:
        return self.under_root(self.question_file)

    def items(self) -> list[EvalItem]:
        root = self.require(self.question_file)
        records = json.loads((root / self.question_file).read_text(encoding="utf-8"))
        items = []
        for record in records:
            keys = {key: str(record[key]) for key in self._KEYS}
            filename = record.get("filename")
            image = (
                None
                if not filename or keys["visual_input"] == "0"
                else str(root / filename.removeprefix("./"))
            )
            items.append(
                EvalItem(
                    id="_".join(
                        keys[k] for k in ("category", "subcategory", "set_id", "figure_id", "question_id")
                    ),
                    image=image,
                    prompt=self.with_suffix(record["question"]),
                    meta={**keys, "gt_answer": str(record["gt_answer"])},
                )
            )
        return self.truncate(items)

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        records = []
        for item, answer in zip(items, self.outputs_for(items, outputs), strict=True):
            meta = item.meta
            code = correctness_code(answer, meta["gt_answer"])
            correct = is_correct(
                code, meta["category"], meta["figure_id"], self.uncertain_correct_without_figure
            )
            records.append(
                {"id": item.id, "prompt": item.prompt, "output": answer, "parsed": extract_yes_no(answer),
                 "code": code, "correct": correct, **meta}
            )  # fmt: skip
        return hallusion_metrics(records), records
