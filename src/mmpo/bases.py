"""Cached base runs: a stage that later runs start from (the SFT'd shapes model), built once and reused.

``model.init_from=base:<experiment>`` names the run directory that ``python train.py
experiment=<experiment>`` writes, kept under ``<paths.base_dir>/<experiment>-<key>/`` with

    key = BLAKE2b( code | config )[:16]
    code   = the bytes of every ``src/mmpo/**/*.py`` and ``conf/**/*.yaml`` file (any change rebuilds)
    config = the composed job config of ``experiment=<experiment>``, unresolved, without the nodes that do
             not change the weights (paths, loggers, callbacks, progress output, data.path)

so a base built by older code, another world or another SFT recipe is never reused silently. A missing
base is built first, in a subprocess whose output streams to the terminal, under a file lock (concurrent
runs and DDP ranks wait for one build), into a temporary directory renamed into place only when the run
finished: an interrupted build leaves no base behind. ``make sft-base`` and ``python -m mmpo.bases
<experiment>`` build (or find) one and print its directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from mmpo.config import CONF_DIR, ROOT

log = logging.getLogger(__name__)

SCHEME = "base:"
UNKEYED = ("paths", "logger", "callbacks", "hydra")
UNKEYED_LEAVES = ("data.path", "trainer.enable_progress_bar", "trainer.enable_model_summary")


def is_base_spec(init_from: str | None) -> bool:
    return bool(init_from) and str(init_from).startswith(SCHEME)


def code_digest() -> str:
    """Digest of the code and configs that build a run (the ``src/mmpo`` and ``conf`` trees)."""
    h = hashlib.blake2b(digest_size=16)
    files = sorted([*(ROOT / "src" / "mmpo").rglob("*.py"), *CONF_DIR.rglob("*.yaml")])
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def config_digest(job: DictConfig) -> str:
    """Digest of a composed (unresolved) job config without the nodes that do not change the weights."""
    keep = {k: v for k, v in OmegaConf.to_container(job, resolve=False).items() if k not in UNKEYED}
    for leaf in UNKEYED_LEAVES:
        parent, _, key = leaf.partition(".")
        keep.get(parent, {}).pop(key, None)
    text = json.dumps(keep, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def compose_experiment(experiment: str, overrides: list[str]) -> DictConfig:
    """The job config ``python train.py experiment=<experiment> <overrides>`` would run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    arguments = [f"experiment={experiment}", *overrides]
    if GlobalHydra.instance().is_initialized():  # inside a running train.py / evaluate.py
        return compose(config_name="train", overrides=arguments)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=arguments)


def base_dir_of(experiment: str, overrides: list[str], base_root: str | Path) -> Path:
    key = hashlib.blake2b(
        (code_digest() + config_digest(compose_experiment(experiment, overrides))).encode(), digest_size=8
    ).hexdigest()
    return Path(base_root) / f"{experiment}-{key}"


def ensure_base(experiment: str, base_root: str | Path, overrides: list[str] = ()) -> Path:
    """The run directory of the cached base ``experiment`` (with ``overrides``), built first if absent."""
    overrides = list(overrides)
    target = base_dir_of(experiment, overrides, base_root)
    if (target / "summary.txt").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "summary.txt").is_file():  # another process built it while this one waited
            return target
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        command = [sys.executable, str(ROOT / "train.py"), f"experiment={experiment}", *overrides]
        log.info("building the cached base %s (once; later runs reuse it): %s", target, " ".join(command[1:]))
        environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([*command, f"hydra.run.dir={building}"], cwd=ROOT, env=environment)
        if done.returncode != 0:
            raise BaseBuildError(
                f"building the base {experiment!r} failed (exit {done.returncode}); its output is above and in "
                f"{building}/train.log. The command: {' '.join(command)}"
            )
        building.rename(target)
    return target


class BaseBuildError(RuntimeError):
    """The run that builds a cached base failed."""


def resolve_init_from(model_cfg: DictConfig, base_root: str | Path) -> None:
    """Replace ``model.init_from=base:<experiment>`` by the cached base's run directory, building it first
    if absent; any other value is left as it is."""
    if is_base_spec(model_cfg.get("init_from")):
        model_cfg.init_from = str(ensure_base(model_cfg.init_from[len(SCHEME) :], base_root))


def main(argv: list[str] | None = None) -> None:
    """``python -m mmpo.bases <experiment> [overrides...]``: build or find the base, print its directory."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--base-dir", help="default: paths.base_dir of the train config (outputs/bases)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base_root = args.base_dir or compose_experiment(args.experiment, args.overrides).paths.base_dir
    print(ensure_base(args.experiment, base_root, args.overrides))


if __name__ == "__main__":
    main()
