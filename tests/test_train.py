"""End-to-end training runs on the tiny models: what a run directory holds, both families, QLoRA,
bf16 autocast, SFT -> init_from, resume with loss continuity, DDP with global metrics, and FSDP2 equal to
one process."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch

from mmpo.train import run

from .conftest import train_cli


def metrics_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def logged(run_dir: Path, key: str) -> list[float]:
    return [float(r[key]) for r in metrics_rows(run_dir) if r.get(key)]


def test_default_run_writes_the_run_directory(compose):
    cfg = compose([])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "config.yaml").is_file()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    summary = (out / "summary.txt").read_text().strip().splitlines()
    assert len(summary) == 1
    assert (
        "loss=dpo model=tiny_llava status=finished engine=shared_prefix reference=adapter_off steps=2"
        in summary[0]
    )
    assert json.loads((out / "data_report.json").read_text())["read"] > 0
    header = metrics_rows(out)[0].keys()
    for key in (
        "train/loss_step",
        "train/loss/dpo_step",
        "train/rewards/accuracies_step",
        "train/rewards/chosen@original_step",
        "val/loss",
        "val/rewards/margins",
    ):
        assert key in header, key
    # step 0: policy == reference (LoRA B = 0) so the loss is log 2
    assert logged(out, "train/loss_step")[0] == pytest.approx(0.693147, abs=1e-5)


@pytest.mark.parametrize("model", ["tiny_llava", "tiny_qwen2vl"])
@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_both_families_train_and_the_loss_moves(compose, model, loss):
    cfg = compose([f"model={model}", f"loss={loss}", "trainer.max_steps=4", "optim.lr=5e-3"])
    run(cfg)
    losses = logged(Path(cfg.paths.output_dir), "train/loss_step")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] != losses[0]


def test_full_finetuning_with_a_frozen_copy_reference(compose):
    cfg = compose(["model.lora.enabled=false", "reference=copy", "model.freeze.vision_tower=true"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "model" / "config.json").is_file()
    assert logged(out, "train/loss_step")[0] == pytest.approx(0.693147, abs=1e-5)


def test_qlora_4bit_trains_on_cpu(compose):
    pytest.importorskip("bitsandbytes")
    cfg = compose(["model.quantization.load_in_4bit=true"])
    run(cfg)
    assert logged(Path(cfg.paths.output_dir), "train/loss_step")[0] == pytest.approx(0.693147, abs=1e-4)
    from mmpo.models.loading import load_model

    policy, _, _ = load_model(cfg.model)
    quantized = [n for n, m in policy.named_modules() if type(m).__name__ == "Linear4bit"]
    assert quantized and all("language_model" in n for n in quantized)  # vision tower, projector stay fp


def test_bf16_mixed_precision_on_cpu_keeps_fp32_logps(compose):
    cfg = compose(["trainer=cpu_bf16", "loss=mdpo", "negative_sampler=crop"])
    run(cfg)
    first = logged(Path(cfg.paths.output_dir), "train/loss_step")[0]
    assert first == pytest.approx(3 * 0.693147, abs=1e-3)


def test_sft_run_is_a_base_for_init_from(compose, tmp_path):
    sft = compose(["loss=sft", "model.lora.r=4", "optim.lr=1e-2", "trainer.max_steps=3"])
    run(sft)
    sft_dir = Path(sft.paths.output_dir)
    # validation before and after training scores the same records: the SFT loss on them went down
    assert logged(sft_dir, "val/loss")[-1] < logged(sft_dir, "val/loss")[0]
    from mmpo.models.loading import load_model

    dpo = compose([f"model.init_from={sft_dir}"])
    merged, _, _ = load_model(dpo.model)
    base, _, _ = load_model(compose([]).model)
    name = next(n for n, _ in base.named_parameters() if "q_proj.base_layer.weight" in n)
    assert not torch.equal(dict(merged.named_parameters())[name], dict(base.named_parameters())[name])
    dpo.paths.output_dir = str(tmp_path / "dpo")
    run(dpo)
    assert logged(Path(dpo.paths.output_dir), "train/loss_step")[0] == pytest.approx(0.693147, abs=1e-5)


def test_resume_from_checkpoint_continues_the_loss_curve(compose, tmp_path):
    # a constant learning rate: the schedule of a 1-epoch run must not differ from the 2-epoch one
    common = [
        "data.shuffle=false",
        "trainer.max_epochs=2",
        "optim.lr=5e-3",
        "optim.scheduler=constant_with_warmup",
        "optim.warmup_ratio=0",
    ]
    whole = compose(common)
    run(whole)
    first = compose([*common, "trainer.max_epochs=1"])
    first.paths.output_dir = str(tmp_path / "first")
    run(first)
    resumed = compose([*common, f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"])
    resumed.paths.output_dir = str(tmp_path / "resumed")
    run(resumed)
    expected = logged(Path(whole.paths.output_dir), "train/loss_step")
    got = logged(Path(resumed.paths.output_dir), "train/loss_step")
    assert len(expected) == 4 and len(got) == 2
    assert got == pytest.approx(expected[2:], abs=1e-5)


@pytest.mark.parametrize("reference", ["adapter_off", "precomputed"])
def test_a_run_resumed_mid_epoch_continues_batch_for_batch(compose, tmp_path, reference):
    """Resumed from the periodic checkpoint saved after 3 of the 4 batches of epoch 0 (what a kill -9 leaves;
    shuffled data, crop negatives): its losses equal the uninterrupted run's, step for step, and validation
    runs at the same steps."""
    common = [
        "loss=mdpo",
        "negative_sampler=crop",
        f"reference={reference}",
        "data.limit_train=8",
        "trainer.max_epochs=2",
        "optim.lr=5e-3",
        "optim.scheduler=constant_with_warmup",
        "optim.warmup_ratio=0",
    ]
    keep = ["callbacks.model_checkpoint.every_n_train_steps=3", "callbacks.model_checkpoint.save_top_k=-1"]
    whole = compose([*common, *keep])
    run(whole)
    (step_3,) = (Path(whole.paths.output_dir) / "checkpoints").glob("epoch0-step3.ckpt")
    resumed = compose([*common, f"ckpt_path={step_3}"])
    resumed.paths.output_dir = str(tmp_path / "resumed")
    run(resumed)
    expected = logged(Path(whole.paths.output_dir), "train/loss_step")
    got = logged(Path(resumed.paths.output_dir), "train/loss_step")
    assert len(expected) == 8 and len(got) == 5
    assert got == pytest.approx(expected[3:], rel=1e-5)
    steps = {r["step"] for r in metrics_rows(Path(whole.paths.output_dir)) if r.get("val/loss")}
    assert {r["step"] for r in metrics_rows(Path(resumed.paths.output_dir)) if r.get("val/loss")} <= steps


def test_an_extended_run_continues_on_the_schedule_of_its_new_limits(compose, tmp_path):
    """A finished 4-step cosine run resumed with trainer.max_steps=8: its learning rates from step 4 on are
    those of an uninterrupted 8-step run (no warm-up again, and not the finished schedule's 0)."""
    common = [
        "data.limit_train=8",
        "trainer.max_epochs=4",
        "optim.scheduler=cosine",
        "optim.warmup_ratio=0.25",
    ]
    whole = compose([*common, "trainer.max_steps=8"])
    run(whole)
    first = compose([*common, "trainer.max_steps=4"])
    first.paths.output_dir = str(tmp_path / "first")
    run(first)
    extended = compose([*common, "trainer.max_steps=8", f"ckpt_path={tmp_path / 'first'}"])
    extended.paths.output_dir = str(tmp_path / "extended")
    run(extended)
    expected = logged(Path(whole.paths.output_dir), "lr-AdamW")
    assert len(expected) == 8 and expected[4] > 0.5 * max(expected)  # the 8-step schedule is mid-way at 4
    assert logged(tmp_path / "first", "lr-AdamW")[-1] < expected[3]  # the 4-step one was near its end
    assert logged(tmp_path / "extended", "lr-AdamW") == pytest.approx(expected[4:], rel=1e-6)


def wandb_run_ids(run_dir: Path) -> list[str]:
    return [path.name.rsplit("-", 1)[1] for path in (run_dir / "wandb").glob("offline-run-*")]


def test_resume_continues_the_wandb_run_of_the_checkpoint(compose, tmp_path):
    first = compose(["logger=wandb"])
    first.paths.output_dir = str(tmp_path / "first")
    run(first)
    (first_id,) = wandb_run_ids(tmp_path / "first")
    resumed = compose(
        [
            "logger=wandb",
            "trainer.max_epochs=2",
            f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}",
        ]
    )
    resumed.paths.output_dir = str(tmp_path / "resumed")
    run(resumed)
    assert wandb_run_ids(tmp_path / "resumed") == [first_id]
    fresh = compose(["logger=wandb"])
    fresh.paths.output_dir = str(tmp_path / "fresh")
    run(fresh)
    (fresh_id,) = wandb_run_ids(tmp_path / "fresh")  # its own run: the earlier ones were finished
    assert fresh_id != first_id


def test_real_model_path_loads_like_a_downloaded_checkpoint(compose, tmp_path):
    """A tiny model + processor saved in HF layout load through model.path exactly like llava7b would."""
    from mmpo.branches import CHOSEN, REJECTED
    from mmpo.data.collator import PreferenceCollator
    from mmpo.data.examples import Example
    from mmpo.data.records import read_records
    from mmpo.images import load_image
    from mmpo.models.loading import load_model
    from mmpo.models.tiny import build_tiny_llava

    model, processor = build_tiny_llava(seed=3)
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    cfg = compose(
        [
            "model=llava7b",
            f"model.path={tmp_path / 'llava'}",
            "model.dtype=float32",
            "model.gradient_checkpointing=false",
        ]
    )
    policy, loaded_processor, family = load_model(cfg.model)
    assert loaded_processor.chat_template == processor.chat_template
    lora = {n for n, _ in policy.named_modules() if n.endswith("lora_A")}
    assert lora and all("language_model" in n for n in lora)
    assert any("mlp.down_proj" in n for n in lora) and any("self_attn.o_proj" in n for n in lora)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert all("lora_" in n for n in trainable)
    record = read_records(Path(cfg.data.path) / "train.jsonl")[0]
    collator = PreferenceCollator(loaded_processor, family, (CHOSEN, REJECTED))
    batch = collator([Example(record, [load_image(p) for p in record.images], [])])
    with torch.no_grad():
        out = policy(**batch.rows[CHOSEN].model_inputs())
        expected = model(**batch.rows[CHOSEN].model_inputs())
    assert torch.allclose(out.logits, expected.logits, atol=1e-5)  # LoRA B = 0: same function


def stderr_of_every_rank(proc: subprocess.CompletedProcess) -> str:
    """Each rank's traceback (ranks share stderr, so the failing one is rarely the last), then the tail."""
    tracebacks = [part[:3000] for part in proc.stderr.split("Traceback (most recent call last)")[1:]]
    return "\n--- next traceback ---\n".join(tracebacks) + "\n--- stderr tail ---\n" + proc.stderr[-3000:]


@pytest.mark.xdist_group("ddp")  # one DDP job at a time: each runs two processes on the two cores
def test_ddp_cpu_two_processes_log_global_metrics(tmp_path):
    """Two gloo processes: the logged validation log-prob equals the single-process value for the same
    weights (each rank sees half of the validation set, so only a synced metric can match). The shapes
    world does not exist yet: rank 0 generates it while rank 1 waits."""
    out = tmp_path / "ddp"
    common = [
        "logger=csv",
        "callbacks=none",
        "trainer.enable_progress_bar=false",
        f"data.path={tmp_path / 'world'}",
        "data.shapes.num_scenes=40",
        "data.limit_train=8",
        "data.limit_val=8",
        "data.batch_size=2",
        "trainer.max_steps=2",
        "optim.lr=5e-3",
    ]
    proc = train_cli("trainer=ddp_cpu", *common, run_dir=out)
    assert proc.returncode == 0, stderr_of_every_rank(proc)
    key = "val/logps/chosen@original"
    ddp_val = logged(out, key)[-1]
    assert "steps=2" in (out / "summary.txt").read_text()
    check = tmp_path / "single"
    proc = train_cli(*common, "optim.lr=0", "trainer.max_steps=-1", f"model.init_from={out}", run_dir=check)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single_val = logged(check, key)[-1]
    assert ddp_val == pytest.approx(single_val, abs=1e-4)


@pytest.mark.xdist_group("ddp")
@pytest.mark.parametrize("loss", ["dpo", pytest.param("mdpo", marks=pytest.mark.slow)])
def test_ddp_over_two_processes_trains_the_same_weights_as_one_process_with_the_global_batch(tmp_path, loss):
    """2 gloo ranks with 2 records each per step against 1 process with the same 4: the adapters agree
    after 3 steps (gradients average over ranks; the records order is sharded, not re-drawn)."""
    from safetensors.torch import load_file

    common = [
        "model=tiny_llava",
        f"loss={loss}",
        "negative_sampler=crop",
        "logger=csv",
        "callbacks=none",
        "trainer.enable_progress_bar=false",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.shapes.num_scenes=40",
        "data.limit_train=16",
        "data.limit_val=4",
        "trainer.max_steps=3",
        "optim.lr=5e-3",
        "optim.scheduler=constant_with_warmup",
        "optim.warmup_ratio=0",
        "validate_before_training=false",
    ]
    ddp = train_cli("trainer=ddp_cpu", "data.batch_size=2", *common, run_dir=tmp_path / "ddp")
    assert ddp.returncode == 0, stderr_of_every_rank(ddp)
    single = train_cli("data.batch_size=4", *common, run_dir=tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = (load_file(tmp_path / d / "adapter" / "adapter_model.safetensors") for d in ("ddp", "single"))
    assert a.keys() == b.keys() and any(t.abs().sum() > 0 for t in a.values())
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


FSDP2_RUN = [
    "logger=csv",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.limit_train=16",
    "data.limit_val=4",
    "trainer.log_every_n_steps=1",
    "optim.lr=1e-3",
    "optim.scheduler=constant_with_warmup",
    "optim.warmup_ratio=0",
    "validate_before_training=false",
]


@pytest.mark.xdist_group("ddp")
@pytest.mark.parametrize("setting", ["lora", pytest.param("full", marks=pytest.mark.slow)])
def test_fsdp2_over_two_processes_trains_the_same_weights_as_one_process_with_the_global_batch(
    compose, shapes_dir, tmp_path, setting
):
    """trainer=fsdp2_cpu: 2 gloo ranks shard the policy (full fine-tuning: and the frozen copy reference)
    and train on 2 records each per step, 1 process on the same 4. After 3 steps the gradient norm of every
    step (the ranks' gradients are averaged, not summed) and the weights agree, loaded with plain peft or
    transformers from what each run saved.

    lr=1e-3: AdamW divides by sqrt(v) + 1e-8, so the fp32 rounding of a near-zero gradient element (the
    ranks reduce-scatter once per decoder call, summing in another order than one process does) moves its
    weight by up to about lr times its relative error: 4e-6 at most, measured, for weights that move ~3e-3."""
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from mmpo.models.tiny import build_tiny_llava

    setting_overrides = {"lora": [], "full": ["model.lora.enabled=false", "reference=copy"]}[setting]
    common = [*FSDP2_RUN, "trainer.max_steps=3", *setting_overrides]
    fsdp2 = train_cli(
        "trainer=fsdp2_cpu",
        "data.batch_size=2",
        f"data.path={shapes_dir}",
        *common,
        run_dir=tmp_path / "fsdp2",
    )
    assert fsdp2.returncode == 0, stderr_of_every_rank(fsdp2)
    single = compose(["data.batch_size=4", *common], small=False, quiet=False)
    run(single)
    runs = {"fsdp2": tmp_path / "fsdp2", "single": Path(single.paths.output_dir)}
    norms = [logged(runs[d], "train/grad_norm") for d in ("fsdp2", "single")]
    assert len(norms[0]) == 3 and norms[0] == pytest.approx(norms[1], rel=1e-5)

    def weights(run_dir: Path) -> dict[str, torch.Tensor]:
        if setting == "lora":
            model = PeftModel.from_pretrained(build_tiny_llava()[0], run_dir / "adapter")
        else:
            model = LlavaForConditionalGeneration.from_pretrained(run_dir / "model")
        return dict(model.named_parameters())

    a, b = weights(runs["fsdp2"]), weights(runs["single"])
    assert a.keys() == b.keys()
    if setting == "lora":
        assert any(p.abs().max() > 0 for n, p in b.items() if "lora_B" in n)  # B starts at zero
    else:
        start = dict(build_tiny_llava()[0].named_parameters())
        assert any(not torch.equal(p, start[n]) for n, p in b.items())
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_an_fsdp2_run_resumed_mid_epoch_continues_batch_for_batch(tmp_path):
    """ModelParallelStrategy reads the checkpoint after configure_optimizers has built the training loader;
    the run still continues at the batch after the checkpoint's, from its gathered trainable weights and
    optimizer state: the losses from there on and the final adapter equal the uninterrupted run's."""
    from safetensors.torch import load_file

    common = [
        *FSDP2_RUN,
        "model=tiny_llava",
        "data.shapes.num_scenes=40",
        "trainer=fsdp2_cpu",
        "data.batch_size=2",
        "trainer.max_epochs=2",
        f"paths.data_dir={tmp_path / 'data'}",
        "callbacks=default",
    ]
    keep = ["callbacks.model_checkpoint.every_n_train_steps=3", "callbacks.model_checkpoint.save_top_k=-1"]
    whole = train_cli(*common, *keep, run_dir=tmp_path / "whole")
    assert whole.returncode == 0, stderr_of_every_rank(whole)
    step_3 = tmp_path / "whole" / "checkpoints" / "epoch0-step3.ckpt"
    resumed = train_cli(*common, f"ckpt_path={step_3}", run_dir=tmp_path / "resumed")
    assert resumed.returncode == 0, stderr_of_every_rank(resumed)
    expected, got = (logged(tmp_path / d, "train/loss_step") for d in ("whole", "resumed"))
    assert len(expected) == 8 and got == pytest.approx(expected[3:], rel=1e-6)
    a, b = (load_file(tmp_path / d / "adapter" / "adapter_model.safetensors") for d in ("whole", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model", ["tiny_llava", "tiny_qwen2vl"])
def test_mdpo_with_crop_runs_on_both_tiny_models(compose, model):
    cfg = compose([f"model={model}", "loss=mdpo", "negative_sampler=crop"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    assert logged(out, "train/loss_step")[0] == pytest.approx(3 * 0.693147, abs=1e-5)
    for term in ("dpo", "copo", "ancpo"):
        assert logged(out, f"train/loss/{term}_step")[0] == pytest.approx(0.693147, abs=1e-5)
    assert logged(out, "val/rewards/conditional_margin")


def test_dpo_with_a_sampler_reports_image_reliance_on_validation_only(compose):
    cfg = compose(["loss=dpo", "negative_sampler=crop"])
    run(cfg)
    header = metrics_rows(Path(cfg.paths.output_dir))[0].keys()
    assert "val/image_reliance/accuracy" in header and "val/rewards/conditional_margin" in header
    assert not any(k.startswith("train/") and "corrupted" in k for k in header)


def test_no_image_ablation_trains_without_images_and_validates_with_them(compose):
    from mmpo.branches import CHOSEN, REJECTED
    from mmpo.data.datamodule import PreferenceDataModule
    from mmpo.models.families import get_family
    from mmpo.models.tiny import build_tiny_llava

    cfg = compose(["data.image=none"])
    _, processor = build_tiny_llava()
    branches = {"train": [CHOSEN, REJECTED], "val": [CHOSEN, REJECTED]}
    datamodule = PreferenceDataModule(cfg.data, processor, get_family("llava"), branches)
    datamodule.setup()
    train = next(iter(datamodule.train_dataloader()))
    val = next(iter(datamodule.val_dataloader()))
    assert "pixel_values" not in train.rows[CHOSEN].tensors
    assert "pixel_values" in val.rows[CHOSEN].tensors


@pytest.mark.xdist_group("ddp")
def test_ddp_precompute_splits_the_reference_pass_across_ranks(tmp_path):
    """reference=precomputed on two gloo processes: each rank scores half of the records, and the cache
    rank 0 writes holds exactly the entries a single-process pass computes on the same data."""
    world = tmp_path / "world"
    common = [
        "reference=precomputed",
        "logger=csv",
        "callbacks=none",
        "trainer.enable_progress_bar=false",
        f"data.path={world}",
        "data.shapes.num_scenes=40",
        "data.limit_train=8",
        "data.limit_val=8",
        "data.batch_size=2",
        "~negative_sampler@val_negative_sampler",  # DPO's branches only: chosen and rejected
    ]

    def cache_of(*overrides: str, out: Path) -> tuple[dict, subprocess.CompletedProcess]:
        proc = train_cli(*common, *overrides, run_dir=out)
        assert proc.returncode == 0, stderr_of_every_rank(proc)
        (path,) = (world / "reference_cache").glob("*.pt")
        entries = torch.load(path, weights_only=True)["entries"]
        path.unlink()  # the next run computes its own
        return entries, proc

    ddp, proc = cache_of("trainer=ddp_cpu", "trainer.max_steps=2", out=tmp_path / "ddp")
    single, _ = cache_of("trainer.max_steps=1", out=tmp_path / "single")
    for split in ("train", "val"):  # 8 records per split, 4 on each rank
        assert proc.stdout.count(f"scoring 4 {split} records") == 2, proc.stdout[-3000:]
    assert len(single) == 32  # 16 records x (chosen, rejected)
    # same keys, same values up to fp32 rounding (the ranks batch the records differently)
    assert ddp == pytest.approx(single, rel=1.3e-6, abs=1e-5, nan_ok=True)


def test_benchmarks_after_training_write_the_evaluate_results_and_log_them(compose, shapes_dir):
    cfg = compose(
        [
            "benchmark=shapes_pope",
            f"benchmarks.shapes_pope.path={shapes_dir}",
            "benchmarks.shapes_pope.world.num_scenes=40",
            "benchmarks.shapes_pope.limit=6",
        ]
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    document = json.loads((out / "benchmarks" / "shapes_pope.json").read_text())
    assert document["model"]["run"] == str(out) and document["model"]["weights"] == "adapter"
    assert document["num_items"] == 6
    # conf/eval.yaml's report settings apply here too: the page and sheet lie beside the results
    assert (out / "benchmarks" / "shapes_pope.html").read_text().count("<figure") == 6
    assert (out / "benchmarks" / "shapes_pope.png").is_file()
    for key, value in document["metrics"].items():
        assert logged(out, f"benchmark/shapes_pope/{key}") == [pytest.approx(value)]


def test_missing_benchmark_data_stops_the_run_before_training(compose, tmp_path):
    from mmpo.config import ConfigError

    cfg = compose(["benchmark=pope", f"benchmarks.pope.path={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="benchmarks.pope.path"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.parametrize("mode", ["batched", "auto"])
def test_precomputed_reference_gives_zero_rewards_at_step_0_within_fp32_rounding(compose, mode):
    """The cache scores records in other batch compositions than training does; padded kernels round
    differently, so step-0 rewards are zero up to fp32 rounding (the README states the bound)."""
    cfg = compose(["reference=precomputed", f"engine.mode={mode}", "data.batch_size=3", "optim.lr=0"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    for key in ("train/rewards/margins_step", "train/rewards/chosen@original_step", "val/rewards/margins"):
        assert logged(out, key) and all(abs(v) <= 1e-5 for v in logged(out, key)), key
