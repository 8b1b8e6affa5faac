"""results_table.py on synthetic run directories: grouping, mean ± std by hand, written files."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ..conftest import ROOT


@pytest.fixture(scope="module")
def results_table():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    return module


def fake_run(
    directory: Path, loss: str | None, overrides: list[str], metrics: dict[str, dict[str, float]]
) -> Path:
    directory.mkdir(parents=True)
    config = {"seed": 0, "model": {"name": "tiny_llava"}, **({"choices": {"loss": loss}} if loss else {})}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    (directory / ".hydra").mkdir()
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    for name, values in metrics.items():
        (directory / "benchmarks").mkdir(exist_ok=True)
        (directory / "benchmarks" / f"{name}.json").write_text(
            json.dumps({"benchmark": name, "metrics": values})
        )
    return directory


def test_table_groups_seeds_into_methods_with_mean_and_sample_std(results_table, tmp_path):
    sweep = tmp_path / "multirun"
    for seed, (acc, chair) in enumerate([(0.6, 0.2), (0.7, 0.4), (0.8, 0.3)]):
        fake_run(
            sweep / str(seed),
            "dpo",
            [f"seed={seed}", "model.init_from=/x", "experiment=demo_pref"],
            {"shapes_pope": {"avg/accuracy": acc, "avg/f1": 0.5}, "shapes_chair": {"CHAIRi": chair}},
        )
    for seed, acc in enumerate([0.5, 0.9]):
        fake_run(
            tmp_path / "noimg" / str(seed),
            "dpo",
            [f"seed={seed}", "data.image=none"],
            {"shapes_pope": {"avg/accuracy": acc}},
        )
    fake_run(
        tmp_path / "base",
        None,
        ["run=null", "benchmark=[shapes_pope]"],
        {"shapes_pope": {"avg/accuracy": 0.5}},
    )
    out = tmp_path / "table"
    table = results_table.main(
        [
            str(tmp_path / "base"),
            str(sweep),
            str(tmp_path / "noimg" / "*"),
            "--out",
            str(out),
            "--metrics",
            "shapes_pope/avg/accuracy",
            "shapes_chair/*",
            "--wandb",
            "off",
        ]
    )
    assert list(table.rows) == ["tiny_llava (no training)", "dpo", "dpo data.image=none"]
    assert table.columns == ["shapes_pope/avg/accuracy", "shapes_chair/CHAIRi"]  # in pattern order
    dpo = table.rows["dpo"]["shapes_pope/avg/accuracy"]
    assert dpo.mean == pytest.approx(0.7) and dpo.std == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    noimg = table.rows["dpo data.image=none"]["shapes_pope/avg/accuracy"]
    assert noimg.std == pytest.approx(math.sqrt(0.08 / 1))
    assert table.rows["tiny_llava (no training)"]["shapes_pope/avg/accuracy"].std == 0.0
    assert table.counts == {"tiny_llava (no training)": 1, "dpo": 3, "dpo data.image=none": 2}

    markdown = (out / "results.md").read_text().splitlines()
    assert markdown[0] == "| method | n | shapes_pope/avg/accuracy | shapes_chair/CHAIRi |"
    assert markdown[3] == "| dpo | 3 | 0.700 ± 0.100 | 0.300 ± 0.100 |"
    assert markdown[4] == "| dpo data.image=none | 2 | 0.700 ± 0.283 | — |"
    rows = list(csv.reader((out / "results.csv").open()))
    assert rows[0][:4] == ["method", "n", "shapes_pope/avg/accuracy_mean", "shapes_pope/avg/accuracy_std"]
    assert float(rows[2][2]) == pytest.approx(0.7) and rows[3][4:] == ["", ""]
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_results_and_unknown_metrics_are_reported(results_table, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="train or evaluate first"):
        results_table.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    fake_run(tmp_path / "r", "dpo", [], {"shapes_pope": {"avg/accuracy": 0.5}})
    with pytest.raises(SystemExit, match="available"):
        results_table.main([str(tmp_path / "r"), "--metrics", "nope/*", "--out", str(tmp_path / "o")])


def test_runs_without_validation_metrics_end_with_a_message_not_a_traceback(results_table, tmp_path):
    run = fake_run(tmp_path / "r", "dpo", [], {})
    (run / "metrics.csv").write_text("epoch,step,train/loss_step\n0,1,0.7\n")  # stopped before validating
    with pytest.raises(SystemExit, match="none of the 1 runs logged validation metrics"):
        results_table.main([str(run), "--out", str(tmp_path / "o"), "--wandb", "off"])


def test_runs_with_different_metrics_make_one_wandb_table(results_table, tmp_path, monkeypatch):
    """A method without a column gets an empty cell: the md/csv show it, the wandb table holds None."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    (fake_run(tmp_path / "a", "dpo", [], {"shapes_pope": {"avg/accuracy": 0.5}}) / "wandb").mkdir()
    fake_run(tmp_path / "b", "mdpo", [], {"shapes_chair": {"CHAIRi": 0.2}})
    results_table.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")])
    (table,) = (tmp_path / "o" / "wandb").glob("offline-run-*/files/media/table/results_*.table.json")
    assert json.loads(table.read_text())["data"] == [
        ["dpo", 1, 0.5, 0.0, None, None],
        ["mdpo", 1, None, None, 0.2, 0.0],
    ]


def test_runs_logged_to_wandb_get_the_table_there(results_table, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = fake_run(tmp_path / "r", "dpo", [], {"shapes_pope": {"avg/accuracy": 0.5}})
    (run / "wandb").mkdir()
    results_table.main([str(run), "--out", str(tmp_path / "o")])
    tables = list((tmp_path / "o" / "wandb").glob("offline-run-*/files/media/table/results_*.table.json"))
    assert len(tables) == 1
    assert json.loads(tables[0].read_text())["data"] == [["dpo", 1, 0.5, 0.0]]


def test_final_validation_metrics_of_training_runs_become_columns(results_table, tmp_path):
    for seed, (first, last) in enumerate([(0.5, 0.6), (0.5, 0.8)]):
        run = fake_run(tmp_path / "sweep" / str(seed), "mdpo", [f"seed={seed}", "loss.w_copo=0"], {})
        (run / "metrics.csv").write_text(
            "epoch,step,train/loss_step,val/rewards/accuracies\n"
            f"0,1,0.7,\n0,1,,{first}\n1,3,0.6,\n1,3,,{last}\n"
        )
    table = results_table.main([str(tmp_path / "sweep"), "--metrics", "val/*", "--out", str(tmp_path / "o")])
    cell = table.rows["mdpo loss.w_copo=0"]["val/rewards/accuracies"]
    assert cell.mean == pytest.approx(0.7) and cell.std == pytest.approx(0.1414213, rel=1e-5)
    assert "train/loss_step" not in table.columns


def test_chart_has_one_panel_per_metric_on_a_grid_of_three_columns(results_table, tmp_path):
    assert [results_table.chart_grid(n) for n in (1, 3, 4, 7)] == [(1, 1), (1, 3), (2, 3), (3, 3)]
    metrics = {f"m{i}": 0.1 * i for i in range(4)}
    fake_run(tmp_path / "a", "dpo", [], {"shapes_pope": metrics})
    fake_run(tmp_path / "b", "mdpo", ["negative_sampler=crop"], {"shapes_pope": metrics})
    sizes = {}
    for patterns in (["shapes_pope/m[0-2]"], ["shapes_pope/*"]):  # 3 panels: one row; 4 panels: two rows
        out = tmp_path / str(len(sizes))
        results_table.main(
            [
                str(tmp_path / "a"),
                str(tmp_path / "b"),
                "--metrics",
                *patterns,
                "--out",
                str(out),
                "--wandb",
                "off",
            ]
        )
        sizes[len(sizes)] = Image.open(out / "results.png").size
    (width_3, height_3), (width_4, height_4) = sizes[0], sizes[1]
    assert height_4 == pytest.approx(2 * height_3, abs=2) and width_4 == width_3  # 2 x 3 against 1 x 3
