"""CHiP (Fu et al., ICLR 2025, arXiv 2501.16629): hierarchical textual preference (response, segment and
token levels) plus a visual preference against a diffusion-noised image, as the official code computes it
(LVUGAI/CHiP @ e7f5193, ``llava/train/llava_trainer.py``: ``LLAVADPOTrainer.chip_loss``, ``compute_loss``,
``get_seg_weight``, ``compute_weighted_logp``; settings of ``scripts/chip.sh``).

Branches: y_w, y_l under the image m (``chosen@original``, ``rejected@original``) and y_w under the noised
image m~ (``chosen@negative[0]``: ``negative_sampler=diffusion``, step 500 on the processed tensor, as the
code's ``add_diffusion_noise``). Segment level: per-token weights w_t from the diff of the two responses
(:mod:`mmpo.losses.segments`: ``segment_weight`` 4.0 on modified segments, matches of >= 3 tokens), giving
weighted log-probs ``S(y|m) = sum_t w_t log p(y_t | m, x, y_<t)``; W = sum_t w_t(y_w). Then

    h  = [S_pi(y_w|m) - S_pi(y_l|m)] - [S_ref(y_w|m) - S_ref(y_l|m)]            response + segment level
    v  = [S_pi(y_w|m) - S_ref(y_w|m)] - [S_pi(y_w|m~) - R~]                       visual preference
         R~ = W * log pi_ref(y_w|m~)   (noisy_reference: scaled, the code)   |   S_ref(y_w|m~)   (weighted)
    KL(y) = sum_t KL( p_ref(. | m, x, y_<t) || p_pi(. | m, x, y_<t) )            unweighted, full vocabulary
    k  = tok_beta * [KL(y_l) - sg(KL(y_w))]                                       token level (TDPO-2)
    L  = -log sigma( beta * (h + v - k) )                                         batch mean

Code defaults (``chip.sh``): beta 0.1 (``chip_loss``'s default), segment_weight 4.0
(``dpo_token_weight``; the dataclass default is 1.1), min_match 3, tok_beta 0.1, every level on
(``dpo_token_weighted``, ``use_cross_modal_loss``, ``use_tdpo``); lr 5e-7, 1 epoch, batch 1 x 8 x 4 GPUs,
a frozen copy of the SFT model as the reference (``conf/experiment/chip_llava15.yaml``).

Where the code departs from what the paper presents (its Fig. 1 adds a textual and a visual preference;
the full text could not be read here, so the equations above are the code's):

- every level sits inside one sigmoid with one beta; the token term is scaled by beta * tok_beta;
- R~ is the *unweighted* sequence log-prob of the reference under m~ times W: ``compute_weighted_logp``
  broadcasts the 1-D sum against the [1, T] weight mask (batch size 1 per device). With policy ==
  reference v is then -(S_ref(y_w|m~) - R~) != 0, so the loss does not start at log 2 and the sigmoid
  saturates on real sequences. ``noisy_reference: weighted`` computes what the other terms do;
- the code pairs the policy and reference rows with ``logits[:-1]`` (right only at batch size 1); here
  every record is scored on its own, at any batch size;
- the diff runs over ``[prompt | response | padding]`` ids there, over the response ids here (the prompt is
  shared, but it can move difflib's longest matches and its autojunk threshold of 200 elements);
- the reference under m~ of y_l is computed there and never used; it is not a branch here;
- the logged rewards there include the KL; here they are the usual ones (:mod:`mmpo.losses.metrics`).

Switching a level off (``segment_level``, ``visual``, ``token_level``) follows the code's flags; with all
three off the loss is DPO. Metrics: ``chip/response_margin`` (beta h), ``chip/visual_margin`` (beta v),
``chip/kl_chosen``, ``chip/kl_rejected``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mmpo.branches import CHOSEN, CHOSEN_NEGATIVE, REJECTED, LogProbs, TokenLogProbs
from mmpo.losses.base import LossInputs, LossOutput, PreferenceLoss, Requirements
from mmpo.losses.segments import segment_weights

NOISY_REFERENCES = ("scaled", "weighted")


def sequence_kl(reference: TokenLogProbs, policy: TokenLogProbs) -> Tensor:
    """``sum_t KL(p_ref,t || p_pi,t)`` over each row's response positions, [batch]."""
    per_position = (reference.vocab.exp() * (reference.vocab - policy.vocab)).sum(-1)
    return (per_position * reference.mask).sum(-1)


class CHiPLoss(PreferenceLoss):
    def __init__(
        self,
        beta: float = 0.1,
        segment_level: bool = True,
        segment_weight: float = 4.0,
        min_match: int = 3,
        visual: bool = True,
        token_level: bool = True,
        tok_beta: float = 0.1,
        noisy_reference: str = "scaled",
    ):
        super().__init__()
        if noisy_reference not in NOISY_REFERENCES:
            raise ValueError(f"loss.noisy_reference={noisy_reference!r}; allowed: {list(NOISY_REFERENCES)}")
        if min_match < 1:
            raise ValueError(f"loss.min_match={min_match}; allowed: >= 1")
        self.beta = beta
        self.segment_level, self.segment_weight, self.min_match = segment_level, segment_weight, min_match
        self.visual, self.token_level, self.tok_beta = visual, token_level, tok_beta
        self.noisy_reference = noisy_reference

    @property
    def requirements(self) -> Requirements:
        branches = (CHOSEN, REJECTED, CHOSEN_NEGATIVE) if self.visual else (CHOSEN, REJECTED)
        distributions = (CHOSEN, REJECTED) if self.token_level else ()
        tokens = branches if self.segment_level else distributions
        return Requirements(branches, token_logps=tokens, token_distributions=distributions)

    def _weighted(
        self, policy: LogProbs, reference: LogProbs, inputs: LossInputs
    ) -> tuple[LogProbs, LogProbs]:
        """The (segment-weighted) sequence log-probs the margins read, policy and reference."""
        if not self.segment_level:
            return policy, reference
        mine, theirs = inputs.policy_tokens, inputs.reference_tokens
        chosen, rejected = segment_weights(mine[CHOSEN], mine[REJECTED], self.segment_weight, self.min_match)
        weights = {CHOSEN: chosen, REJECTED: rejected}
        if self.visual:
            weights[CHOSEN_NEGATIVE] = weights[CHOSEN]  # the same response under the noised image
        weighted_policy = {b: (mine[b].logps * w).sum(-1) for b, w in weights.items()}
        weighted_reference = {b: (theirs[b].logps * w).sum(-1) for b, w in weights.items()}
        if self.visual and self.noisy_reference == "scaled":
            weighted_reference[CHOSEN_NEGATIVE] = reference[CHOSEN_NEGATIVE] * weights[CHOSEN].sum(-1)
        return weighted_policy, weighted_reference

    def loss(self, policy: LogProbs, reference: LogProbs | None, inputs: LossInputs) -> LossOutput:
        pi, ref = self._weighted(policy, reference, inputs)
        chosen = pi[CHOSEN] - ref[CHOSEN]
        response = chosen - (pi[REJECTED] - ref[REJECTED])
        logits, metrics = response, {"chip/response_margin": self.beta * response.detach().mean()}
        if self.visual:
            visual = chosen - (pi[CHOSEN_NEGATIVE] - ref[CHOSEN_NEGATIVE])
            logits = logits + visual
            metrics["chip/visual_margin"] = self.beta * visual.detach().mean()
        if self.token_level:
            mine, theirs = inputs.policy_tokens, inputs.reference_tokens
            kl_chosen = sequence_kl(theirs[CHOSEN], mine[CHOSEN])
            kl_rejected = sequence_kl(theirs[REJECTED], mine[REJECTED])
            logits = logits - self.tok_beta * (kl_rejected - kl_chosen.detach())
            metrics["chip/kl_chosen"] = kl_chosen.detach().mean()
            metrics["chip/kl_rejected"] = kl_rejected.detach().mean()
        return LossOutput(-F.logsigmoid(self.beta * logits).mean(), {}, metrics)
