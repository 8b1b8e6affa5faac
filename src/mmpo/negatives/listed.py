"""Listed images: the negatives a record names itself, in its ``negative_images`` field.

For a record with ``n`` images, negative ``k`` is ``negative_images[k*n : (k+1)*n]`` (one image per slot, in
order; for single-image records simply the k-th listed image), used as it is. This is how converted data
sets bring their own rejected images (ms-swift's ``rejected_images``) and how precomputed MISP-DPO
selections enter a run. Deterministic: the same negatives in every epoch.
"""

from __future__ import annotations

from mmpo.images import load_image
from mmpo.negatives.base import Negative, NegativeSampler


class ListedSampler(NegativeSampler):
    name = "listed"
    epoch_dependent = False

    def negatives(self, record, images, count, seed, epoch, pool, reference=False) -> list[Negative]:
        slots = max(len(record.images), 1)
        if len(record.negative_images) < count * slots:
            raise ValueError(
                f"record {record.id!r}: the loss needs {count} negative image(s) for each of its {slots} "
                f"image(s), but field 'negative_images' lists {len(record.negative_images)}"
            )
        paths = record.negative_images
        return [
            Negative(tuple(load_image(p) for p in paths[k * slots : (k + 1) * slots])) for k in range(count)
        ]
