"""The paper reproduction targets: without the weights and data they print what to fetch, where, and the cost."""

from __future__ import annotations

import pytest

from mmpo import repro


def test_the_gpu_hour_estimate_is_the_flop_count_over_the_assumed_throughput():
    # 2 epochs x 10 records x 100 tokens x 2 x 1e9 FLOPs x (4 x 3 policy + 3 reference forwards) = 6e13
    hours = repro.estimated_gpu_hours(1e9, 100, 10, 2, policy_branches=3, reference_branches=3)
    assert hours == pytest.approx(6e13 / (312e12 * 0.35) / 3600)


def test_a_sweep_expands_into_every_point_as_hydra_expands_it():
    points = repro.sweep_points(repro.TARGETS["mdpo-table2"].sweep)
    assert len(points) == 4
    assert {(p[1], p[2]) for p in points} == {
        (f"loss.w_copo={c}", f"loss.w_anc={a}") for c in (1, 0) for a in (1, 0)
    }


@pytest.mark.parametrize("name", sorted(repro.TARGETS))
def test_without_weights_or_data_a_target_prints_what_to_download_and_where_and_starts_nothing(
    name, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(repro, "ROOT", tmp_path)  # a run would write under ROOT/outputs
    rc = repro.main([name, f"paths.model_dir={tmp_path}/models", f"paths.data_dir={tmp_path}/data"])
    out = capsys.readouterr().out
    target = repro.TARGETS[name]
    assert rc == 2
    assert out.count("[MISSING]") == len(target.downloads)
    assert f"to model.path={tmp_path}/models/" in out and f"to data.path={tmp_path}/data/" in out
    (selected,) = [o for o in target.sweep if o.startswith("benchmark=")]
    for name in selected.removeprefix("benchmark=").strip("[]").split(","):  # missing files, their source
        assert f"`benchmarks.{name}.path`" in out
    assert "GPU hours:" in out
    assert not (tmp_path / "outputs").exists()


def test_the_estimate_counts_the_branches_each_composed_loss_forwards(capsys):
    repro.main(["mdpo-table1", "--check"])
    out = capsys.readouterr().out
    target = repro.TARGETS["mdpo-table1"]
    per_run = {  # DPO forwards chosen and rejected, mDPO also chosen under the corrupted image
        branches: repro.estimated_gpu_hours(
            target.parameters, target.tokens_per_branch, target.records, 3, branches, branches
        )
        for branches in (2, 3)
    }
    assert f"GPU hours: {per_run[2] + per_run[3]:.0f} A100 hours, estimated" in out
