"""The config tree composes in every option; bad configs fail at start-up with one clear message."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from mmpo.config import ConfigError
from mmpo.train import check_run as check_config

from .conftest import CONF_DIR, ROOT, train_cli

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_named_in_the_design_exists():
    expected = {
        "model",
        "loss",
        "data",
        "negative_sampler",
        "benchmark",
        "reference",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "hparams_search",
        "debug",
        "paths",
    }
    assert expected <= set(GROUPS) | {"hydra"} and (CONF_DIR / "hydra").is_dir()


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_of_every_group_composes(compose, group, option):
    cfg = compose([f"{group}={option}"])
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(job, resolve=True)  # every interpolation resolves
    if group == "loss":
        assert cfg.choices.loss == option
    if group == "benchmark":  # evaluated after training
        assert list(cfg.benchmarks) == [option]


def test_cfg_job_prints_a_real_model_config_without_touching_the_model_path(tmp_path):
    out = train_cli("--cfg", "job", "loss=dpo", "model=llava7b", run_dir=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert (
        cfg.model.name == "llava7b" and cfg.model.family == "llava" and cfg.loss._target_.endswith("DPOLoss")
    )
    assert str(cfg.model.path).endswith("llava-1.5-7b-hf")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=nonexistent"], "Could not find 'loss/nonexistent'"),
        (["model=llava7b", "model.path=/nowhere/llava"], "model.path='/nowhere/llava'"),
    ],
)
def test_bad_config_gives_a_clear_error_not_a_traceback(overrides, message, tmp_path):
    out = train_cli("logger=csv", *overrides, run_dir=tmp_path, timeout=120)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["engine.mode=fast"], "engine.mode='fast'; allowed:"),
        (["data.truncation=cut"], "data.truncation='cut'; allowed: ['delete', 'truncate_response', 'raise']"),
        (["model.lora.enabled=false"], "reference=adapter_off needs model.lora.enabled=true"),
        (
            ["loss=mdpo"],
            "loss=mdpo needs 1 negative image(s) per record; negative_sampler allowed: ['blank', 'clip_knn', 'crop'",
        ),
        (["loss=mdpo", "negative_sampler=crop", "data.image=none"], "cannot run with data.image=none"),
        (["reference=none"], "loss=dpo needs a reference"),
        (["loss.label_smoothing=0.9"], "loss.label_smoothing=0.9"),
        (["negative_sampler=crop", "negative_sampler.scale=[0.5,0.1]"], "negative_sampler.scale"),
        (
            ["negative_sampler@val_negative_sampler=mocov2", "val_negative_sampler.apply_to=pixels"],
            "val_negative_sampler: negative_sampler.apply_to='pixels' is not supported by the 'mocov2'",
        ),
        (["model.quantization.load_in_4bit=true", "model.lora.enabled=false", "reference=copy"], "QLoRA"),
        (["model.family=gpt2"], "model.family='gpt2' is not supported; allowed:"),
        (["experiment=mdpo_bunny3b"], "model.family='bunny' is not supported (Bunny-v1.0-3B ships"),
        (["data=files", "data.path=/nowhere"], "data.path='/nowhere' has no train.jsonl"),
        (["data.token_budget=0"], "data.token_budget=0; allowed: a positive number of tokens, or null"),
        (["data.token_budget=4096", "engine.mode=batched"], "data.token_budget=4096 packs the rows"),
        (
            ["model.attn_implementation=flash_attention_2", "engine.mode=shared_prefix"],
            "a 4-D or block attention",
        ),
    ],
)
def test_cross_group_checks_name_the_key_and_allowed_values(compose, overrides, message):
    with pytest.raises(ConfigError) as error:
        check_config(compose(overrides))
    assert message in str(error.value)


def test_all_problems_are_reported_at_once(compose):
    with pytest.raises(ConfigError) as error:
        check_config(compose(["engine.mode=fast", "data.on_error=ignore"]))
    assert "engine.mode" in str(error.value) and "data.on_error" in str(error.value)


def test_schema_rejects_unknown_keys_and_wrong_types(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose(["model.lora.rank=8"])
    with pytest.raises(ConfigCompositionException):
        compose(["data.batch_size=many"])


def test_the_default_config_passes_the_checks(compose):
    check_config(compose([]))
    check_config(compose(["loss=mdpo", "negative_sampler=crop", "model=tiny_qwen2vl"]))


def test_a_bad_record_stops_the_run_with_file_line_and_id_not_a_traceback(tmp_path):
    bad = '{"id": "r1", "images": [], "prompt": "p", "chosen": "", "rejected": "r"}\n'
    for name in ("train.jsonl", "val.jsonl"):
        (tmp_path / name).write_text(bad)
    out = train_cli(
        "logger=csv", "data=files", f"data.path={tmp_path}", run_dir=tmp_path / "run", timeout=120
    )
    assert out.returncode == 2
    assert f"{tmp_path / 'train.jsonl'}:1 (record id 'r1'): field 'chosen'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_readme_lists_every_option_of_every_group():
    """The README's config-group table is the user's map of the tree; it must not drift from conf/."""
    readme = (ROOT / "README.md").read_text()
    listed: dict[str, set[str]] = {}
    for line in readme.splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) >= 4:
            for group in re.findall(r"`([a-z_]+)`", cells[1]):
                listed[group] = set(re.findall(r"`([a-z0-9_]+)`", cells[2]))
    for group in GROUPS:
        assert set(options(group)) <= listed[group], (group, set(options(group)) - listed[group])


def test_ddp_finds_unused_parameters_only_where_the_freeze_policy_leaves_some_unused(compose):
    from omegaconf import OmegaConf

    def unused(*overrides):
        return OmegaConf.select(
            compose(["trainer=ddp_cpu", *overrides]), "trainer.strategy.find_unused_parameters"
        )

    assert unused() is False  # LoRA on the language model: every trainable weight is used by every step
    assert unused("model.freeze.projector=false") is False  # a trainable projector still sees images
    assert unused("model.freeze.projector=false", "data.image=none") is True  # ... but not without them


def test_a_trainer_this_machine_cannot_run_is_a_start_up_error(compose):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu but this machine has no CUDA device"):
        check_config(compose(["trainer=gpu"]))
    with pytest.raises(ConfigError, match="needs DeepSpeed: pip install deepspeed"):
        check_config(compose(["trainer=deepspeed_zero3"]))
