"""MAPLE's building blocks (methods.md §3), free of Lightning: the embedding module kind calls them.

- ``embedder``: one VLM encodes images and texts into one space (mean pooling, bidirectional attention);
  ``attention``: the 4-D masks and position ids it and the scorer share;
- ``scorer`` + ``score_cache``: the frozen MLLM's yes/no alignment score, cached on disk;
- ``rpa``: pairwise and listwise RPA losses; ``contrastive``: symmetric InfoNCE with the extended
  negative pool and a differentiable DDP gather; ``objective``: ``lambda * L_RPA + (1 - lambda) * L_contrast``;
- ``candidates``: offline hard-negative candidate sets (``scripts/build_candidates.py``).
"""
