"""data.format=arrow: the records scripts/convert.py --to arrow writes (images as paths or embedded bytes)
read a row at a time from the memory map, equal to the same records as JSONL, with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from mmpo.data.arrow import ArrowRecords
from mmpo.data.converters.writers import canonical_arrow_rows, write_arrow
from mmpo.data.records import JsonlRecords, RecordError, Records
from mmpo.images import load_image

from .bad_inputs import write_lines


def rich_records() -> list[dict]:
    """Single- and multi-image records, one and several rejected responses, context, meta, negatives."""
    return [
        {"id": "one", "images": ["a.png"], "prompt": "What is it?", "chosen": "A red square.",
         "rejected": "A blue circle.", "meta": {"source": "x"}},
        {"id": "two", "images": ["a.png", "b.png"], "prompt": "Which differs?", "chosen": "The second.",
         "rejected": ["The first.", "Neither."], "context": "Two photos.", "negative_images": ["b.png", "a.png"]},
        {"id": "text", "images": [], "prompt": "Say hi.", "chosen": "Hi.", "rejected": ["Bye."]},
    ]  # fmt: skip


def write_sets(root, records: list[dict]) -> dict[str, object]:
    """The records as JSONL, as arrow with image paths, and as arrow with the image bytes embedded."""
    out = {}
    noise, green = (
        Image.effect_noise((24, 16), 50).convert("RGB"),
        Image.new("RGBA", (20, 20), (0, 255, 0, 255)),
    )
    for name in ("jsonl", "paths", "embed"):
        directory = root / name
        directory.mkdir(parents=True)
        noise.save(directory / "a.png")
        green.save(directory / "b.png")
        for split in ("train", "val"):
            rows = [dict(r, id=f"{split}-{r['id']}") for r in records]
            if name == "jsonl":
                write_lines(directory / f"{split}.jsonl", rows)
            else:
                generate, features = canonical_arrow_rows(rows, directory, embed=name == "embed")
                write_arrow(generate, directory / split, features)
        if name == "embed":
            for image in ("a.png", "b.png"):
                (directory / image).rename(root / f"{name}-{image}")  # the bytes live in the data set only
        out[name] = directory
    return out


def test_arrow_records_equal_the_jsonl_records_with_paths_or_embedded_images(tmp_path):
    sets = write_sets(tmp_path, rich_records())
    jsonl = list(Records(JsonlRecords(sets["jsonl"] / "train.jsonl")))
    for name in ("paths", "embed"):
        arrow = list(Records(ArrowRecords(sets[name] / "train")))
        assert len(arrow) == len(jsonl) == 3
        for a, j in zip(arrow, jsonl, strict=True):
            assert (a.id, a.prompt, a.chosen, a.rejected, a.context, a.meta) == (
                j.id, j.prompt, j.chosen, j.rejected, j.context, j.meta,
            )  # fmt: skip
            assert len(a.images) == len(j.images) and len(a.negative_images) == len(j.negative_images)
            for x, y in zip(a.images + a.negative_images, j.images + j.negative_images, strict=True):
                assert np.array_equal(np.asarray(load_image(x)), np.asarray(load_image(y)))
        assert arrow[1].location == f"{(sets[name] / 'train').resolve()} row 1"
    assert all(p.startswith("arrow:") for p in Records(ArrowRecords(sets["embed"] / "train"))[1].images)


def epochs_of(module, epochs: int = 2) -> list[list]:
    """Every training batch of ``epochs`` epochs as Lightning iterates them: ``(ids, branch -> tensors)``."""
    loader = module.train_dataloader()
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        module.set_epoch(epoch)
        out.append([(batch.ids, {b: r.tensors for b, r in batch.rows.items()}) for batch in loader])
    return out


def test_the_data_module_gives_the_same_batches_from_arrow_folders_as_from_jsonl_files(tmp_path, make):
    sets = write_sets(tmp_path, rich_records())
    settings = ("data.shuffle=true", "data.batch_size=2")
    expected = epochs_of(make(sets["jsonl"], "data.format=jsonl", *settings))
    assert [ids for epoch in expected for ids, _ in epoch] != [["train-one", "train-two"], ["train-text"]] * 2
    assert all(sorted(i for ids, _ in epoch for i in ids) == ["train-one", "train-text", "train-two"]
               for epoch in expected)  # fmt: skip
    for name, workers in (("paths", 0), ("embed", 0), ("embed", 1)):
        got = epochs_of(make(sets[name], "data.format=arrow", f"data.num_workers={workers}", *settings))
        assert len(got) == len(expected)
        for epoch, (batches, reference) in enumerate(zip(got, expected, strict=True)):
            assert [ids for ids, _ in batches] == [ids for ids, _ in reference], (name, epoch)
            for (_, rows), (_, reference_rows) in zip(batches, reference, strict=True):
                assert rows.keys() == reference_rows.keys()
                for branch, tensors in reference_rows.items():
                    assert tensors.keys() == rows[branch].keys()
                    for key, value in tensors.items():
                        assert torch.equal(value, rows[branch][key]), (name, workers, epoch, branch, key)


def test_a_bad_arrow_row_and_an_unknown_column_are_named(tmp_path, make):
    records = rich_records()
    records[1]["chosen"] = "The first."  # equals rejected[0]
    sets = write_sets(tmp_path, records)
    folder = (sets["embed"] / "train").resolve()
    with pytest.raises(
        RecordError, match=rf"^{folder} row 1 \(record id 'train-two'\): field 'rejected\[0\]' equals"
    ):
        make(sets["embed"], "data.format=arrow")
    report = make(sets["embed"], "data.format=arrow", "data.on_error=skip").check().report()
    assert report["skipped"]["by_reason"] == {"rejected_equals_chosen": 2}  # train and val
    import datasets

    typo = tmp_path / "typo"
    datasets.Dataset.from_dict(
        {"id": ["a"], "prompt": ["p"], "chosen": ["c"], "rejectd": ["r"]}
    ).save_to_disk(str(typo / "train"))
    with pytest.raises(RecordError, match=r"typo/train: field 'rejectd' is not a record field"):
        ArrowRecords(typo / "train")


def test_the_arrow_data_problems_name_the_missing_folder(tmp_path, make):
    from mmpo.data.datamodule import data_problems

    sets = write_sets(tmp_path, rich_records()[:1])
    module = make(sets["jsonl"], "data.format=arrow", setup=False)
    assert [p.split(";")[0] for p in data_problems(module.cfg)] == [
        f"data.path='{sets['jsonl']}' has no train/ (train split)",
        f"data.path='{sets['jsonl']}' has no val/ (val split)",
    ]


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    import datasets, pyarrow.compute  # imported before the baseline: libraries are not data
    from mmpo.data.arrow import ArrowRecords
    from mmpo.data.examples import PreferenceDataset
    from mmpo.data.records import Records
    from mmpo.data.validation import images_digest

    def rss_anon_mb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

    base = rss_anon_mb()
    source = ArrowRecords(sys.argv[1])
    dataset = PreferenceDataset(Records(source))
    images_digest([source])
    characters = sum(len(dataset.records[i].chosen) for i in range(len(dataset)))
    examples = [dataset[i].images[0].size for i in range(0, len(dataset), 997)]
    lazy = rss_anon_mb() - base
    everything = list(dataset.records)
    print(json.dumps({"records": len(dataset), "characters": characters, "lazy_mb": lazy,
                      "materialised_mb": rss_anon_mb() - base}))
    """
)
RECORDS, RESPONSE, BOUND_MB = 20_000, 1_500, 20.0
"""20k records of 2 x 1.5 kB responses (about 80 MB as Python objects); reading every one through the lazy
view (and the image-path pass of the cache key) may grow the anonymous resident memory (RssAnon: the
memory-mapped files are page cache, not the process's) by at most BOUND_MB; holding them takes more."""


@pytest.mark.slow  # about 15 s on an idle machine, 50 s on a loaded one
def test_a_20k_record_arrow_set_is_read_with_bounded_memory(tmp_path):
    import datasets

    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")

    def rows():
        for i in range(RECORDS):
            yield {"id": f"r{i}", "images": ["red.png"], "prompt": f"Question {i}?", "chosen": "c" * RESPONSE,
                   "rejected": "r" * RESPONSE, "context": None, "negative_images": [], "meta": "{}"}  # fmt: skip

    _, features = canonical_arrow_rows([next(rows())], tmp_path, embed=False)
    write_arrow(rows, tmp_path / "train", features)
    assert datasets.load_from_disk(str(tmp_path / "train")).num_rows == RECORDS
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "train")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["records"] == RECORDS and result["characters"] == RECORDS * RESPONSE
    assert result["lazy_mb"] < BOUND_MB, result
    assert result["materialised_mb"] > 1.5 * BOUND_MB, result  # the bound would catch a reader that loads all
