"""Throughput of the data path: records/s through the reader, image decoding, the collator and the
one-time record checks, for JSONL and arrow (image paths or embedded bytes), with and without workers.

    OMP_NUM_THREADS=1 python scripts/bench_data.py                       # 2000 records, LLaVA-1.5 geometry
    python scripts/bench_data.py --layouts --memory-records 100000       # peak RSS, arrow vs jsonl only
    python scripts/bench_data.py --records 500 --workers 0 2 --family qwen2_vl --output bench_data.json

The records are generated: ``--source-size`` JPEG photos of noise (decoding cost of a COCO-sized photo),
``--distinct-images`` of them cycled, prompts of ~15 words, chosen and rejected responses of
``--response-words`` words. The processor is the tiny model's tokenizer with LLaVA-1.5's image geometry
(336 px CLIP preprocessing, 14 px patches: 576 image tokens per image; ``--image-size``), or the tiny
Qwen2-VL processor. Stages, each timed on its own (wall clock; CPU seconds of this process for the
in-process stages, since other jobs may share the machine):

- ``read``: ``Records[i]`` (a row read and parsed, no image);
- ``decode``: the data set's examples (a row parsed and its images decoded to RGB);
- ``collate@w``: a ``DataLoader`` epoch of DPO batches (chosen and rejected rows) with ``w`` workers,
  as training iterates it (persistent workers: the second epoch, without worker start-up, is reported);
- ``check@w``: the one-time checks of every record (:mod:`mmpo.data.validation`) with ``w`` workers,
  then the cache hit of a second run;
- ``memory``: peak resident memory of a fresh process that reads every record of a larger text set
  (``--memory-records`` records of two ``--memory-response-chars`` responses) once, as an epoch does:
  through the JSONL reader, through the arrow reader (memory-mapped), and, for scale, held as a list (what
  reading a whole JSONL file into memory costs). Peak RSS is ``VmHWM`` of ``/proc/self/status``; growth is
  over the RSS after the libraries are imported, split at the end into anonymous memory (``RssAnon``: the
  process's own) and mapped file pages (``RssFile``: the arrow files' pages the kernel keeps cached and
  reclaims under pressure). The ratios arrow / jsonl are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from mmpo.branches import CHOSEN, REJECTED
from mmpo.data.converters.writers import canonical_arrow_rows, write_arrow, write_jsonl
from mmpo.data.datamodule import PreferenceDataModule
from mmpo.data.examples import PreferenceDataset
from mmpo.data.records import JsonlRecords, Records, read_records
from mmpo.models.families import get_family
from mmpo.models.tiny import build_tiny_llava, build_tiny_qwen2vl

LAYOUTS = {"jsonl": ("jsonl", False), "arrow_paths": ("arrow", False), "arrow_embedded": ("arrow", True)}
"""Layout name -> (data.format, images embedded)."""
WORDS = "the a red blue green small large square circle triangle left right top bottom of in on with".split()


def sentence(index: int, words: int) -> str:
    return " ".join(WORDS[(index * 7 + k * 3) % len(WORDS)] for k in range(words)).capitalize() + "."


def make_records(root: Path, args) -> list[dict]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.source_size.split("x"))
    for k in range(args.distinct_images):
        Image.effect_noise((width, height), 40 + k % 30).convert("RGB").save(
            root / "images" / f"{k}.jpg", quality=90
        )
    return [
        {"id": f"r{i:07d}", "images": [f"images/{i % args.distinct_images}.jpg"], "prompt": sentence(i, 15),
         "chosen": sentence(i + 1, args.response_words), "rejected": sentence(i + 2, args.response_words),
         "meta": {"index": i}}
        for i in range(args.records)
    ]  # fmt: skip


def write_layouts(root: Path, records: list[dict]) -> dict[str, Path]:
    out = {}
    for name, (fmt, embed) in LAYOUTS.items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / "images", directory / "images", dirs_exist_ok=True)
        val = [dict(r, id=f"val-{r['id']}") for r in records[:8]]
        for split, rows in (("train", records), ("val", val)):
            if fmt == "jsonl":
                write_jsonl(rows, directory / f"{split}.jsonl")
            else:
                generate, features = canonical_arrow_rows(rows, directory, embed)
                write_arrow(generate, directory / split, features)
        if embed:
            shutil.rmtree(directory / "images")
        out[name] = directory
    return out


def processor_of(args):
    if args.family == "llava":
        return build_tiny_llava(0, image_size=args.image_size, patch_size=14)[1]
    return build_tiny_qwen2vl(0)[1]


def data_cfg(path: Path, fmt: str, workers: int, batch_size: int):
    return OmegaConf.create(
        {"source": "files", "format": fmt, "path": str(path), "train_file": "train.jsonl",
         "val_file": "val.jsonl", "batch_size": batch_size, "shuffle": False, "num_workers": workers,
         "max_length": 4096, "truncation": "delete", "on_error": "skip", "image": "original",
         "context_template": "{prompt}\nContext:\n{context}", "limit_train": None, "limit_val": None}
    )  # fmt: skip


def timed(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def module_of(directory: Path, fmt: str, workers: int, args, processor) -> PreferenceDataModule:
    branches = {"train": [CHOSEN, REJECTED], "val": [CHOSEN, REJECTED]}
    return PreferenceDataModule(data_cfg(directory, fmt, workers, args.batch_size), processor,
                                get_family(args.family), branches)  # fmt: skip


def bench_layout(name: str, directory: Path, args, processor) -> list[dict]:
    fmt = LAYOUTS[name][0]
    rows = []

    def add(stage: str, records: int, seconds: tuple[float, float], cpu_counts: bool = True) -> None:
        wall, cpu = seconds
        rows.append({"layout": name, "stage": stage, "records": records, "seconds": round(wall, 3),
                     "records_per_s": round(records / wall, 1),
                     "cpu_ms_per_record": round(1000 * cpu / records, 3) if cpu_counts else None})  # fmt: skip
        print(f"{name:15s} {stage:12s} {records / wall:10.1f} records/s  ({wall:.2f} s)", flush=True)

    cache = directory / ".mmpo-cache"
    for workers in args.workers:
        shutil.rmtree(cache, ignore_errors=True)
        module = module_of(directory, fmt, workers, args, processor)
        add(f"check@{workers}", args.records + 8, timed(module.check), cpu_counts=workers == 0)
    hit = module_of(directory, fmt, 0, args, processor)
    add("check:cached", args.records + 8, timed(hit.check))
    hit.setup()
    records = hit.datasets["train"].records
    add("read", len(records), timed(lambda: [records[i] for i in range(len(records))]))
    plain = PreferenceDataset(Records(records.source, records.rows))
    add("decode", len(plain), timed(lambda: [plain[i] for i in range(len(plain))]))
    for workers in args.workers:
        module = module_of(directory, fmt, workers, args, processor)
        module.setup()
        loader = module.train_dataloader()
        epochs = [timed(lambda lo=loader: sum(len(b) for b in lo)) for _ in range(2 if workers else 1)]
        add(f"collate@{workers}", len(module.datasets["train"]), epochs[-1], cpu_counts=workers == 0)
        del loader
    return rows


MEMORY_READERS = ("jsonl", "arrow", "jsonl_list")
"""How the memory probe reads the records: the lazy JSONL reader, the arrow reader, a list of all records."""


def status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(f"{key}:"))


def memory_probe(reader: str, path: str) -> dict:
    """In a fresh process: read every record of ``path`` once with ``reader``; peak and grown RSS (MB)."""
    import datasets  # noqa: F401  (imported before the baseline: libraries are not data)

    from mmpo.data.arrow import ArrowRecords

    base = {key: status_mb(key) for key in ("VmRSS", "RssAnon", "RssFile")}
    if reader == "jsonl_list":
        records: list | Records = read_records(path, "raise")
    else:
        records = Records(ArrowRecords(path) if reader == "arrow" else JsonlRecords(path))
    characters = sum(len(r.prompt) + len(r.chosen) + sum(map(len, r.rejected)) for r in records)
    peak = status_mb("VmHWM")
    return {"reader": reader, "records": len(records), "characters": characters,
            "peak_rss_mb": round(peak, 1), "growth_mb": round(peak - base["VmRSS"], 1),
            "anon_growth_mb": round(status_mb("RssAnon") - base["RssAnon"], 1),
            "file_growth_mb": round(status_mb("RssFile") - base["RssFile"], 1)}  # fmt: skip


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b > 0 else f"{a} / {b} MB (not a ratio)"


def bench_memory(root: Path, args) -> list[dict]:
    """The memory probe of each reader over the same records, each in its own process."""
    import subprocess

    directory = root / "memory"
    directory.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(directory / "red.png")
    text = "word " * (args.memory_response_chars // 5)
    records = [
        {"id": f"m{i:07d}", "images": ["red.png"], "prompt": sentence(i, 15), "chosen": f"{i} {text}",
         "rejected": f"{text} {i}", "meta": {"index": i}}
        for i in range(args.memory_records)
    ]  # fmt: skip
    write_jsonl(records, directory / "train.jsonl")
    generate, features = canonical_arrow_rows(records, directory, embed=False)
    write_arrow(generate, directory / "train", features)
    del records, generate
    rows = []
    for reader in MEMORY_READERS:
        path = directory / ("train" if reader == "arrow" else "train.jsonl")
        out = subprocess.run(
            [sys.executable, __file__, "--memory-probe", reader, str(path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"stage": "memory", **row})
        print(f"memory {reader:11s} {row['records']} records: peak RSS {row['peak_rss_mb']:7.1f} MB, growth "
              f"{row['growth_mb']:6.1f} MB (anonymous {row['anon_growth_mb']:6.1f} MB, mapped files "
              f"{row['file_growth_mb']:6.1f} MB)", flush=True)  # fmt: skip
    by = {row["reader"]: row for row in rows}
    for key in ("peak_rss_mb", "growth_mb", "anon_growth_mb"):
        print(f"memory ratio arrow / jsonl ({key}): {ratio(by['arrow'][key], by['jsonl'][key])}; "
              f"arrow / jsonl held as a list: {ratio(by['arrow'][key], by['jsonl_list'][key])}")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--distinct-images", type=int, default=64)
    parser.add_argument("--source-size", default="640x480", help="WxH of the generated JPEG photos")
    parser.add_argument("--image-size", type=int, default=336, help="llava: the processor's image side")
    parser.add_argument("--response-words", type=int, default=40)
    parser.add_argument("--family", choices=["llava", "qwen2_vl"], default="llava")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--layouts", nargs="*", choices=list(LAYOUTS), default=list(LAYOUTS),
                        help="none: the memory stage only")  # fmt: skip
    parser.add_argument("--dir", help="where to write the generated data (default: a temporary folder)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--memory-records", type=int, default=20_000, help="0: no memory stage")
    parser.add_argument("--memory-response-chars", type=int, default=1500)
    parser.add_argument("--memory-probe", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe)))
        return 0
    torch.set_num_threads(1)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_data-"))
    try:
        if args.layouts:
            print(f"generating {args.records} records under {root} ...", flush=True)
        directories = write_layouts(root, make_records(root, args)) if args.layouts else {}
        processor = processor_of(args)
        results = [
            row for name in args.layouts for row in bench_layout(name, directories[name], args, processor)
        ]
        if args.memory_records:
            results += bench_memory(root, args)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    machine = {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "python": sys.version.split()[0],
               "platform": platform.platform(), "torch_threads": torch.get_num_threads()}  # fmt: skip
    if args.output:
        Path(args.output).write_text(
            json.dumps({"args": vars(args), "machine": machine, "results": results}, indent=2)
        )
    print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
