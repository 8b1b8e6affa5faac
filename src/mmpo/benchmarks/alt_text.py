"""Alt-text / caption metrics as MCM-DPO's ``get_score.py`` computes them (methods.md §2.7), one reference each.

Official scorer: LVUGAI/MCM-DPO @519439d ``get_score.py`` and ``cider.py``; every metric goes through
the library the official code calls. Per sample the response is cleaned (a leading ``"Assistant:"``
removed, then stripped) and compared with its reference; ``ref`` / ``hyp`` below are the
``nltk.word_tokenize`` tokens of reference and response (:func:`~mmpo.benchmarks.text.word_tokenize`,
case kept). The corpus value is the mean over samples; CIDEr-D is a corpus metric.

- ``bleu_4``: NLTK ``sentence_bleu([ref], hyp, weights=[0, 0, 0, 1])``: the *individual* 4-gram
  precision times the brevity penalty, no smoothing, so 0 whenever no 4-gram matches;
  ``cumulative_bleu_4``: weights ``[0.25] * 4``, the geometric mean of the 1..4-gram precisions × BP;
  ``bleu_1``: weights ``[1, 0, 0, 0]``. With ``p_n = Σ_g min(c_hyp(g), c_ref(g)) / Σ_g c_hyp(g)`` and
  ``BP = 1 if |hyp| > |ref| else exp(1 − |ref|/|hyp|)``, ``BLEU = BP · exp(Σ_n w_n log p_n)``.
- ``meteor``: NLTK ``meteor_score([ref], hyp)`` (exact, Porter-stem and WordNet-synonym matching;
  ``α = 0.9, β = 3, γ = 0.5``): ``F = P·R / (α·P + (1 − α)·R)`` times ``1 − γ·(chunks/matches)^β``.
- ``rouge_l``: PyPI ``rouge`` ``Rouge().get_scores(response, reference, avg=True)["rouge-l"]["f"]`` on
  the raw texts (summary-level LCS over "sentences" split at ``.``, distinct words); an empty
  response scores 0, and a sample where the package raises (an empty reference, a text of dots only)
  adds 0 to the sum but is still counted, as the official loop does.
- ``cider``: CIDEr-D by pycocoevalcap's ``CiderScorer`` (``cider.py`` of MCM-DPO is a copy of it) on
  the raw, whitespace-split texts, document frequencies from the evaluated references
  (n = 1..4, σ = 6, ×10 built in); a one-sample corpus has IDF ``log 1 = 0`` and scores 0.
- ``edit_distance``: ``editdistance.eval(ref, hyp)``, the token-level Levenshtein distance.

Values are what the libraries return; ``get_score.py`` prints ``round(mean, 5) * 100`` (CIDEr's ×10
scale included, so its table shows ×1000 of a fraction) and the edit distance rounded to 3 digits.

A metric whose NLTK data is not installed (``punkt_tab`` for the token-based ones, and ``wordnet`` for
METEOR; ``make nltk-data``) is reported as NaN (never 0) with a warning naming the install line, in
the log at start-up and in every record (``unavailable``); ROUGE-L and CIDEr need no NLTK data.

Remaining known differences from the official scorer:

- ``get_score.py`` raises Python's recursion limit to 10^5, because ``rouge`` 1.0.1 rebuilds each
  LCS by recursion (one frame per word of a sentence pair). The default limit is kept here (raising
  it that far can overflow the C stack), so a sentence pair of more than about 1000 words makes
  ``rouge`` raise and the sample scores 0 like any other ROUGE exception. Alt-texts are far shorter.
- The official code pins no NLTK version; the BLEU and METEOR numbers are those of the NLTK installed
  (``nltk>=3.9``), whose METEOR also differs from the METEOR-1.5 jar of coco-caption (nltk/nltk#2655).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import editdistance
from nltk.translate.bleu_score import sentence_bleu
from nltk.translate.meteor_score import meteor_score
from pycocoevalcap.cider.cider_scorer import CiderScorer
from rouge import Rouge

from mmpo.benchmarks import nltk_data
from mmpo.benchmarks.base import Benchmark, EvalItem, ratio, read_jsonl
from mmpo.benchmarks.text import word_tokenize

log = logging.getLogger(__name__)

BLEU_WEIGHTS = {
    "bleu_1": (1.0, 0.0, 0.0, 0.0),
    "bleu_4": (0.0, 0.0, 0.0, 1.0),
    "cumulative_bleu_4": (0.25, 0.25, 0.25, 0.25),
}
METRICS = (*BLEU_WEIGHTS, "meteor", "rouge_l", "cider", "edit_distance")
#: metric -> the NLTK data packages it needs (the others need none).
NLTK_PACKAGES = {
    **{name: ("punkt_tab",) for name in BLEU_WEIGHTS},
    "meteor": ("punkt_tab", "wordnet"),
    "edit_distance": ("punkt_tab",),
}


def clean_response(text: str) -> str:
    """Drop a leading ``"Assistant:"`` and surrounding whitespace (MCM-DPO's normalisation)."""
    return re.sub(r"^Assistant:", "", text).strip()


def unavailable_metrics(missing: Collection[str] | None = None) -> dict[str, str]:
    """metric -> why it cannot be computed, for the ``missing`` NLTK packages (default: those not on disk)."""
    missing = set(nltk_data.missing(nltk_data.RESOURCES) if missing is None else missing)
    return {
        metric: f"needs the NLTK data {', '.join(absent)}; install with: {nltk_data.INSTALL_LINE}"
        for metric, packages in NLTK_PACKAGES.items()
        if (absent := [p for p in packages if p in missing])
    }


def bleu(
    reference_tokens: Sequence[str], hypothesis_tokens: Sequence[str], weights: Sequence[float]
) -> float:
    """NLTK sentence BLEU against one reference, without smoothing (its zero-count warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(sentence_bleu([list(reference_tokens)], list(hypothesis_tokens), weights=list(weights)))


def rouge_l(hypothesis: str, reference: str) -> tuple[float, str | None]:
    """(ROUGE-L F of PyPI ``rouge``, the package's error message or ``None``); see the module docstring."""
    if not hypothesis:
        return 0.0, None
    try:
        return float(Rouge().get_scores(hypothesis, reference, avg=True)["rouge-l"]["f"]), None
    except Exception as error:  # the official loop catches every exception the same way
        return 0.0, f"{type(error).__name__}: {error}"


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """pycocoevalcap CIDEr-D over the corpus: (mean, per-sample scores); ``(0, [])`` for no samples."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    if not hypotheses:
        return 0.0, []
    scorer = CiderScorer(n=4, sigma=6.0)
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        scorer += (hypothesis, list(refs))
    mean, scores = scorer.compute_score()
    return float(mean), [float(score) for score in scores]


def alt_text_metrics(
    hypotheses: Sequence[str], references: Sequence[str], missing: Collection[str] | None = None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Corpus metrics and per-sample scores for aligned (cleaned) responses and single references.

    ``missing``: the NLTK data packages to treat as absent (default: those not on disk); the metrics
    that need them are NaN.
    """
    missing = set(nltk_data.missing(nltk_data.RESOURCES) if missing is None else missing)
    unavailable = unavailable_metrics(missing)
    _, cider_scores = cider_d(hypotheses, [[ref] for ref in references])
    samples = []
    for hypothesis, reference, cider in zip(hypotheses, references, cider_scores, strict=True):
        sample: dict[str, Any] = {"cider": cider}
        sample["rouge_l"], error = rouge_l(hypothesis, reference)
        if error:
            sample["rouge_error"] = error
        if "punkt_tab" not in missing:
            ref_tokens, hyp_tokens = word_tokenize(reference), word_tokenize(hypothesis)
            sample.update({name: bleu(ref_tokens, hyp_tokens, w) for name, w in BLEU_WEIGHTS.items()})
            sample["edit_distance"] = float(editdistance.eval(ref_tokens, hyp_tokens))
            if "meteor" not in unavailable:
                sample["meteor"] = float(meteor_score([ref_tokens], hyp_tokens))
        if unavailable:
            sample["unavailable"] = unavailable
        samples.append(sample)
    metrics = {
        key: math.nan if key in unavailable else ratio(sum(s[key] for s in samples), len(samples))
        for key in METRICS
    }
    return metrics, samples


class AltText(Benchmark):
    """MCM-DPO's alt-text test sets (TAlt = ``twitter``, PAlt = ``pinterest``).

    Data layout under ``benchmark.path`` (MCM-DPO's ``data/<subset>/``): ``<subset>_test.json`` -- JSON
    lines ``{"image_path", "question", "chosen", "idx"}`` with ``chosen`` the reference alt-text -- and
    the images in ``image/<subset>_test/``. Decoding as the official inference: beam search with 3
    beams, 256 new tokens (``conf/benchmark/alt_text.yaml``).
    """

    name = "alt_text"
    source = "LVUGAI/MCM-DPO GitHub repository, data/<subset>/ (test json and image folder)"

    def __init__(
        self,
        path: str | None = None,
        prompt_suffix: str = "",
        limit: int | None = None,
        subset: str = "twitter",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, prompt_suffix, limit, **kwargs)
        self.subset = subset
        for metric, reason in unavailable_metrics().items():
            log.warning("alt_text: %s will be reported as NaN (unavailable): it %s", metric, reason)

    @property
    def question_file(self) -> str:
        return f"{self.subset}_test.json"

    def data_files(self) -> list[Path]:
        return self.under_root(self.question_file)

    def items(self) -> list[EvalItem]:
        question_file = self.question_file
        root = self.require(question_file)
        image_dir = root / "image" / f"{self.subset}_test"
        items = [
            EvalItem(
                id=str(row["idx"]),
                image=str(image_dir / row["image_path"]),
                prompt=self.with_suffix(row["question"]),
                meta={"reference": row["chosen"]},
            )
            for row in read_jsonl(root / question_file)
        ]
        return self.truncate(items)

    def score(
        self, items: list[EvalItem], outputs: dict[str, str]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        responses = [clean_response(text) for text in self.outputs_for(items, outputs)]
        references = [item.meta["reference"] for item in items]
        metrics, samples = alt_text_metrics(responses, references)
        records = [
            {"id": item.id, "prompt": item.prompt, "output": response, "reference": reference, **sample}
            for item, response, reference, sample in zip(items, responses, references, samples, strict=True)
        ]
        return metrics, records
