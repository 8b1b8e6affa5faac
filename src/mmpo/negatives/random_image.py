"""Random images: other records' images as the negatives.

``m_l = resize(m_other, size(m_w))`` for each of the record's images, ``m_other`` drawn uniformly from the
split's images other than the record's own. mDPO's "Random image" ablation (arXiv 2406.11839 Table 3),
MCM-DPO's ``use_image_type='random'`` (methods.md §2.4) and, with K > 1, MISP-DPO's "random multi-negative"
baseline (methods.md §4.5): the K negatives of a record are K distinct images when the pool allows.
"""

from __future__ import annotations

import torch
from PIL import Image

from mmpo.images import load_image
from mmpo.negatives.base import Negative, NegativeSampler, SamplingKey


class RandomImageSampler(NegativeSampler):
    """Replace each image with another record's image, resized (bilinear) to the original size."""

    name = "random_image"

    def negatives(self, record, images, count, seed, epoch, pool, reference=False) -> list[Negative]:
        candidates = sorted(set(pool.images) - set(record.images))
        if not candidates:
            raise ValueError(
                f"record {record.id!r}: negative_sampler=random_image needs other images in the data, "
                "but every image of the split is the record's own"
            )
        drawn: set[str] = set()
        out = []
        for k in range(count):
            generator = SamplingKey(seed, record.id, epoch, self.stream(k, reference)).generator()
            replaced = []
            for image in images:
                free = [c for c in candidates if c not in drawn] or candidates
                path = free[int(torch.randint(len(free), (1,), generator=generator))]
                drawn.add(path)
                replaced.append(load_image(path).resize(image.size, Image.Resampling.BILINEAR))
            out.append(Negative(tuple(replaced)))
        return out
