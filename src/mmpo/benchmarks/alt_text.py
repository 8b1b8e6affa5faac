"""Alt-text / caption metrics as MCM-DPO computes them (``get_score.py``, methods.md §2.7), one reference each.

Per sample the response is cleaned (a leading ``"Assistant:"`` removed, then stripped) and compared with
its reference; the corpus value is the mean over samples, except CIDEr-D, which is a corpus metric.
Values are fractions (MCM-DPO's tables print ×100; CIDEr-D is already ×10, so its table shows ×1000).

- Tokens for BLEU and edit distance: :func:`~mmpo.benchmarks.text.word_tokenize` (``nltk.word_tokenize``
  without NLTK data; case kept).
- ``bleu_4``: NLTK ``sentence_bleu([ref], hyp, weights=(0, 0, 0, 1))`` -- the *individual* 4-gram
  precision times the brevity penalty, no smoothing, so 0 whenever no 4-gram matches;
  ``cumulative_bleu_4``: weights (¼, ¼, ¼, ¼), the geometric mean of 1..4-gram precisions × BP;
  ``bleu_1``: weights (1, 0, 0, 0). ``p_n = Σ_g min(c_hyp(g), c_ref(g)) / Σ_g c_hyp(g)`` (clipped n-gram
  precision), ``BP = 1 if |hyp| > |ref| else exp(1 − |ref|/|hyp|)``. NLTK is the reference
  implementation itself, used through :mod:`nltk.translate.bleu_score` (which needs no NLTK data).
- ``rouge_l``: :func:`rouge_l` -- the F-score of PyPI ``rouge`` 1.0.1, which MCM-DPO calls; see there.
- ``cider``: :func:`cider_d` -- CIDEr-D as the coco-caption scorer computes it; see there.
- ``edit_distance``: Levenshtein distance between the reference and response token lists.
- METEOR is left out: MCM-DPO uses NLTK's ``meteor_score``, whose synonym stage queries the WordNet
  corpus (NLTK data, a download), and NLTK's METEOR differs from the METEOR-1.5 jar anyway (0.68 vs
  0.42 on one sentence, nltk/nltk#2655). Dropping the WordNet stage would give a third variant with no
  published counterpart, so we report none rather than a METEOR that matches no paper.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from nltk.translate.bleu_score import sentence_bleu

from mmpo.benchmarks.base import Benchmark, EvalItem, ratio, read_jsonl
from mmpo.benchmarks.text import word_tokenize

BLEU_WEIGHTS = {
    "bleu_1": (1.0, 0.0, 0.0, 0.0),
    "bleu_4": (0.0, 0.0, 0.0, 1.0),
    "cumulative_bleu_4": (0.25, 0.25, 0.25, 0.25),
}


def clean_response(text: str) -> str:
    """Drop a leading ``"Assistant:"`` and surrounding whitespace (MCM-DPO's normalisation)."""
    return re.sub(r"^Assistant:", "", text).strip()


def bleu(
    reference_tokens: Sequence[str], hypothesis_tokens: Sequence[str], weights: Sequence[float]
) -> float:
    """NLTK sentence BLEU against one reference, without smoothing (its zero-count warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(sentence_bleu([list(reference_tokens)], list(hypothesis_tokens), weights=tuple(weights)))


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> list[str]:
    """One longest common subsequence of ``x`` and ``y``, backtracking like ``rouge`` 1.0.1.

    The reconstruction walks back from the end: on a match take the word and go diagonally; else go
    up (drop from ``x``) only if that cell is strictly larger, otherwise left. Which LCS is found
    matters because the union below is a union of *words*.
    """
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    words = []
    i, j = len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words[::-1]


def _rouge_sentences(text: str) -> list[str]:
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F of PyPI ``rouge`` 1.0.1 (``Rouge().get_scores(hyp, ref)[0]["rouge-l"]["f"]``).

    That package computes Lin's *summary-level* ROUGE-L on raw text: both texts are split into
    "sentences" at every ``.``, whitespace-normalised and split at spaces (case and punctuation kept);
    with its default ``exclusive=True`` all counts are of *distinct* words:
    ``U = ∪_{r ∈ ref sentences, h ∈ hyp sentences} words(LCS(r, h))``,
    ``R = |U| / |distinct ref words|``, ``P = |U| / |distinct hyp words|``, ``F = 2PR / (P + R + 1e-8)``.
    An empty text makes the package raise; MCM-DPO then adds nothing for the sample but still counts
    it, i.e. 0, which is what this returns.

    Written here rather than depending on ``rouge`` (unmaintained since 2021): ``rouge-score`` and
    ``torchmetrics`` compute sentence-level LCS F1 on their own tokenisation, a different number.
    """
    if not hypothesis:
        return 0.0
    hyp, ref = _rouge_sentences(hypothesis), _rouge_sentences(reference)
    if not hyp or not ref:
        return 0.0
    union: set[str] = set()
    for r in ref:
        for h in hyp:
            union.update(_lcs_words(r.split(" "), h.split(" ")))
    recall = len(union) / len({w for s in ref for w in s.split(" ")})
    precision = len(union) / len({w for s in hyp for w in s.split(" ")})
    return 2.0 * precision * recall / (precision + recall + 1e-8)


def _ngram_counts(text: str, n: int) -> Counter[tuple[str, ...]]:
    words = text.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider_d(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """CIDEr-D (Vedantam et al., 2015) as the coco-caption ``CiderScorer``: (corpus mean, per-sample scores).

    Texts are split on whitespace, case-sensitive (MCM-DPO passes raw text). For sample ``i`` with
    references ``R_i`` over a corpus of ``N`` samples:
    ``df(g)`` = number of samples whose references contain n-gram ``g`` (IDF from the evaluated
    references only); ``v_k(t)[g] = tf_t(g) · (log N − log max(1, df(g)))`` for the k-grams of ``t``;
    ``sim_k(h, r) = Σ_g min(v_k(h)[g], v_k(r)[g]) · v_k(r)[g] / (‖v_k(h)‖ ‖v_k(r)‖)`` (clipping; the
    division is skipped when a norm is 0) ``· exp(−δ² / 2σ²)`` with ``δ`` the difference in word
    counts (the reference counts bigrams, i.e. words − 1, which gives the same ``δ`` whenever both
    texts are non-empty; with an empty text every ``sim_k`` is 0 anyway);
    ``CIDEr-D_i = 10 · mean_k Σ_{r ∈ R_i} sim_k(h_i, r) / |R_i|``, k = 1..n. A single-sample corpus has
    ``log N = 0`` and scores 0.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    reference_counts = [[_ngram_counts(ref, n) for ref in refs] for refs in references]
    document_frequency: Counter[tuple[str, ...]] = Counter()
    for counts in reference_counts:
        document_frequency.update({gram for c in counts for gram in c})
    log_n = math.log(len(references)) if references else 0.0

    def vectors(
        counts: Counter[tuple[str, ...]],
    ) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        for gram, tf in counts.items():
            vec[len(gram) - 1][gram] = tf * (log_n - math.log(max(1.0, document_frequency[gram])))
        norms = [math.sqrt(sum(w * w for w in v.values())) for v in vec]
        words = sum(tf for gram, tf in counts.items() if len(gram) == 1)
        return vec, norms, words

    scores = []
    for hypothesis, counts in zip(hypotheses, reference_counts, strict=True):
        vec_h, norm_h, len_h = vectors(_ngram_counts(hypothesis, n))
        total = [0.0] * n
        for ref_counts in counts:
            vec_r, norm_r, len_r = vectors(ref_counts)
            penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                value = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
                if norm_h[k] != 0 and norm_r[k] != 0:
                    value /= norm_h[k] * norm_r[k]
                total[k] += value * penalty
        scores.append(10.0 * (sum(total) / n) / max(len(counts), 1))
    return ratio(sum(scores), len(scores)), scores


def token_edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute cost 1)."""
    previous = list(range(len(b) + 1))
    for i, token_a in enumerate(a, start=1):
        current = [i]
        for j, token_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token_a != token_b)))
        previous = current
    return previous[-1]


def alt_text_metrics(
    hypotheses: Sequence[str], references: Sequence[str]
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Corpus metrics and per-sample scores for aligned (cleaned) responses and single references."""
    _, cider_scores = cider_d(hypotheses, [[ref] for ref in references])
    samples = []
    for hypothesis, reference, cider in zip(hypotheses, references, cider_scores, strict=True):
        hyp_tokens, ref_tokens = word_tokenize(hypothesis), word_tokenize(reference)
        sample = {name: bleu(ref_tokens, hyp_tokens, weights) for name, weights in BLEU_WEIGHTS.items()}
        sample["rouge_l"] = rouge_l(hypothesis, reference)
        sample["cider"] = cider
        sample["edit_distance"] = float(token_edit_distance(ref_tokens, hyp_tokens))
        samples.append(sample)
    keys = (*BLEU_WEIGHTS, "rouge_l", "cider", "edit_distance")
    metrics = {key: ratio(sum(s[key] for s in samples), len(samples)) for key in keys}
    return metrics, samples


class AltText(Benchmark):
    """MCM-DPO's alt-text test sets (TAlt = ``twitter``, PAlt = ``pinterest``).

    Data layout under ``benchmark.path`` (MCM-DPO's ``data/<subset>/``): ``<subset>_test.json`` -- JSON
    lines ``{"image_path", "question", "chosen", "idx"}`` with ``chosen`` the reference alt-text -- and
    the images in ``image/<subset>_test/``.
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

    def items(self) -> list[EvalItem]:
        question_file = f"{self.subset}_test.json"
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
