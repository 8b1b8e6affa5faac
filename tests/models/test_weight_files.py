"""The reference cache identifies weights loaded from ``model.path`` by their safetensors files (header,
size, modification time or hub sha256) instead of hashing every weight; the content otherwise."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from mmpo.config import ModelSchema
from mmpo.engine.cache import fingerprint, model_fields
from mmpo.models import weight_files
from mmpo.models.loading import load_model
from mmpo.models.tiny import build_tiny_llava
from mmpo.models.weight_files import directory_identity, safetensors_header, weight_files_identity


def model_cfg(path: Path | None, **fields):
    return OmegaConf.structured(ModelSchema(path=None if path is None else str(path), **fields))


def write_shards(directory: Path, value: float = 1.0) -> None:
    directory.mkdir(exist_ok=True)
    save_file({"a.weight": torch.zeros(3, 4)}, directory / "model-00001-of-00002.safetensors")
    save_file({"b.weight": torch.full((2, 5), value)}, directory / "model-00002-of-00002.safetensors")
    (directory / "model.safetensors.index.json").write_text('{"weight_map": {}}')


def rewrite_later(directory: Path, value: float) -> None:
    """Rewrite the second shard with another value (same names, dtypes, shapes) after the clock moved on."""
    time.sleep(0.05)  # past the filesystem's timestamp granularity
    save_file({"b.weight": torch.full((2, 5), value)}, directory / "model-00002-of-00002.safetensors")


def test_same_directory_gives_the_same_fields_and_a_rewritten_shard_changes_only_its_own(tmp_path):
    write_shards(tmp_path / "ckpt")
    shard = tmp_path / "ckpt" / "model-00002-of-00002.safetensors"
    before = weight_files_identity(model_cfg(tmp_path / "ckpt"))
    assert weight_files_identity(model_cfg(tmp_path / "ckpt")) == before
    assert sorted(before) == [
        "dtype",
        "path/model-00001-of-00002.safetensors",
        "path/model-00002-of-00002.safetensors",
        "path/model.safetensors.index.json",
        "quantization",
        "transformers",
    ]
    header, size = safetensors_header(shard), shard.stat().st_size
    rewrite_later(tmp_path / "ckpt", value=2.0)
    assert safetensors_header(shard) == header and shard.stat().st_size == size  # the header alone: same
    after = weight_files_identity(model_cfg(tmp_path / "ckpt"))
    assert {k for k in before if before[k] != after[k]} == {"path/model-00002-of-00002.safetensors"}
    assert weight_files_identity(model_cfg(tmp_path / "ckpt", dtype="bfloat16"))["dtype"] == "bfloat16"


def test_a_hub_cache_blob_is_identified_by_its_sha256_not_its_timestamp(tmp_path):
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "rev"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    first, second = blobs / ("a" * 64), blobs / ("b" * 64)
    for blob in (first, second):
        save_file({"w": torch.zeros(2)}, blob)
        os.utime(blob, ns=(10**18, 10**18))
    link = snapshot / "model.safetensors"
    link.symlink_to(first)
    identity = directory_identity(snapshot, "path")
    os.utime(first, ns=(2 * 10**18, 2 * 10**18))
    assert directory_identity(snapshot, "path") == identity
    link.unlink()
    link.symlink_to(second)  # same header, size and time, another content hash
    assert directory_identity(snapshot, "path") != identity


def test_tiny_models_and_checkpoints_without_safetensors_are_identified_by_content(tmp_path):
    assert weight_files_identity(model_cfg(None)) is None
    (tmp_path / "bin").mkdir()
    torch.save({"w": torch.zeros(2)}, tmp_path / "bin" / "pytorch_model.bin")
    assert weight_files_identity(model_cfg(tmp_path / "bin")) is None
    write_shards(tmp_path / "ckpt")
    assert weight_files_identity(model_cfg(tmp_path / "ckpt", init_from=str(tmp_path / "run"))) is None


def test_a_model_loaded_from_its_directory_is_fingerprinted_by_its_files_and_the_change_is_named(tmp_path):
    model, processor = build_tiny_llava()
    model.save_pretrained(tmp_path / "llava", max_shard_size="200KB")
    processor.save_pretrained(tmp_path / "llava")
    cfg = model_cfg(tmp_path / "llava", family="llava")
    policy, _, _ = load_model(cfg)  # LoRA-wrapped: the record is read through peft
    fields = model_fields(policy)
    assert "weights" not in fields and fields == model_fields(load_model(cfg)[0])
    assert len([k for k in fields if k.endswith(".safetensors")]) > 1
    assert sorted(model_fields(model)) == ["config", "type", "weights"]  # built in memory: by content

    shard = sorted((tmp_path / "llava").glob("*.safetensors"))[-1]
    tensors = load_file(shard)
    time.sleep(0.05)
    save_file({n: t + 1 for n, t in tensors.items()}, shard, metadata={"format": "pt"})
    stale = fingerprint({"model": model_fields(load_model(cfg)[0])})
    assert [d.split(":")[0] for d in stale.differences(fingerprint({"model": fields}))] == [
        f"model.weights.path/{shard.name}"
    ]
    assert weight_files.remembered(model) is None
