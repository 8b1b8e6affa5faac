"""export_model.py: a merged model that transformers loads without mmpo (same logits), or the adapter."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from mmpo.checkpoint import find_run, load_run, load_untrained
from mmpo.export import ExportError, copy_base_processor_files, export_run, standard_processor_class

from ..conftest import ROOT

# Loads an exported directory the way lmms-eval's llava_hf model does (AutoConfig -> model class,
# AutoProcessor, the tokenizer's chat template), with every mmpo import refused, and saves what it computed.
LOAD_WITHOUT_MMPO = """
import sys

class RefuseMmpo:
    def find_spec(self, name, path=None, target=None):
        if name == "mmpo" or name.startswith("mmpo."):
            raise ImportError("the exported model must load without mmpo")

sys.meta_path.insert(0, RefuseMmpo())
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

directory, image, out = sys.argv[1:]
config = AutoConfig.from_pretrained(directory)
model = AutoModelForImageTextToText.from_pretrained(directory).eval()
processor = AutoProcessor.from_pretrained(directory)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
prompt = processor.tokenizer.apply_chat_template(
    [{"role": "user", "content": messages[0]["content"]}], add_generation_prompt=True, tokenize=False
)
inputs = processor(images=[Image.open(image).convert("RGB")], text=[prompt], return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
torch.save({"inputs": dict(inputs), "logits": logits, "prompt": prompt, "model_type": config.model_type,
            "model_class": type(model).__name__, "processor_class": type(processor).__name__,
            "mmpo_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "mmpo")}, out)
"""


def noise_image(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def export_script():
    spec = importlib.util.spec_from_file_location("export_model", ROOT / "scripts" / "export_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merged_export_loads_without_mmpo_with_mmpo_logits_and_the_adapter_export_copies(
    trained_run, tmp_path, export_script
):
    merged = tmp_path / "merged"
    record = export_script.main([str(trained_run), "--merge", "--out", str(merged)])
    assert record["merged"] is True and record["layout"] == "model"
    assert json.loads((merged / "mmpo_export.json").read_text())["run"] == str(trained_run.resolve())
    image = noise_image(tmp_path / "noise.png")
    saved_file = tmp_path / "saved.pt"
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_MMPO, str(merged), str(image), str(saved_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(saved_file, weights_only=False)
    assert saved["mmpo_loaded"] == []
    assert (saved["model_type"], saved["model_class"], saved["processor_class"]) == (
        "llava",
        "LlavaForConditionalGeneration",
        "LlavaProcessor",
    )

    # mmpo's own load of the run (base + adapter, unmerged) on the very same input
    model, processor, family = load_run(find_run(trained_run))
    model.eval()
    prompt = family.chat_prompt(processor, "Describe the image.", 1)
    assert saved["prompt"] == prompt  # the chat template travelled with the model
    ours = processor(images=[Image.open(image).convert("RGB")], text=[prompt], return_tensors="pt")
    assert torch.equal(ours["input_ids"], saved["inputs"]["input_ids"])
    torch.testing.assert_close(ours["pixel_values"], saved["inputs"]["pixel_values"], atol=0, rtol=0)
    with torch.no_grad():
        logits = model(**saved["inputs"]).logits
        base_logits = load_untrained(find_run(trained_run).model_config)[0].eval()(**saved["inputs"]).logits
    torch.testing.assert_close(saved["logits"], logits, atol=1e-5, rtol=0)
    assert (base_logits - logits).abs().max() > 1e-3  # the adapter moved the model: the merge carried it

    # without --merge: the adapter as trained, and how mmpo rebuilds its (tiny) base
    adapter = tmp_path / "adapter"
    record = export_run(trained_run, adapter, merge=False)
    assert record["merged"] is False and record["layout"] == "adapter"
    for path in (trained_run / "adapter").iterdir():
        assert (
            hashlib.sha256((adapter / path.name).read_bytes()).digest()
            == hashlib.sha256(path.read_bytes()).digest()
        )
    run_model = OmegaConf.to_container(OmegaConf.load(trained_run / "config.yaml").model, resolve=True)
    assert yaml.safe_load((adapter / "base_model.yaml").read_text()) == run_model
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    with pytest.raises(ExportError, match="not empty"):
        export_run(trained_run, adapter, merge=False)


def fake_adapter_run(directory: Path, model: dict) -> Path:
    (directory / "adapter").mkdir(parents=True)
    (directory / "adapter" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": None, "r": 8})
    )
    (directory / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (directory / "config.yaml").write_text(yaml.safe_dump({"model": model}))
    return directory


def test_adapter_export_points_at_a_local_base_directory(tmp_path):
    base = tmp_path / "llava-1.5-7b-hf"
    run = fake_adapter_run(
        tmp_path / "run", {"name": "llava7b", "family": "llava", "path": str(base), "init_from": None}
    )
    export_run(run, tmp_path / "out", merge=False)
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text()) == {
        "base_model_name_or_path": str(base.resolve()),
        "r": 8,
    }
    # a base with another run merged into it exists only inside mmpo: no pointer
    chained = fake_adapter_run(
        tmp_path / "chained", {"family": "llava", "path": str(base), "init_from": str(run)}
    )
    export_run(chained, tmp_path / "out2", merge=False)
    assert (
        json.loads((tmp_path / "out2" / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    )


def test_export_names_transformers_processor_and_completes_it_from_the_base(tmp_path):
    out, base = tmp_path / "out", tmp_path / "base"
    out.mkdir()
    base.mkdir()
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "ImageOnlyQwen2VLProcessor"}))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"processor_class": "ImageOnlyQwen2VLProcessor", "x": 1})
    )
    standard_processor_class(out, "qwen2_vl")
    assert json.loads((out / "processor_config.json").read_text()) == {"processor_class": "Qwen2VLProcessor"}
    assert json.loads((out / "tokenizer_config.json").read_text()) == {
        "processor_class": "Qwen2VLProcessor",
        "x": 1,
    }
    standard_processor_class(out, "qwen2_5_vl")
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"

    (base / "video_preprocessor_config.json").write_text('{"video_processor_type": "Qwen2VLVideoProcessor"}')
    (base / "preprocessor_config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"base weights")
    (out / "preprocessor_config.json").write_text('{"mine": true}')
    assert copy_base_processor_files(out, base) == ["video_preprocessor_config.json"]
    assert (
        out / "video_preprocessor_config.json"
    ).read_text() == '{"video_processor_type": "Qwen2VLVideoProcessor"}'
    assert (out / "preprocessor_config.json").read_text() == '{"mine": true}'  # never overwritten
    assert not (out / "model.safetensors").exists() and copy_base_processor_files(out, None) == []
