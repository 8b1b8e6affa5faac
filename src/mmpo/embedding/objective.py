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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmpo.embedding.contrastive import symmetric_info_nce
from mmpo.embedding.rpa import RPA_KINDS, candidate_similarities, rpa_loss
from mmpo.losses.base import LossOutput


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


class MapleLoss(nn.Module):
    """The MAPLE objective (module docstring); ``forward`` returns the loss and its terms.

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
        directions = {"rpa_t2i": (texts, image_candidates), "rpa_i2t": (images, text_candidates)}
        for name, (anchors, candidates) in directions.items():
            if candidates is not None:
                scores = candidate_similarities(anchors, candidates.embeddings, self.rpa_temperature)
                terms[name] = rpa_loss(self.rpa, scores, candidates.rewards, candidates.mask)
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
        return LossOutput(loss, terms)
