"""MAPLE's training objective: ``L = lambda * L_RPA + (1 - lambda) * L_contrast`` (methods.md §3.4).

``L_RPA`` is the RPA loss (:mod:`mmpo.embedding.rpa`, listwise or pairwise) of each direction that has
a candidate set, averaged over the directions present ([I]: how the text-to-image and image-to-text
terms combine is not public)::

    text -> image:  anchors = the captions,  candidates = images  (positive + K hard negatives)
    image -> text:  anchors = the images,    candidates = texts   (caption + K candidate texts)

``L_contrast`` is the symmetric InfoNCE of the (image, caption) pairs (:mod:`mmpo.embedding.contrastive`),
with the candidates' hard negatives as extra keys when ``extended_negatives`` is on (the paper's
"extended negative pool", mechanism [I]).

Defaults ([?] in the paper, the most likely values here): ``weight`` (lambda) 0.5, both temperatures
0.05 (an MLLM-embedder's usual InfoNCE temperature), listwise RPA (the better of the two in the paper's
ablation), extended negatives on (the full model of its ablation).

Metrics (no gradient), per direction ``d`` with candidates (``t2i``, ``i2t``): ``d/positive_top1``, the
share of anchors whose own pair (column 0) is strictly the most similar of their candidates (the
retriever on hard negatives); ``d/reward_positive_top1``, the same for the reward (the scorer on them);
``d/reward_agreement``, the share of candidate pairs with ``alpha_a > alpha_b`` that the similarities
order the same way (what RPA trains). And ``d/in_batch_accuracy`` for both directions: the share of this
rank's anchors whose own pair is the most similar key of the local batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmpo.embedding.contrastive import symmetric_info_nce
from mmpo.embedding.rpa import RPA_KINDS, candidate_similarities, rpa_loss
from mmpo.losses.base import Loss, LossOutput, Requirements


@dataclass
class CandidateSet:
    """One direction's candidates for a batch of B anchors.

    Attributes:
        embeddings: [B, K+1, D]; column 0 is the anchor's own pair (its image for a caption anchor, its
            caption for an image anchor), columns 1..K its hard negatives.
        rewards: [B, K+1] the reward MLLM's alignment scores of (anchor, candidate).
        mask: [B, K+1] True where a candidate is present (None: all are).
    """

    embeddings: Tensor
    rewards: Tensor
    mask: Tensor | None = None

    def negatives(self) -> tuple[Tensor, Tensor | None]:
        """Columns 1..K and their mask, the extra contrastive keys."""
        return self.embeddings[:, 1:], None if self.mask is None else self.mask[:, 1:]


class MapleLoss(Loss):
    """The MAPLE objective (module docstring); ``forward`` returns the loss, its terms and its metrics.

    Args:
        weight: lambda, the share of ``L_RPA``; 0 gives pure InfoNCE, 1 pure RPA.
        rpa: one of :data:`~mmpo.embedding.rpa.RPA_KINDS`.
        rpa_temperature: tau of the RPA similarities ``s = z.z' / tau`` (beta = 1 / tau).
        contrast_temperature: tau of the InfoNCE logits.
        extended_negatives: add the candidates' hard negatives to the InfoNCE key sets.
    """

    name = "maple"

    def __init__(
        self,
        weight: float = 0.5,
        rpa: str = "listwise",
        rpa_temperature: float = 0.05,
        contrast_temperature: float = 0.05,
        extended_negatives: bool = True,
    ) -> None:
        super().__init__()
        if rpa not in RPA_KINDS:
            raise ValueError(f"loss.rpa={rpa!r}; allowed: {list(RPA_KINDS)}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"loss.weight (lambda) must lie in [0, 1], got {weight}")
        if rpa_temperature <= 0 or contrast_temperature <= 0:
            raise ValueError(
                f"loss temperatures must be positive, got rpa_temperature={rpa_temperature}, "
                f"contrast_temperature={contrast_temperature}"
            )
        self.weight = weight
        self.rpa = rpa
        self.rpa_temperature = rpa_temperature
        self.contrast_temperature = contrast_temperature
        self.extended_negatives = extended_negatives

    @property
    def requirements(self) -> Requirements:
        """No log-prob branches and no reference: an embedding module kind trains it."""
        return Requirements((), reference=False, module="embedding")

    def forward(
        self,
        images: Tensor,
        texts: Tensor,
        image_candidates: CandidateSet | None = None,
        text_candidates: CandidateSet | None = None,
    ) -> LossOutput:
        """``images``, ``texts``: [B, D] unit-norm embeddings of the pairs; ``image_candidates``: the
        caption anchors' image candidates (text -> image), ``text_candidates``: the image anchors' text
        candidates (image -> text)."""
        terms: dict[str, Tensor] = {}
        metrics: dict[str, Tensor] = {}
        directions = {"rpa_t2i": (texts, image_candidates), "rpa_i2t": (images, text_candidates)}
        for name, (anchors, candidates) in directions.items():
            if candidates is not None:
                scores = candidate_similarities(anchors, candidates.embeddings, self.rpa_temperature)
                terms[name] = rpa_loss(self.rpa, scores, candidates.rewards, candidates.mask)
                metrics.update(candidate_metrics(name.removeprefix("rpa_"), scores.detach(), candidates))
        if self.weight > 0 and not terms:
            raise ValueError("MAPLE loss with weight > 0 needs image_candidates and/or text_candidates")
        negatives = {}
        if self.extended_negatives:
            for key, candidates in (("image", image_candidates), ("text", text_candidates)):
                if candidates is not None:
                    negatives[f"{key}_negatives"], negatives[f"{key}_negatives_mask"] = candidates.negatives()
        terms["contrast"] = symmetric_info_nce(images, texts, self.contrast_temperature, **negatives)
        rpa_terms = [terms[name] for name in directions if name in terms]
        terms["rpa"] = torch.stack(rpa_terms).mean() if rpa_terms else terms["contrast"].new_zeros(())
        loss = self.weight * terms["rpa"] + (1 - self.weight) * terms["contrast"]
        similarity = images.detach().float() @ texts.detach().float().T
        target = torch.arange(len(images), device=images.device)
        metrics["i2t/in_batch_accuracy"] = (similarity.argmax(1) == target).float().mean()
        metrics["t2i/in_batch_accuracy"] = (similarity.argmax(0) == target).float().mean()
        return LossOutput(loss, terms, metrics)


def strictly_first(values: Tensor, present: Tensor) -> Tensor:
    """``[N]`` whether column 0 beats every other present column strictly (ties are wrong)."""
    others = values[:, 1:].masked_fill(~present[:, 1:], float("-inf"))
    return values[:, 0] > others.max(1).values


def candidate_metrics(direction: str, scores: Tensor, candidates: CandidateSet) -> dict[str, Tensor]:
    """The retriever's and the reward's ranking of one direction's candidates (module docstring)."""
    rewards = candidates.rewards.float()
    present = (
        torch.ones_like(rewards, dtype=torch.bool) if candidates.mask is None else candidates.mask.bool()
    )
    preferred = (rewards[:, :, None] > rewards[:, None, :]) & present[:, :, None] & present[:, None, :]
    agree = preferred & (scores[:, :, None] > scores[:, None, :])
    return {
        f"{direction}/positive_top1": strictly_first(scores, present).float().mean(),
        f"{direction}/reward_positive_top1": strictly_first(rewards, present).float().mean(),
        f"{direction}/reward_agreement": agree.sum() / preferred.sum().clamp(min=1),
    }
