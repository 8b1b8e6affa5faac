"""Retrieved negatives: K images of a candidate pool per record (MISP-DPO, methods.md §4.2-4.3).

A pool sampler reads a pool directory written by ``scripts/build_pool.py`` (:mod:`mmpo.retrieval.pool`:
each record's M most CLIP-similar gallery images, its own left out) and chooses K of the record's M
candidates; negative k is the k-th chosen image, resized (bilinear) to the size of the record's image.

- ``clip_knn`` (:class:`ClipKnnSampler`): the K most similar candidates. Deterministic.
- ``sae`` (:class:`SaeSampler`): the scores ``s_i = l_i / max l + v_i / max v`` of the sparse autoencoder
  that ``scripts/train_sae.py`` trained on the pool (reconstruction error and latent L1 of the
  joint-embedding difference ``d_i``), then

  - ``select=greedy`` (default; Algorithm 1): ``argmax_i s_i + diversity_weight * min_j (1 - cos(z_i,
    z_j))`` over the candidates not yet chosen, K times. Deterministic.
  - ``select=importance``: K draws without replacement from ``q = softmax(s / temperature)`` over the M
    candidates, new ones each epoch; their ``log q`` (``log_q=first_draw|per_draw``) reaches the loss as
    :attr:`~mmpo.negatives.base.Negative.log_q` (``LossInputs.negative_log_q``).

  The paper gives neither ``q_phi`` nor ``temperature`` nor ``beta_div`` ([?]; the defaults are those of
  :mod:`mmpo.retrieval.selection`). ``sae=null`` reads ``<pool>/sae/sae.pt``.

A pool holds one image per record, its first: pool samplers serve single-image records. Every rule keeps
its order as K grows (greedy and Gumbel-top-k are sequential), so the first K of K+1 negatives are the K
negatives.

Start-up checks (:meth:`PoolSampler.problems`): the pool directory is complete and of this code's format,
the records file it was built from is unchanged (SHA-256), it holds at least K candidates per record, and
(``sae``) the checkpoint exists and was trained on this pool. A record missing from the pool, or whose
image is not the pool's, stops the run when it is drawn (build the pool from the records of every split
that draws from it, or give validation its own sampler: ``negative_sampler@val_negative_sampler=...``).

Draws are stored (``store=true``, :mod:`mmpo.negatives.selections`) in ``store_dir`` (default
``<pool>/selections``), keyed by the sampler's fingerprint and (seed, record, epoch, stream). The pool and
the SAE load on first use, in each data loader worker.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmpo.images import load_image
from mmpo.negatives.base import Negative, NegativeSampler, SamplingKey
from mmpo.negatives.selections import Selection, SelectionStore
from mmpo.retrieval.selection import LOG_Q, combined_scores, select_negatives

SAE_SELECTORS = ("greedy", "importance")
"""``negative_sampler.select`` of ``negative_sampler=sae``."""


class PoolSampler(NegativeSampler):
    """Base of the samplers that choose a record's K negatives among its M pool candidates: subclasses set
    ``name`` and implement :meth:`choose` and :meth:`options`."""

    epoch_dependent = False

    def __init__(
        self,
        pool: str | None = None,
        store: bool = True,
        store_dir: str | None = None,
        resample_per_forward: bool = False,
    ):
        super().__init__(resample_per_forward)
        self.pool = None if pool is None else str(pool)
        self.store = bool(store)
        self.store_dir = None if store_dir is None else str(store_dir)
        self._candidates = None
        self._rows: dict[str, int] = {}
        self._store: SelectionStore | None = None

    # ---- what a subclass defines ---------------------------------------------------------------------
    @abc.abstractmethod
    def choose(
        self, row: int, count: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(positions [count] among the M candidates of pool record ``row``, log q [count] or None)``."""

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """The options that decide the draws (part of the fingerprint)."""

    def pool_problems(self, manifest: dict) -> list[str]:
        """Start-up problems of what the sampler reads beside the pool (``manifest``: the pool's)."""
        return []

    # ---- start-up checks -----------------------------------------------------------------------------
    def problems(self, count: int) -> list[str]:
        if self.pool is None:
            return [
                f"{self.name} draws from a pool: set negative_sampler.pool=<directory of scripts/build_pool.py>"
            ]
        from mmpo.provenance import sha256_file
        from mmpo.retrieval.pool import read_manifest

        try:
            manifest = read_manifest(self.pool)
        except (FileNotFoundError, ValueError) as error:
            return [f"pool={self.pool!r}: {error}"]
        problems = []
        records = Path(manifest["records"]["path"])
        if not records.is_file() or sha256_file(records) != manifest["records"]["sha256"]:
            what = "changed" if records.is_file() else "no longer exists"
            problems.append(
                f"pool={self.pool!r} is stale: the records file it was built from, {str(records)!r}, {what}; "
                "rebuild the pool (scripts/build_pool.py)"
            )
        if manifest["top_m"] < count:
            problems.append(
                f"pool={self.pool!r} holds {manifest['top_m']} candidates per record (top_m); the loss needs "
                f"{count} negatives: rebuild it with --top-m {count} or more"
            )
        return problems + self.pool_problems(manifest)

    # ---- drawing ---------------------------------------------------------------------------------------
    def negatives(self, record, images, count, seed, epoch, pool, reference=False) -> list[Negative]:
        if len(images) != 1:
            raise ValueError(
                f"record {record.id!r} has {len(images)} images; negative_sampler={self.name} replaces one "
                "image (a pool holds each record's first)"
            )
        selection = self.selection(
            record, count, SamplingKey(seed, record.id, epoch, self.stream(0, reference))
        )
        size = images[0].size
        log_q = selection.log_q or (None,) * count
        return [
            Negative((load_image(path).resize(size, Image.Resampling.BILINEAR),), log_q=q)
            for path, q in zip(selection.images, log_q, strict=True)
        ]

    def selection(self, record, count: int, key: SamplingKey) -> Selection:
        """The stored selection of ``key`` (its first ``count``), else a new one, stored."""
        store = self.selection_store() if self.store else None
        stored = None if store is None else store.get(key)
        if stored is not None and len(stored.candidates) >= count:
            return stored.first(count)
        candidates, row = self.candidate_pool(), self.row(record)
        positions, log_q = self.choose(row, count, key.generator())
        rows = candidates.candidates[row, positions.numpy()]
        made = Selection(
            tuple(positions.tolist()),
            tuple(candidates.image_paths[i] for i in rows),
            None if log_q is None else tuple(log_q.tolist()),
        )
        if store is not None:
            store.put(key, made)
        return made

    def candidate_pool(self):
        """The pool directory, loaded on first use (:class:`mmpo.retrieval.pool.CandidatePool`)."""
        if self._candidates is None:
            from mmpo.retrieval.pool import CandidatePool

            self._candidates = CandidatePool.load(self.pool)
            self._rows = {record_id: i for i, record_id in enumerate(self._candidates.record_ids)}
        return self._candidates

    def row(self, record) -> int:
        """The pool row of ``record``; ``ValueError`` when the pool does not hold it or its image."""
        candidates = self.candidate_pool()
        source = candidates.manifest["records"]["path"]
        if record.id not in self._rows:
            raise ValueError(
                f"record {record.id!r} is not in the pool {self.pool!r} (built from {source!r}): build the pool "
                "from the records of every split that draws from it"
            )
        row = self._rows[record.id]
        if os.path.realpath(candidates.record_images[row]) != os.path.realpath(record.images[0]):
            raise ValueError(
                f"record {record.id!r}: its image {record.images[0]!r} is not the pool's "
                f"{candidates.record_images[row]!r}; the pool {self.pool!r} is stale: rebuild it"
            )
        return row

    # ---- identity --------------------------------------------------------------------------------------
    def fingerprint_fields(self) -> dict[str, Any]:
        from mmpo.retrieval.pool import read_manifest

        return {
            "name": self.name,
            "pool": read_manifest(self.pool)["fingerprint"],
            "resample_per_forward": self.resample_per_forward,
            **self.options(),
        }

    def selection_store(self) -> SelectionStore:
        if self._store is None:
            digest = hashlib.blake2b(
                json.dumps(self.fingerprint_fields(), sort_keys=True).encode(), digest_size=8
            ).hexdigest()
            directory = Path(self.store_dir) if self.store_dir else Path(self.pool) / "selections"
            self._store = SelectionStore(directory / f"{self.name}-{digest}.jsonl")
        return self._store


class ClipKnnSampler(PoolSampler):
    """The K candidates most similar to the record in CLIP space (the ``clip_knn`` baseline)."""

    name = "clip_knn"

    def options(self) -> dict[str, Any]:
        return {}

    def choose(self, row, count, generator):
        similarities = torch.from_numpy(self.candidate_pool().similarities[row])
        return select_negatives("clip_knn", count, similarities=similarities)


class SaeSampler(PoolSampler):
    """MISP-DPO's selection by SAE scores (module docstring)."""

    name = "sae"

    def __init__(
        self,
        pool: str | None = None,
        sae: str | None = None,
        select: str = "greedy",
        diversity_weight: float = 1.0,
        temperature: float = 1.0,
        log_q: str = "first_draw",
        store: bool = True,
        store_dir: str | None = None,
        resample_per_forward: bool = False,
    ):
        super().__init__(pool, store, store_dir, resample_per_forward)
        if select not in SAE_SELECTORS:
            raise ValueError(f"negative_sampler.select={select!r}; allowed: {list(SAE_SELECTORS)}")
        if log_q not in LOG_Q:
            raise ValueError(f"negative_sampler.log_q={log_q!r}; allowed: {list(LOG_Q)}")
        if not temperature > 0:
            raise ValueError(f"negative_sampler.temperature={temperature!r} must be > 0")
        self.sae = None if sae is None else str(sae)
        self.select = select
        self.diversity_weight = float(diversity_weight)
        self.temperature = float(temperature)
        self.log_q = log_q
        self.epoch_dependent = select == "importance"
        self._model = None
        self._sae_digest: str | None = None

    @property
    def sae_path(self) -> Path:
        return Path(self.sae) if self.sae is not None else Path(self.pool) / "sae" / "sae.pt"

    def options(self) -> dict[str, Any]:
        if self._sae_digest is None:
            from mmpo.provenance import sha256_file

            self._sae_digest = sha256_file(self.sae_path)
        if self.select == "greedy":
            chosen = {"diversity_weight": self.diversity_weight}
        else:
            chosen = {"temperature": self.temperature, "log_q": self.log_q}
        return {"sae": self._sae_digest, "select": self.select, **chosen}

    def pool_problems(self, manifest: dict) -> list[str]:
        from mmpo.retrieval.sae import SparseAutoencoder

        try:
            checkpoint = SparseAutoencoder.read_checkpoint(self.sae_path, mmap=True)
        except (FileNotFoundError, ValueError) as error:
            return [f"sae={str(self.sae_path)!r}: {error}"]
        if checkpoint.get("pool_fingerprint") != manifest["fingerprint"]:
            return [
                f"sae={str(self.sae_path)!r} was trained on another pool ({checkpoint.get('pool_dir')!r}), "
                f"not on pool={self.pool!r}: train it again (scripts/train_sae.py --pool {self.pool})"
            ]
        return []

    def scorer(self):
        """``(SAE, its decoder Gram matrix)``, loaded on first use."""
        if self._model is None:
            from mmpo.retrieval.sae import SparseAutoencoder

            sae, _ = SparseAutoencoder.load(self.sae_path)
            with torch.no_grad():
                self._model = sae, sae.decoder_gram()
        return self._model

    @torch.no_grad()
    def choose(self, row, count, generator):
        candidates = self.candidate_pool()
        sae, gram = self.scorer()
        out = sae(*candidates.difference_factors([row]), gram)
        return select_negatives(
            self.select,
            count,
            similarities=torch.from_numpy(candidates.similarities[row]),
            scores=combined_scores(out.reconstruction_error[0], out.latent_l1[0]),
            latents=out.latents[0],
            generator=generator,
            diversity_weight=self.diversity_weight,
            temperature=self.temperature,
            log_q=self.log_q,
        )
