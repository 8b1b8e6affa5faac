"""The benchmark callback logs benchmark/<name>/<metric> while a run trains."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmpo.callbacks import BenchmarkCallback
from mmpo.train import run


def test_callback_logs_benchmark_metrics_during_training(compose, shapes_dir):
    cfg = compose(
        [
            "callbacks=eval_shapes",
            "trainer.max_steps=2",
            "callbacks.eval_shapes.every_n_steps=1",
            "callbacks.eval_shapes.benchmark.limit=6",
            "callbacks.eval_shapes.batch_size=4",
            "optimized_metric=benchmark/shapes_pope/avg/accuracy",
        ]
    )
    assert cfg.callbacks.eval_shapes.benchmark.path == str(shapes_dir)  # the world the run trains on
    returned = run(cfg)  # a sweep can optimise a benchmark metric
    with open(Path(cfg.paths.output_dir) / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    logged = [
        (int(row["step"]), float(row["benchmark/shapes_pope/avg/accuracy"]))
        for row in rows
        if row.get("benchmark/shapes_pope/avg/accuracy")
    ]
    assert [step for step, _ in logged] == [1, 2]
    assert all(0.0 <= value <= 1.0 for _, value in logged)
    assert returned == pytest.approx(logged[-1][1])
    assert "benchmark/shapes_pope/random/f1" in rows[0]


def test_callback_checks_its_interval(shapes_dir):
    from mmpo.benchmarks.shapes import ShapesPOPE

    with pytest.raises(ValueError, match="every_n_steps"):
        BenchmarkCallback(ShapesPOPE(path=str(shapes_dir), world={"num_scenes": 40}), every_n_steps=0)
