"""Choosing K negatives among a record's M candidates (methods.md §4.2-4.3): pure functions on 1-D tensors.

- :func:`combined_scores`: ``s_i = l_i / max_j l_j + v_i / max_j v_j`` with ``l`` the SAE reconstruction
  error and ``v`` the latent L1 norm (a term whose maximum is 0 contributes 0).
- :func:`greedy_diverse`: Algorithm 1, deterministic.
- :func:`importance_sample`: K draws without replacement from ``q ∝ exp(s / tau)`` with their ``log q``.
- :func:`clip_knn`: the K candidates most similar in CLIP space (the ``clip_knn`` baseline).
- :func:`select_negatives`: one of the three by name (:data:`SELECTORS`).

All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import torch

LOG_Q = ("first_draw", "per_draw")


def _check_k(k: int, n: int) -> None:
    if not 0 < k <= n:
        raise ValueError(f"cannot select k={k} negatives from {n} candidates (need 0 < k <= {n})")


def combined_scores(reconstruction_error: torch.Tensor, latent_l1: torch.Tensor) -> torch.Tensor:
    """``s_i = l_i / max_j l_j + v_i / max_j v_j`` (both inputs are non-negative)."""

    def scaled(x: torch.Tensor) -> torch.Tensor:
        top = x.max()
        return x / top if top > 0 else torch.zeros_like(x)

    return scaled(reconstruction_error) + scaled(latent_l1)


def greedy_diverse(
    scores: torch.Tensor, latents: torch.Tensor, k: int, diversity_weight: float = 1.0
) -> torch.Tensor:
    """Indices ``[k]`` in selection order, by Algorithm 1 of MISP-DPO (methods.md §4.3):

        S = []
        repeat k times:
            i* = argmax_{i not in S} [ s_i + diversity_weight * min_{j in S} (1 - cos(z_i, z_j)) ]
            S.append(i*)

    ``scores`` is ``[M]``, ``latents`` ``[M, L]`` (the SAE latents ``E(d_i)``). The diversity term is 0
    while S is empty ([I]), so the first pick is the top score; ties go to the lowest index (no
    randomness). ``diversity_weight`` (``beta_div``) is not given in the paper ([?]); 1 balances the two
    terms, which both lie in [0, 2].
    """
    _check_k(k, len(scores))
    unit = torch.nn.functional.normalize(latents.double(), dim=-1)
    distance = torch.full_like(
        scores, float("inf"), dtype=torch.double
    )  # min over S of 1 - cos; +inf: S empty
    available = torch.ones(len(scores), dtype=torch.bool)
    chosen = []
    for _ in range(k):
        bonus = torch.where(torch.isinf(distance), 0.0, diversity_weight * distance)
        gain = torch.where(available, scores.double() + bonus, -torch.inf)
        pick = int(torch.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        distance = torch.minimum(distance, 1 - unit @ unit[pick])
    return torch.tensor(chosen, dtype=torch.long)


def importance_sample(
    scores: torch.Tensor,
    k: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    log_q: str = "first_draw",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices [k], log_q [k])``: k draws without replacement from ``q_i = softmax(s / tau)_i`` over the
    M candidates, in draw order ([I]: the notes say only that the SAE scores "form the basis" of q_phi).

    The draws are Gumbel-top-k (keys ``s_i / tau + G_i``, ``G_i`` standard Gumbel from ``generator``, the
    k largest in decreasing order), which is exactly successive sampling without replacement: draw t picks
    ``i`` with probability ``q_i / (1 - sum of q over the t earlier picks)`` (Kool et al. 2019, Gumbel-top-k).
    ``log_q`` (one of :data:`LOG_Q`) says which probability is returned for the t-th pick ``i_t``:

    - ``first_draw`` (default): ``log q_{i_t}``, the proposal ``q_phi(m_n^i)`` of the importance weights
      ``exp(a_i) / q_phi(m_n^i)`` in methods.md §4.2;
    - ``per_draw``: ``log q_{i_t} - log(1 - sum_{s<t} q_{i_s})`` (computed as a log-sum-exp over the
      candidates not yet drawn), the probability of that draw given the earlier ones; the sum over t is
      the log-probability of the ordered selection.

    ``temperature`` (tau) is not given in the paper ([?]); default 1.
    """
    if log_q not in LOG_Q:
        raise ValueError(f"log_q={log_q!r}; allowed: {list(LOG_Q)}")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    _check_k(k, len(scores))
    log_probs = torch.log_softmax(scores.double() / temperature, dim=0)
    uniform = torch.rand(len(scores), generator=generator, dtype=torch.double).clamp_min(
        torch.finfo(torch.double).tiny
    )
    keys = log_probs - torch.log(-torch.log(uniform))
    indices = torch.topk(keys, k).indices
    if log_q == "first_draw":
        return indices, log_probs[indices].to(scores.dtype)
    remaining, per_draw = log_probs.clone(), []
    for i in indices:
        per_draw.append(remaining[i] - torch.logsumexp(remaining, 0))
        remaining[i] = -torch.inf
    return indices, torch.stack(per_draw).to(scores.dtype)


def clip_knn(similarities: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` indices of the largest CLIP similarities, best first; ties go to the lower index."""
    _check_k(k, len(similarities))
    return torch.sort(similarities, descending=True, stable=True).indices[:k]


SELECTORS = ("greedy", "importance", "clip_knn")


def select_negatives(
    method: str,
    k: int,
    *,
    similarities: torch.Tensor,
    scores: torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    diversity_weight: float = 1.0,
    temperature: float = 1.0,
    log_q: str = "first_draw",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(indices [k], log q [k] or None)`` by ``method`` in :data:`SELECTORS`: :func:`greedy_diverse` on the
    SAE ``scores`` and ``latents``, :func:`importance_sample` on ``scores`` with ``generator``, or
    :func:`clip_knn` on the CLIP ``similarities``; only importance draws have a ``log q``."""
    if method == "clip_knn":
        return clip_knn(similarities, k), None
    if method not in SELECTORS:
        raise ValueError(f"selection method {method!r}; allowed: {list(SELECTORS)}")
    if scores is None or (method == "greedy" and latents is None):
        raise ValueError(
            f"selection method {method!r} needs the SAE scores" + (" and latents" * (method == "greedy"))
        )
    if method == "greedy":
        return greedy_diverse(scores, latents, k, diversity_weight), None
    if generator is None:
        raise ValueError("importance sampling needs a torch.Generator")
    return importance_sample(scores, k, generator, temperature, log_q)
