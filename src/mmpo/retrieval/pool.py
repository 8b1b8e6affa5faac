"""The candidate pool: a gallery of images in CLIP space and each record's top-M candidates (methods.md §4.3).

MISP-DPO draws its negatives from "an open-domain gallery, MS-COCO images, retrieved in CLIP space"; pool
size and retrieval depth M are not given ([?]; the paper's gallery is COCO train2017, 118k images).
:func:`build_pool` embeds every image under a directory and each record's first image and prompt with
:class:`~mmpo.retrieval.clip.ClipEmbedder`, adds the image embeddings to a faiss inner-product index (unit
rows, so scores are cosine similarities) and retrieves the M most similar pool images per record.

The query is an option, ``query`` in :data:`QUERIES` ([I]; the paper does not say what is retrieved
against):

- ``image`` (default): ``h_v(m_p)``, pool images that look like the positive, the hard negatives;
- ``text``: ``h_t(x)``, images that match the prompt;
- ``image+text``: ``normalize(h_v(m_p) + h_t(x))``.

``exclude_own=True`` (default) drops the record's own image(s) from its candidates when they lie in the
pool (matched by resolved path), so a record is never its own negative.

The index is any faiss ``index_factory`` string (``Flat``, exact, is the default; ``IVF1024,Flat`` or
``HNSW32`` for approximate search, tuned with ``search_params`` such as ``nprobe=16``, see
``scripts/bench_pool.py``).

Output directory (the manifest is written last: a manifest means complete files):

| file | content |
|---|---|
| ``manifest.json`` | format version, model path + file digests + fingerprint, pool fingerprint, image list (relative to the image directory), skipped images and records with the reason, options, timings |
| ``image_embeddings.npy`` | ``[N, D]`` float32, unit rows, in the order of the manifest's image list |
| ``record_image_embeddings.npy``, ``record_text_embeddings.npy`` | ``[R, D]``: ``h_v(m_p)`` and ``h_t(x)`` per record, in the order of ``record_ids`` |
| ``index.faiss`` | the faiss index over ``image_embeddings`` (``faiss.read_index``) |
| ``candidates.jsonl`` | per record: ``id``, ``image`` (its first image, the positive), ``prompt``, then its M candidates best first: ``images`` (absolute paths), ``indices`` (rows of ``image_embeddings``), ``similarities`` |

The pool fingerprint is a 128-bit BLAKE2b over the JSON of: the model's file digests, the image list with
each file's size, the records file's SHA-256 and the options above. An SAE trained on a pool stores it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from mmpo.data.records import ReadReport, read_records
from mmpo.retrieval.clip import ON_ERROR, ClipEmbedder, UnreadableImage

if TYPE_CHECKING:  # faiss loads where an index is built or read: training reads candidates only
    import faiss

FORMAT_VERSION = 1
QUERIES = ("image", "text", "image+text")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MANIFEST = "manifest.json"
IMAGE_EMBEDDINGS = "image_embeddings.npy"
RECORD_IMAGE_EMBEDDINGS = "record_image_embeddings.npy"
RECORD_TEXT_EMBEDDINGS = "record_text_embeddings.npy"
INDEX = "index.faiss"
CANDIDATES = "candidates.jsonl"


def _digest(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=16).hexdigest()


def list_images(directory: str | Path) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`, any case) under ``directory``, recursively, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image directory {str(directory)!r} does not exist")
    paths = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(
            f"image directory {str(directory)!r} holds no {'/'.join(IMAGE_SUFFIXES)} files"
        )
    return paths


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a complete pool directory of this format; ``FileNotFoundError`` / ``ValueError``
    saying what to rebuild otherwise."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: build the pool with scripts/build_pool.py (the shapes world's: "
            "scripts/build_shapes_pool.py, make misp-shapes-pool)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version={manifest.get('format_version')!r}; "
            f"this code reads {FORMAT_VERSION}: rebuild the pool"
        )
    return manifest


def set_search_params(index: faiss.Index, search_params: str) -> None:
    """Apply faiss search parameters such as ``nprobe=16`` or ``efSearch=128`` (``""``: none)."""
    import faiss

    if search_params:
        try:
            faiss.ParameterSpace().set_index_parameters(index, search_params)
        except RuntimeError as error:
            raise ValueError(f"search_params={search_params!r} do not apply to this index: {error}") from None


def build_index(embeddings: np.ndarray, factory: str = "Flat", search_params: str = "") -> faiss.Index:
    """Inner-product faiss index from ``faiss.index_factory(D, factory)``, trained if needed, filled."""
    import faiss

    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    try:
        index = faiss.index_factory(embeddings.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise ValueError(f"index_factory={factory!r} is not a faiss index factory string: {error}") from None
    if not index.is_trained:
        index.train(embeddings)
    index.add(embeddings)
    set_search_params(index, search_params)
    return index


def search(
    index: faiss.Index, queries: np.ndarray, m: int, batch_size: int = 4096, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, indices)``, each ``[Q, m]``, best first; faiss's -1 marks a missing neighbour."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    sims, ids = [], []
    for start in tqdm(range(0, len(queries), batch_size), desc="search", disable=not progress):
        s, i = index.search(queries[start : start + batch_size], m)
        sims.append(s)
        ids.append(i)
    if not sims:
        return np.zeros((0, m), np.float32), np.zeros((0, m), np.int64)
    return np.concatenate(sims), np.concatenate(ids)


def query_vectors(image: np.ndarray, text: np.ndarray, query: str) -> np.ndarray:
    """The retrieval queries per record for ``query`` in :data:`QUERIES` (module docstring)."""
    if query == "image":
        return image
    if query == "text":
        return text
    if query == "image+text":
        both = image + text
        return both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
    raise ValueError(f"query={query!r}; allowed: {list(QUERIES)}")


def top_candidates(
    index: faiss.Index, queries: np.ndarray, m: int, exclude: list[set[int]], progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search` for ``m`` neighbours per query after dropping the pool rows in ``exclude[q]``."""
    extra = max((len(e) for e in exclude), default=0)
    if m + extra > index.ntotal:
        raise ValueError(f"top_m={m} candidates (+{extra} excluded) exceed the pool's {index.ntotal} images")
    sims, ids = search(index, queries, m + extra, progress=progress)
    out_sims = np.zeros((len(queries), m), np.float32)
    out_ids = np.zeros((len(queries), m), np.int64)
    for q, (row_sims, row_ids) in enumerate(zip(sims, ids, strict=True)):
        keep = [j for j, i in enumerate(row_ids) if i >= 0 and i not in exclude[q]][:m]
        if len(keep) < m:
            raise ValueError(
                f"the index returned {len(keep)} of top_m={m} candidates for query {q}; "
                "an approximate index needs a larger search_params (e.g. nprobe)"
            )
        out_sims[q], out_ids[q] = row_sims[keep], row_ids[keep]
    return out_sims, out_ids


@dataclass
class CandidatePool:
    """A pool directory loaded back (module docstring); arrays are numpy, rows as in the manifest."""

    directory: Path
    manifest: dict
    image_paths: list[str]
    image_embeddings: np.ndarray
    record_ids: list[str]
    record_images: list[str]
    record_prompts: list[str]
    record_image_embeddings: np.ndarray
    record_text_embeddings: np.ndarray
    candidates: np.ndarray
    similarities: np.ndarray

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @classmethod
    def load(cls, directory: str | Path) -> CandidatePool:
        directory = Path(directory)
        manifest = read_manifest(directory)
        rows = [json.loads(line) for line in (directory / CANDIDATES).read_text().splitlines() if line]
        image_dir = Path(manifest["image_dir"])
        return cls(
            directory=directory,
            manifest=manifest,
            image_paths=[str(image_dir / p) for p in manifest["images"]],
            image_embeddings=np.load(directory / IMAGE_EMBEDDINGS),
            record_ids=[row["id"] for row in rows],
            record_images=[row["image"] for row in rows],
            record_prompts=[row["prompt"] for row in rows],
            record_image_embeddings=np.load(directory / RECORD_IMAGE_EMBEDDINGS),
            record_text_embeddings=np.load(directory / RECORD_TEXT_EMBEDDINGS),
            candidates=np.array([row["indices"] for row in rows], dtype=np.int64).reshape(len(rows), -1),
            similarities=np.array([row["similarities"] for row in rows], dtype=np.float32).reshape(
                len(rows), -1
            ),
        )

    def read_index(self) -> faiss.Index:
        import faiss

        return faiss.read_index(str(self.directory / INDEX))

    def record_index(self, record_id: str) -> int:
        try:
            return self.record_ids.index(record_id)
        except ValueError:
            raise KeyError(f"record id {record_id!r} is not in the pool {str(self.directory)!r}") from None

    def difference_factors(
        self, records: torch.Tensor | np.ndarray | list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a [B, M, D], b [B, D])`` with ``d_rc = vec(a_rc b_r^T)`` the SAE input of record r, candidate c:
        ``a_rc = h_v(m_p^r) - h_v(m_c)``, ``b_r = h_t(x^r)`` (float32 tensors)."""
        rows = np.asarray(records, dtype=np.int64)
        positive = torch.from_numpy(self.record_image_embeddings[rows])
        negatives = torch.from_numpy(self.image_embeddings[self.candidates[rows]])
        return positive[:, None, :] - negatives, torch.from_numpy(self.record_text_embeddings[rows])


def _embed_records(
    embedder: ClipEmbedder,
    records_path: Path,
    batch_size: int,
    num_workers: int,
    on_error: str,
    progress: bool,
) -> tuple[list, np.ndarray, np.ndarray, list[dict]]:
    """``(records kept, h_v of their first images [R, D], h_t of their prompts [R, D], skipped)``."""
    report = ReadReport()
    records = read_records(records_path, on_error=on_error, require_rejected=0, report=report)
    skipped = [{"error": error} for error in report.skipped]
    with_image = []
    for record in records:
        if record.images:
            with_image.append(record)
        elif on_error == "raise":
            raise ValueError(f"{records_path}: record id {record.id!r} has no image; MISP-DPO needs one")
        else:
            skipped.append({"id": record.id, "error": "no image"})
    unique = list(dict.fromkeys(r.images[0] for r in with_image))
    positives = embedder.embed_images(unique, batch_size, num_workers, "skip", progress)
    errors = {f["path"]: f["error"] for f in positives.failures}
    for record in with_image:
        if record.images[0] in errors:
            where = f"{records_path}: record id {record.id!r}, field 'images'"
            if on_error == "raise":
                raise UnreadableImage(f"{where}: {errors[record.images[0]]}")
            skipped.append({"id": record.id, "error": f"{where}: {errors[record.images[0]]}"})
    kept = [r for r in with_image if r.images[0] not in errors]
    row = {path: i for i, path in enumerate(positives.paths)}
    images = positives.embeddings[[row[r.images[0]] for r in kept]].reshape(len(kept), embedder.dim)
    return kept, images, embedder.embed_texts([r.prompt for r in kept], progress=progress), skipped


def build_pool(
    embedder: ClipEmbedder,
    model_path: str | Path,
    image_dir: str | Path,
    records_path: str | Path,
    out_dir: str | Path,
    top_m: int = 64,
    query: str = "image",
    exclude_own: bool = True,
    index_factory: str = "Flat",
    search_params: str = "",
    batch_size: int = 64,
    num_workers: int = 0,
    on_error: str = "raise",
    progress: bool = True,
) -> CandidatePool:
    """Embed, index, retrieve and write the pool directory (module docstring); returns it loaded.

    ``on_error`` (:data:`~mmpo.retrieval.clip.ON_ERROR`) applies to unreadable images, invalid records and
    records without an image: ``raise`` stops with the file and reason, ``skip`` leaves them out and lists
    them in the manifest.
    """
    if query not in QUERIES:
        raise ValueError(f"query={query!r}; allowed: {list(QUERIES)}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; allowed: {list(ON_ERROR)}")
    image_dir, records_path, out = Path(image_dir).resolve(), Path(records_path).resolve(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    from mmpo.checkpoint import (
        file_digests,
    )  # here, not at the top: it imports peft, which loaders don't need

    timings, clock = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name], clock = round(time.perf_counter() - clock, 3), time.perf_counter()

    pool = embedder.embed_images(
        [str(p) for p in list_images(image_dir)], batch_size, num_workers, on_error, progress
    )
    lap("embed_images")
    records, record_images, record_texts, skipped_records = _embed_records(
        embedder, records_path, batch_size, num_workers, on_error, progress
    )
    lap("embed_records")
    import faiss

    index = build_index(pool.embeddings, index_factory, search_params)
    lap("build_index")
    row_of = {str(Path(p).resolve()): i for i, p in enumerate(pool.paths)}
    exclude = [
        {row_of[key] for key in (str(Path(p).resolve()) for p in r.images) if key in row_of}
        if exclude_own
        else set()
        for r in records
    ]
    sims, ids = top_candidates(
        index, query_vectors(record_images, record_texts, query), top_m, exclude, progress
    )
    lap("search")

    np.save(out / IMAGE_EMBEDDINGS, pool.embeddings)
    np.save(out / RECORD_IMAGE_EMBEDDINGS, record_images)
    np.save(out / RECORD_TEXT_EMBEDDINGS, record_texts)
    faiss.write_index(index, str(out / INDEX))
    with open(out / CANDIDATES, "w") as f:
        for record, row_sims, row_ids in zip(records, sims, ids, strict=True):
            row = {
                "id": record.id,
                "image": record.images[0],
                "prompt": record.prompt,
                "images": [pool.paths[i] for i in row_ids],
                "indices": row_ids.tolist(),
                "similarities": row_sims.tolist(),
            }
            f.write(json.dumps(row) + "\n")
    images = [str(Path(p).relative_to(image_dir)) for p in pool.paths]
    model_files = file_digests(Path(model_path))
    records_sha = hashlib.sha256(records_path.read_bytes()).hexdigest()
    options = dict(
        query=query,
        top_m=top_m,
        exclude_own=exclude_own,
        index_factory=index_factory,
        search_params=search_params,
    )
    sized_images = [[p, (image_dir / p).stat().st_size] for p in images]
    manifest = {
        "format_version": FORMAT_VERSION,
        "fingerprint": _digest(
            {"model": model_files, "images": sized_images, "records": records_sha, "options": options}
        ),
        "model": {
            "path": str(Path(model_path).resolve()),
            "files": model_files,
            "fingerprint": _digest(model_files),
        },
        "embed_dim": embedder.dim,
        "image_dir": str(image_dir),
        "images": images,
        "skipped_images": [
            {"path": str(Path(f["path"]).relative_to(image_dir)), "error": f["error"]} for f in pool.failures
        ],
        "records": {
            "path": str(records_path),
            "sha256": records_sha,
            "count": len(records),
            "skipped": skipped_records,
        },
        **options,
        "timings_s": timings,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return CandidatePool.load(out)
