"""The identity of the checkpoint files a model's weights were loaded from, so that the reference cache
(:func:`mmpo.engine.cache.model_fields`) need not hash every weight of a 7B model at start-up.

A ``.safetensors`` file starts with an 8-byte little-endian length ``N`` and an ``N``-byte JSON header
holding each tensor's name, dtype, shape and byte offsets. A file's identity is::

    BLAKE2b( length | header | size | stamp )
    stamp = sha256 of the content  if the file is a huggingface_hub cache blob (its name is that sha256)
          = mtime_ns               otherwise

and a directory's identity is that of each of its ``*.safetensors`` files plus the content of its small
metadata files (:data:`METADATA_FILES`). The weights of a model loaded with ``model.path`` are a function of
those files, of ``model.init_from``'s files (an adapter merged in, or full weights), of ``model.dtype``, the
quantization settings and the transformers version that converts them; :func:`weight_files_identity` covers
all of these, and ``None`` (hash the content instead) for a tiny in-memory model or a directory without
safetensors files.

Caveat: outside the hub cache the content itself is not read, so a file rewritten in place with the same
size, the same header and the same modification time (a tool that restores timestamps, or a rewrite within
the filesystem's timestamp granularity) goes unnoticed. mmpo never rewrites a checkpoint in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import transformers
from omegaconf import DictConfig, OmegaConf
from torch import nn

METADATA_FILES = ("model.safetensors.index.json", "adapter_config.json")
"""Small files of a checkpoint directory that shape the weights; hashed by content."""

ATTRIBUTE = "mmpo_weight_files"
"""The model attribute that :func:`remember` sets and :func:`remembered` reads (through peft's wrappers)."""

_HUB_BLOB = re.compile(r"[0-9a-f]{64}")


def safetensors_header(path: Path) -> bytes:
    """The start of a ``.safetensors`` file: its 8-byte length and JSON header (tensor names, dtypes,
    shapes, offsets), as stored."""
    with open(path, "rb") as f:
        length = f.read(8)
        return length + f.read(int.from_bytes(length, "little"))


def file_identity(path: Path) -> str:
    """BLAKE2b of a safetensors file's header, size and stamp (module docstring)."""
    stat = path.stat()
    blob = path.resolve()
    if blob.parent.name == "blobs" and _HUB_BLOB.fullmatch(blob.name):
        stamp = f"sha256={blob.name}"
    else:
        stamp = f"mtime_ns={stat.st_mtime_ns}"
    h = hashlib.blake2b(safetensors_header(path), digest_size=16)  # the header's length delimits it
    h.update(f"size={stat.st_size} {stamp}".encode())
    return h.hexdigest()


def directory_identity(directory: Path, label: str) -> dict[str, str] | None:
    """``{"<label>/<file name>": identity}`` for each safetensors and metadata file of ``directory``, or
    ``None`` when it holds no safetensors file (other formats are identified by their content)."""
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        return None
    fields = {f"{label}/{path.name}": file_identity(path) for path in weights}
    for name in METADATA_FILES:
        if (directory / name).is_file():
            fields[f"{label}/{name}"] = hashlib.blake2b(
                (directory / name).read_bytes(), digest_size=16
            ).hexdigest()
    return fields


def init_from_directory(init_from: str) -> Path:
    """The directory ``model.init_from`` loads: the run's ``adapter/`` (merged) or its ``model/``."""
    run = Path(init_from).expanduser()
    return run / "adapter" if (run / "adapter" / "adapter_config.json").is_file() else run / "model"


def weight_files_identity(cfg: DictConfig) -> dict[str, str] | None:
    """The fields that identify the weights :func:`mmpo.models.loading.load_model` builds from the ``model``
    config ``cfg``, or ``None`` when only their content can (``model.path: null``, no safetensors files)."""
    if cfg.path is None:
        return None
    sources = [directory_identity(Path(cfg.path).expanduser(), "path")]
    if cfg.init_from:
        sources.append(directory_identity(init_from_directory(cfg.init_from), "init_from"))
    if any(source is None for source in sources):
        return None
    quantization = OmegaConf.to_container(cfg.quantization) if cfg.quantization.load_in_4bit else None
    fields = {
        "dtype": cfg.dtype,
        "quantization": json.dumps(quantization, sort_keys=True),
        "transformers": transformers.__version__,
    }
    for source in sources:
        fields.update(source)
    return fields


def remember(model: nn.Module, identity: dict[str, str] | None) -> None:
    """Record on ``model`` the identity of the files its weights came from (``None``: unknown)."""
    setattr(model, ATTRIBUTE, identity)


def remembered(model: nn.Module) -> dict[str, str] | None:
    """What :func:`remember` recorded on ``model`` or the model a peft wrapper holds, else ``None``."""
    return getattr(model, ATTRIBUTE, None)
