"""Hydra entry point: load a trained run (or a base model), generate for benchmarks, score, write results.

    python evaluate.py run=outputs/dpo_tiny_llava/<time>                  # shapes_pope (the default)
    python evaluate.py run=<run dir> benchmark=[shapes_pope,shapes_chair]
    python evaluate.py run=<run dir>/adapter benchmark=pope benchmarks.pope.limit=100
    python evaluate.py run=null model=tiny_llava benchmark=shapes_chair     # an untrained base model

Choosing benchmarks: ``benchmark`` is a config group from which one or several configs are selected
(``benchmark=pope`` or ``benchmark=[pope,object_halbench]``). Every file in ``conf/benchmark/`` places
itself at ``benchmarks.<its name>`` (header ``# @package benchmarks.<name>``), so each selected
benchmark keeps its own options: ``benchmarks.pope.limit=50``, ``benchmarks.pope.generation.num_beams=3``.

The model: with ``run=<dir>`` the run's ``config.yaml`` rebuilds the base and its ``adapter/`` or
``model/`` weights are loaded (:mod:`mmpo.checkpoint`; ``merge_adapter=true`` folds LoRA in); with
``run=null`` the ``model`` group is evaluated as configured. Every benchmark's data is read before the
model loads, so missing files fail in seconds.

Results: ``<run>/benchmarks/<name>.json`` (with ``run=null``: the Hydra run directory, which also gets
``config.yaml``), holding ``benchmark``, ``metrics``, ``config`` (the benchmark's resolved config),
``model`` (run, weights, merged, ``fingerprint``), ``decoding``, ``data`` (SHA-256 of the question
files) and ``judge`` (:mod:`mmpo.provenance`), ``num_items``, ``seconds`` and ``records`` (one per
item, with its ``image``, the generated ``output`` and what the scorer read from it). Beside it, with
``report.enabled``: ``<name>.html`` and ``<name>.png`` of ``report.items`` sampled items
(:mod:`mmpo.reports`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mmpo.config  # noqa: F401  (registers the structured configs the model group uses)
from mmpo.bases import resolve_init_from
from mmpo.benchmarks.base import Benchmark, BenchmarkDataMissing, EvalItem
from mmpo.checkpoint import RunNotFound, TrainedRun, find_run, fingerprint
from mmpo.config import CONF_DIR, ConfigError, module_class
from mmpo.generation import decoding_settings
from mmpo.models.loading import ModelPathError, model_problems
from mmpo.provenance import data_provenance
from mmpo.reports import report_problems, write_reports

log = logging.getLogger("mmpo")


def load_benchmarks(cfg: DictConfig, kind: type) -> dict[str, tuple[Benchmark, list[EvalItem]]]:
    """Each selected benchmark with its items; raises one ConfigError naming every benchmark whose data
    is missing (with the key to set) or that the module kind cannot evaluate, or that none is selected."""
    loaded, problems = {}, []
    for name, node in (cfg.get("benchmarks") or {}).items():
        benchmark = instantiate(node)
        benchmark.config_key = f"benchmarks.{name}"
        if benchmark.kind not in kind.benchmark_kinds:
            problems.append(
                f"benchmark={name} is a {benchmark.kind} benchmark; a {kind.kind} module is evaluated by "
                f"{list(kind.benchmark_kinds)} ones"
            )
            continue
        try:
            loaded[name] = (benchmark, benchmark.items())
        except BenchmarkDataMissing as error:
            problems.append(str(error))
    if not cfg.get("benchmarks"):
        problems.append(
            "no benchmark selected; choose from conf/benchmark/, e.g. benchmark=shapes_pope "
            "or benchmark=[shapes_pope,shapes_chair]"
        )
    if problems:
        raise ConfigError(problems)
    return loaded


def startup(cfg: DictConfig) -> tuple[TrainedRun | None, type, dict[str, tuple[Benchmark, list[EvalItem]]]]:
    """The run to evaluate, its module kind and the benchmarks with their items, or one ConfigError
    listing every problem (run directory, model config, benchmark data) before any model loads."""
    problems: list[str] = []
    trained = None
    try:
        trained = find_run(cfg.run) if cfg.run else None
    except RunNotFound as error:
        problems.append(str(error))
    kind = kind_of(cfg, trained)
    if not cfg.run:
        problems += model_problems(cfg.model)
    problems += report_problems(report_settings(cfg))
    benchmarks = {}
    try:
        benchmarks = load_benchmarks(cfg, kind)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems)
    return trained, kind, benchmarks


def kind_of(cfg: DictConfig, trained: TrainedRun | None) -> type:
    """The module kind that evaluates: the trained run's (its ``config.yaml``), else the ``module`` group's."""
    return module_class(trained.config if trained is not None and "module" in trained.config else cfg)


def device_for(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def result_document(
    name: str,
    benchmark: Benchmark,
    node: DictConfig,
    metrics: dict[str, float],
    items: list[EvalItem],
    records: list[dict[str, Any]],
    model_info: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    images = {item.id: item.image for item in items}
    return {
        "benchmark": name,
        "metrics": metrics,
        "config": OmegaConf.to_container(node, resolve=True),
        "model": model_info,
        "decoding": decoding_settings(benchmark.generation),
        "data": data_provenance(benchmark),
        "judge": benchmark.judge_description(),
        "num_items": len(records),
        "seconds": round(seconds, 3),
        "records": [{**record, "image": images.get(record["id"])} for record in records],
    }


def report_settings(cfg: DictConfig) -> DictConfig:
    """``cfg.report``; a config without one (train.py's evaluation after fit) gets ``conf/eval.yaml``'s."""
    return cfg.get("report") or OmegaConf.load(CONF_DIR / "eval.yaml").report


def results_dir(cfg: DictConfig, trained: TrainedRun | None) -> Path:
    """``<run>/benchmarks``; without a run, ``<Hydra run dir>/benchmarks`` beside the eval config."""
    if trained is not None:
        return trained.directory / "benchmarks"
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    return out / "benchmarks"


def run(
    cfg: DictConfig, benchmarks: dict[str, tuple[Benchmark, list[EvalItem]]] | None = None
) -> dict[str, dict[str, float]]:
    """Evaluate and write one JSON per benchmark; returns ``{benchmark: metrics}``. ``benchmarks``: the
    result of :func:`load_benchmarks` when the caller has already read them."""
    if benchmarks is None:
        trained, kind, loaded = startup(cfg)
    else:
        trained = find_run(cfg.run) if cfg.run else None
        kind, loaded = kind_of(cfg, trained), benchmarks
    if trained is None:
        resolve_init_from(cfg.model, cfg.paths.base_dir)  # base:<experiment> -> its run directory
    handle = kind.load_for_evaluation(cfg, trained, device_for(cfg.device))
    model_cfg = trained.model_config if trained else cfg.model
    out = results_dir(cfg, trained)
    model_info = {
        "run": str(trained.directory) if trained else None,
        "weights": trained.weights if trained else "base",
        "merged": bool(cfg.merge_adapter and trained and trained.weights == "adapter"),
        "fingerprint": fingerprint(model_cfg, trained),
    }
    report = report_settings(cfg)
    results = {}
    for name, (benchmark, items) in loaded.items():
        torch.manual_seed(cfg.seed)
        start = time.time()
        metrics, records = benchmark.run(handle, items)
        document = result_document(
            name, benchmark, cfg.benchmarks[name], metrics, items, records, model_info, time.time() - start
        )
        path = out / f"{name}.json"
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1))
        if report.enabled:
            write_reports(document, out, report["items"], report.seed)
        log.info("%s: %s -> %s", name, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()), path)
        results[name] = metrics
    return results


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (ConfigError, RunNotFound, BenchmarkDataMissing, ModelPathError) as error:
        print(f"mmpo: {error}", file=sys.stderr)
        sys.exit(2)
