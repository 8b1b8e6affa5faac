"""The Makefile's shapes reproduction targets: every run their sweeps launch passes the start-up checks.

Each target's ``train.py -m`` lines are read from ``make -n`` (what make would run), their sweeps expanded
as Hydra expands them (one seed: seeds do not change what a run checks), and each point composed from the
real ``conf/`` and checked as ``train.py`` checks it: a target that would stop at start-up fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from mmpo import repro
from mmpo.config import compose_job

ROOT = repro.ROOT
NEEDS_POOL = {"repro-shapes-misp-dpo", "repro-shapes-misp-dpo-table1"}  # their pool is built by a make step


def shapes_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return sorted(set(re.findall(r"^(repro-shapes-[\w-]+):", makefile, flags=re.M)))


def sweeps(target: str) -> list[list[str]]:
    """The overrides of every ``train.py -m`` command ``make <target>`` would run, seeds reduced to one."""
    out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    commands = []
    for line in out.splitlines():
        if " train.py -m " in line:
            words = shlex.split(line.split(" train.py -m ", 1)[1].split("&&")[0])
            commands.append(
                ["seed=0" if w.startswith("seed=") else w for w in words if not w.startswith("hydra.")]
            )
    return commands


def test_every_shapes_target_is_listed_and_launches_runs():
    targets = shapes_targets()
    assert {"repro-shapes-mdpo-fig1", "repro-shapes-mdpo-table2", "repro-shapes-chip"} <= set(targets)
    assert all(sweeps(t) for t in targets), "a repro-shapes target that launches no train.py sweep"


@pytest.mark.parametrize("target", [t for t in shapes_targets() if t not in NEEDS_POOL])
def test_every_run_of_a_shapes_target_passes_the_start_up_checks(target, tmp_path):
    for sweep in sweeps(target):
        for point in repro.sweep_points(tuple(sweep)):
            cfg = compose_job([*point, f"paths.log_dir={tmp_path}", f"paths.data_dir={tmp_path / 'data'}"])
            assert repro.point_problems(cfg) == [], f"make {target}: python train.py {' '.join(point)}"
