"""mDPO (Wang et al., EMNLP 2024, arXiv 2406.11839, §3): DPO + conditional + anchored preference.

With r(m, y) = beta * [log pi(y | m, q) - log pi_ref(y | m, q)], m_w the image and m_l the corrupted image
(the record's first negative, ``negative_sampler``: the paper's is a crop):

    L_DPO   = -log sigma( r(m_w, y_w) - r(m_w, y_l) )
    L_CoPO  = -log sigma( r(m_w, y_w) - r(m_l, y_w) )          (same response, real vs corrupted image)
    L_AncPO = -log sigma( r(m_w, y_w) - delta )                 (keeps the chosen reward positive)
    L_mDPO  = w_dpo * L_DPO + w_copo * L_CoPO + w_anc * L_AncPO   (paper: weights 1, beta 0.1, delta 0)

``anchors`` reproduces Table 4: ``[chosen]`` (default), ``[chosen, rejected]`` adds
-log sigma(-r(m_w, y_l)), ``[chosen, rejected, corrupted]`` also adds -log sigma(-r(m_l, y_w)); the form of
the two extra terms is not printed in the paper (methods.md §1.1, [I]). With policy == reference every
term is log 2, so the default loss is 3 log 2. With w_copo = w_anc = 0 it is exactly DPO, and the
negative branch is not even computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, LogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements, sigmoid_preference

ANCHORS = ("chosen", "rejected", "corrupted")


class MDPOLoss(PreferenceLoss):
    def __init__(
        self,
        beta: float = 0.1,
        delta: float = 0.0,
        w_dpo: float = 1.0,
        w_copo: float = 1.0,
        w_anc: float = 1.0,
        anchors: Sequence[str] = ("chosen",),
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        anchors = tuple(anchors)
        if not anchors or anchors[0] != "chosen" or any(a not in ANCHORS for a in anchors):
            raise ValueError(
                f"loss.anchors={list(anchors)}; allowed: [chosen], [chosen, rejected], "
                "[chosen, rejected, corrupted]"
            )
        self.beta, self.delta = beta, delta
        self.w_dpo, self.w_copo, self.w_anc = w_dpo, w_copo, w_anc
        self.anchors = anchors
        self.label_smoothing = label_smoothing

    @property
    def requirements(self) -> Requirements:
        needs_negative = bool(self.w_copo) or (bool(self.w_anc) and "corrupted" in self.anchors)
        return Requirements((CHOSEN, REJECTED, CHOSEN_NEGATIVE) if needs_negative else (CHOSEN, REJECTED))

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        r = self.rewards({b: policy[b] for b in self.requirements.branches}, reference)
        dpo = sigmoid_preference(r[CHOSEN] - r[REJECTED], self.label_smoothing).mean()
        terms = {"dpo": dpo}
        loss = self.w_dpo * dpo
        if self.w_copo:
            terms["copo"] = (-F.logsigmoid(r[CHOSEN] - r[CHOSEN_NEGATIVE])).mean()
            loss = loss + self.w_copo * terms["copo"]
        if self.w_anc:
            anchor = -F.logsigmoid(r[CHOSEN] - self.delta)
            negative = {"rejected": REJECTED, "corrupted": CHOSEN_NEGATIVE}
            for name in self.anchors[1:]:
                anchor = anchor - F.logsigmoid(-r[negative[name]])
            terms["ancpo"] = anchor.mean()
            loss = loss + self.w_anc * terms["ancpo"]
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()})
