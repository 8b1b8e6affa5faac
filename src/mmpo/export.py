"""A trained run as a directory that ``transformers`` (and so lmms-eval, VLMEvalKit, vLLM) loads without mmpo.

    python scripts/export_model.py outputs/dpo_llava7b/<time> --merge --out exports/dpo_llava7b

``merge=True``: one Hugging Face model directory. The policy is rebuilt as ``evaluate.py`` rebuilds it
(:func:`mmpo.checkpoint.load_run`: the base from the run's ``config.yaml``, its ``model.init_from``
merged in, then the adapter), the LoRA adapter is folded into the weights by peft's
``merge_and_unload`` (``W + (alpha / r) B A``), and ``save_pretrained`` writes ``config.json``,
``generation_config.json`` and the safetensors beside the run's processor (tokenizer, image
processor, ``chat_template.jinja``). Runs that trained full weights (``model/``) are already such a
directory and are saved the same way. Two fixes make the directory standard:

- ``processor_class`` is written as transformers' own class for the model type
  (``PROCESSOR_MAPPING_NAMES``), never mmpo's image-only Qwen2-VL processor;
- :data:`BASE_PROCESSOR_FILES` that the base directory (``model.path``) holds and the export did not
  write are copied from it: mmpo's image-only processor drops Qwen2-VL's video processor, whose
  config the toolkits' ``AutoProcessor`` needs.

``merge=False``: the adapter as trained (peft format) plus a pointer to its base: ``base_model.yaml``
is the run's model config (what mmpo rebuilds the base from, tiny configs and ``init_from``
included), and when the base is a plain local directory (``model.path`` without ``init_from``)
``adapter_config.json``'s ``base_model_name_or_path`` names it, so peft's
``AutoPeftModel.from_pretrained(<out>)`` loads base and adapter without mmpo. A tiny or ``init_from``
base exists only inside mmpo: merge such runs for use elsewhere.

Both write ``mmpo_export.json``: the run, its :func:`~mmpo.checkpoint.fingerprint`, whether merged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

from mmpo.checkpoint import TrainedRun, find_run, fingerprint, load_run

#: processor configs a base directory may hold that mmpo's processors do not write back.
BASE_PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")
#: the files whose ``processor_class`` names the processor to load.
PROCESSOR_CLASS_FILES = ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json")


class ExportError(ValueError):
    """The export cannot be written as asked; the message says why and what to do."""


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"--out {out} is not empty; give a new directory (nothing was overwritten)")
    out.mkdir(parents=True, exist_ok=True)


def standard_processor_class(out: Path, model_type: str) -> None:
    """Set ``processor_class`` to transformers' processor of ``model_type`` in the files that name one."""
    official = PROCESSOR_MAPPING_NAMES.get(model_type)
    if official is None:
        return
    for name in PROCESSOR_CLASS_FILES:
        path = out / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        if data.get("processor_class", official) != official:
            data["processor_class"] = official
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def copy_base_processor_files(out: Path, base_dir: Path | None) -> list[str]:
    """Copy :data:`BASE_PROCESSOR_FILES` from ``base_dir`` that ``out`` lacks; returns their names."""
    if base_dir is None:
        return []
    copied = []
    for name in BASE_PROCESSOR_FILES:
        if (base_dir / name).is_file() and not (out / name).exists():
            shutil.copy2(base_dir / name, out / name)
            copied.append(name)
    return copied


def base_dir(run: TrainedRun) -> Path | None:
    """The local directory the run's base model and processor load from (``model.path``), if any."""
    path = run.model_config.get("path")
    return Path(path).expanduser().resolve() if path else None


def plain_base_dir(run: TrainedRun) -> Path | None:
    """:func:`base_dir` when the base is exactly that directory (no ``init_from`` merged into it)."""
    return None if run.model_config.get("init_from") else base_dir(run)


def export_merged(run: TrainedRun, out: Path) -> None:
    model, processor, _ = load_run(run, merge=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    standard_processor_class(out, model.config.model_type)
    copy_base_processor_files(out, base_dir(run))


def export_adapter(run: TrainedRun, out: Path) -> None:
    for path in run.weights_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, out / path.name)
    OmegaConf.save(run.model_config, out / "base_model.yaml", resolve=True)
    base_dir = plain_base_dir(run)
    if base_dir is not None:
        config_path = out / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text())
        adapter_config["base_model_name_or_path"] = str(base_dir)
        config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")


def export_run(run: str | Path, out: str | Path, merge: bool) -> dict[str, Any]:
    """Export ``run`` to ``out`` (module docstring); returns what ``mmpo_export.json`` records."""
    trained = find_run(run)
    out = Path(out)
    _prepare(out)
    try:
        if merge or trained.weights == "model":
            export_merged(trained, out)
        else:
            export_adapter(trained, out)
    except BaseException:
        shutil.rmtree(out)  # no half-written model directory that a toolkit could pick up
        raise
    record = {
        "run": str(trained.directory),
        "weights": trained.weights,
        "merged": merge and trained.weights == "adapter",
        "layout": "model" if merge or trained.weights == "model" else "adapter",
        "fingerprint": fingerprint(trained.model_config, trained)["id"],
    }
    (out / "mmpo_export.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
