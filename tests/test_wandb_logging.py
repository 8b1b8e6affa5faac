"""wandb, offline: the run's group and tags from the config, the composed config as the run's config,
benchmark results as a table, and the generations table of ``callbacks=log_generations``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf, open_dict, read_write

from mmpo.callbacks import LogConfig
from mmpo.callbacks.generations import COLUMNS
from mmpo.train import run


def wandb_run_dir(run_dir: Path) -> Path:
    (directory,) = (run_dir / "wandb").glob("offline-run-*")
    return directory


@pytest.fixture
def wandb_logger_of(compose, tmp_path):
    """``wandb_logger_of(overrides)``: the composed config and the wandb logger ``conf/logger/wandb.yaml``
    builds from it; its run is finished afterwards."""
    import wandb

    def _build(overrides: list[str], multirun: bool = False):
        cfg = compose(["logger=wandb", *overrides], quiet=False)
        if multirun:
            hydra_cfg = HydraConfig.get()
            with read_write(hydra_cfg), open_dict(hydra_cfg):
                hydra_cfg.mode = RunMode.MULTIRUN
                hydra_cfg.sweep.dir = str(tmp_path / "multirun_2026-12-01_10-00-00-abc123")
        Path(cfg.paths.output_dir).mkdir(parents=True)
        return cfg, instantiate(cfg.logger.wandb)

    yield _build
    wandb.finish()


def test_a_single_run_is_grouped_under_its_run_name_and_tagged_with_its_parts(wandb_logger_of):
    cfg, logger = wandb_logger_of(["loss=mdpo", "negative_sampler=crop"])
    assert logger.experiment.group == cfg.run_name == "mdpo_tiny_llava"
    assert list(logger.experiment.tags) == ["mdpo", "tiny_llava", "crop", "shapes"]
    assert logger.experiment.project == "mmpo"


def test_the_points_of_a_sweep_share_the_sweep_directorys_name_as_group(wandb_logger_of):
    _, logger = wandb_logger_of([], multirun=True)
    assert logger.experiment.group == "multirun_2026-12-01_10-00-00-abc123"


def test_the_composed_config_becomes_the_wandb_runs_config(wandb_logger_of):
    cfg, logger = wandb_logger_of(["loss.beta=0.25"])
    config_file = Path(cfg.paths.output_dir) / "config.yaml"
    config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    csv_logger = CSVLogger(cfg.paths.output_dir, name="", version="")
    trainer = SimpleNamespace(is_global_zero=True, loggers=[csv_logger, logger])
    LogConfig(str(config_file)).on_fit_start(trainer, None)
    logged = logger.experiment.config
    assert logged["loss"]["beta"] == 0.25 and logged["model"]["name"] == "tiny_llava"
    assert logged["optim"]["lr"] == cfg.optim.lr
    assert csv_logger.experiment.hparams == {}  # config.yaml is beside its metrics.csv already


def test_benchmark_metrics_are_also_logged_as_a_table(wandb_logger_of):
    import wandb

    cfg, logger = wandb_logger_of([])
    logger.log_metrics(
        {"benchmark/shapes_pope/avg/accuracy": 0.75, "benchmark/shapes_chair/CHAIRs": 0.25, "val/loss": 0.69},
        step=3,
    )
    logger.log_metrics({"val/loss": 0.5}, step=4)  # no benchmark metric: no table
    wandb.finish()
    tables = list(
        wandb_run_dir(Path(cfg.paths.output_dir)).glob("files/media/table/benchmark/results_*.json")
    )
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["benchmark", "metric", "value"]
    assert table["data"] == [["shapes_pope", "avg/accuracy", 0.75], ["shapes_chair", "CHAIRs", 0.25]]


def test_log_generations_writes_a_table_of_fixed_validation_records_every_n_steps(compose):
    cfg = compose(
        [
            "logger=wandb",
            "callbacks=log_generations",
            "callbacks.log_generations.every_n_steps=1",
            "callbacks.log_generations.num_records=3",
            "callbacks.log_generations.max_new_tokens=4",
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        ],
        quiet=False,
    )
    run(cfg)
    from mmpo.data.records import read_records

    records = read_records(Path(cfg.data.path) / cfg.data.val_file)[:3]
    tables = sorted(
        wandb_run_dir(Path(cfg.paths.output_dir)).glob("files/media/table/generations_*.table.json"),
        key=lambda path: int(path.name.split("_")[1]),
    )
    assert len(tables) == 2  # steps 1 and 2
    for step, path in enumerate(tables, start=1):
        table = json.loads(path.read_text())
        assert table["columns"] == COLUMNS
        assert [row[0] for row in table["data"]] == [step] * 3
        assert [row[1] for row in table["data"]] == [r.id for r in records]
        assert [row[3] for row in table["data"]] == [r.prompt for r in records]
        assert [(row[5], row[6]) for row in table["data"]] == [(r.chosen, r.rejected) for r in records]
        assert all(isinstance(row[4], str) for row in table["data"])
        assert all(row[2] is not None for row in table["data"])  # the image (its file lives in the artifact)


def test_log_generations_without_a_wandb_logger_says_which_logger_to_use(compose):
    from mmpo.config import ConfigError

    cfg = compose(["callbacks=log_generations", "trainer.max_steps=1"])  # quiet: logger=csv
    with pytest.raises(ConfigError, match="needs a wandb logger: logger=default or logger=wandb"):
        run(cfg)
