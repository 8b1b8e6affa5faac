"""Building blocks of MISP-DPO's negative-image selection (methods.md §4.2-4.3).

- :mod:`~mmpo.retrieval.clip`: CLIP image and text embeddings from a local model directory, batched.
- :mod:`~mmpo.retrieval.pool`: the candidate pool (a faiss index over a gallery of images, e.g. COCO
  train2017) and the top-M candidates retrieved per record, written as a self-describing directory.
- :mod:`~mmpo.retrieval.sae`: the sparse autoencoder on joint-embedding differences
  ``d = vec((h_v(m_p) - h_v(m_n)) h_t^T)``, computed without materialising the D^2 vector.
- :mod:`~mmpo.retrieval.selection`: the scores ``s_i``, greedy diversity selection, importance draws with
  their ``log q``, and the ``clip_knn`` baseline.
- :mod:`~mmpo.retrieval.tiny_clip`: a tiny random CLIP saved in HF layout, for tests.

Scripts: ``scripts/build_pool.py``, ``scripts/train_sae.py``, ``scripts/show_negatives.py``,
``scripts/bench_pool.py``.
"""
