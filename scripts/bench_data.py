"""Throughput of the data path: records/s through the reader, image decoding, the collator and the
one-time record checks, for JSONL and arrow (image paths or embedded bytes), with and without workers.

    OMP_NUM_THREADS=1 python scripts/bench_data.py                       # 2000 records, LLaVA-1.5 geometry
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
  then the cache hit of a second run.
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
from mmpo.data.converters.writers import canonical_arrow_rows, write_arrow
from mmpo.data.converters.writers import write_jsonl
from mmpo.data.datamodule import PreferenceDataModule
from mmpo.data.examples import PreferenceDataset
from mmpo.data.records import Records
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
        for split, rows in (("train", records), ("val", records[:8])):
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
        epochs = [timed(lambda: sum(len(batch) for batch in loader)) for _ in range(2 if workers else 1)]
        add(f"collate@{workers}", len(module.datasets["train"]), epochs[-1], cpu_counts=workers == 0)
        del loader
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
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--dir", help="where to write the generated data (default: a temporary folder)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_data-"))
    try:
        print(f"generating {args.records} records under {root} ...", flush=True)
        directories = write_layouts(root, make_records(root, args))
        processor = processor_of(args)
        results = [
            row for name in args.layouts for row in bench_layout(name, directories[name], args, processor)
        ]
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
