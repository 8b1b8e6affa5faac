"""The embedding module kind (MAPLE) through train.py: a shrunk ``experiment=maple_shapes`` trains on the CPU,
writes the adapter, the retrieval results and the modality-gap plot; the reward cache answers every lookup of
the second epoch; the evaluation handle reloads the adapter and reproduces the trained encoder; start-up
problems are reported before anything loads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from mmpo.config import ConfigError
from mmpo.data import shapes
from mmpo.embedding.embedder import Embedder
from mmpo.modules.embedding import EmbeddingModule, columns
from tests.conftest import train_cli

K = 2
SHRUNK = [
    "experiment=maple_shapes",
    "model.init_from=null",  # tiny random models: the cached SFT base takes minutes to build
    "reward_model.init_from=null",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.shapes.num_scenes=40",
    "data.limit_train=4",
    "data.limit_val=4",
    "data.batch_size=2",
    f"module.candidates.k={K}",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "benchmarks.shapes_retrieval.world.num_scenes=40",
    "benchmarks.shapes_retrieval.limit=6",
]


@pytest.fixture(scope="module")
def maple_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("maple")
    out = tmp / "run"
    proc = train_cli(
        *SHRUNK, f"paths.log_dir={tmp / 'outputs'}", f"paths.data_dir={tmp / 'data'}", run_dir=out
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run: reward tiny_llava_shapes_sft, questions shapes_objects" in proc.stdout + proc.stderr
    return out


def epoch_rows(run: Path, key: str) -> list[float]:
    with open(run / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def test_maple_shapes_trains_on_the_cpu_and_writes_adapter_results_and_gap_plot(maple_run):
    assert (maple_run / "adapter" / "adapter_config.json").is_file()
    assert json.loads((maple_run / "adapter" / "adapter_config.json").read_text())["r"] == 32
    results = json.loads((maple_run / "benchmarks" / "shapes_retrieval.json").read_text())
    assert {"t2i/R@1", "i2t/R@1", "text", "image", "group", "color/text"} <= set(results["metrics"])
    assert results["model"]["weights"] == "adapter"
    assert (maple_run / "modality_gap.png").stat().st_size > 0
    summary = (maple_run / "summary.txt").read_text()
    assert (
        "loss=rpa model=tiny_llava_shapes_sft" in summary and "train/reward_cache/hit_rate=1.0000" in summary
    )
    for key in ("val/gap/W_disc", "val/gap/W_dist", "val/t2i/reward_agreement", "train/loss/rpa_i2t_step"):
        assert epoch_rows(maple_run, key), key
    # the experiment's own benchmark (no benchmark= override above), logged with the run's metrics too
    assert epoch_rows(maple_run, "benchmark/shapes_retrieval/t2i/R@1") == [results["metrics"]["t2i/R@1"]]


def test_the_second_epoch_finds_every_reward_in_the_cache(maple_run):
    """Lookups per anchor: one per object of each text (shapes_objects), for its own pair and k candidates in
    each direction; the one-attribute variants keep the number of objects."""
    anchors = [
        json.loads(line)
        for line in (maple_run.parent / "data" / "shapes" / "candidates_train.jsonl").read_text().splitlines()
    ][:4]
    expected = sum(len(shapes_objects(a["text"])) * 2 * (K + 1) for a in anchors)
    hits, misses = (
        epoch_rows(maple_run, "train/reward_cache/hits"),
        epoch_rows(maple_run, "train/reward_cache/misses"),
    )
    assert misses[0] > 0 and hits[0] + misses[0] == expected
    assert misses[1] == 0 and hits[1] == expected
    assert epoch_rows(maple_run, "train/reward_cache/hit_rate")[1] == 1.0


def shapes_objects(text: str) -> list[str]:
    return [o for o in shapes.all_object_names() if o in text.lower()]


def test_the_evaluation_handle_reloads_the_adapter_and_reproduces_the_trained_encoder(maple_run):
    from mmpo.checkpoint import find_run
    from mmpo.models.loading import load_model

    run = find_run(maple_run)
    encoder = EmbeddingModule.load_for_evaluation(run.config, run, torch.device("cpu"))
    # the trained weights by another road: a fresh LoRA model with the Lightning checkpoint's weights
    policy, processor, _ = load_model(run.config.model)
    trained = Embedder(policy, processor, **run.config.module.embedder)
    state = torch.load(maple_run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    lora = {k.removeprefix("embedder."): v for k, v in state.items() if k.startswith("embedder.")}
    assert lora and all("lora_" in k for k in lora)
    missing, unexpected = trained.load_state_dict(lora, strict=False)
    assert not unexpected and not [k for k in missing if "lora_" in k]
    trained.eval()
    images = [shapes.render(scene, 64) for scene in scenes()]
    texts = [shapes.describe(scene.objects) for scene in scenes()]
    with torch.no_grad():
        for encode in ("encode_images", "encode_texts"):
            inputs = images if encode == "encode_images" else texts
            got, want = getattr(encoder, encode)(inputs), getattr(trained, encode)(inputs)
            assert torch.allclose(got, want, atol=1e-5), encode
    untrained = EmbeddingModule.load_for_evaluation(run.config, None, torch.device("cpu"))
    with torch.no_grad():
        assert not torch.allclose(untrained.encode_texts(texts), encoder.encode_texts(texts), atol=1e-3)


def scenes() -> list[shapes.Scene]:
    import random

    rng = random.Random(7)
    return [shapes.sample_scene(rng, f"t{i}") for i in range(3)]


def test_columns_put_each_anchor_first_and_its_candidates_after_it():
    anchors = torch.tensor([[1.0], [2.0]])
    candidates = torch.tensor([[10.0], [11.0], [20.0]])  # anchor 0: two candidates, anchor 1: one
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert columns(anchors, candidates, mask)[..., 0].tolist() == [[1.0, 10.0, 11.0], [2.0, 20.0, 0.0]]


def problems_of(compose, overrides: list[str]) -> list[str]:
    from mmpo.train import check_run

    with pytest.raises(ConfigError) as error:
        check_run(compose(overrides))
    return error.value.problems


def test_start_up_problems_name_the_key_and_the_allowed_values(compose, tmp_path):
    problems = problems_of(
        compose,
        [
            "loss=rpa",
            "model=tiny_llava_embed",
            "model.attn_implementation=flash_attention_2",
            "model@reward_model=qwen2vl_7b",
            f"reward_model.path={tmp_path / 'nowhere'}",
            "module.directions=[t2i,sideways]",
            "module.scorer.questions=captions",
            "negative_sampler=crop",
        ],
    )
    assert any(
        p.startswith(f"reward_model.path='{tmp_path / 'nowhere'}' is not a model directory") for p in problems
    )
    assert (
        "model.attn_implementation='flash_attention_2' takes no bidirectional 4-D mask; allowed: ['auto', 'sdpa', 'eager']"
        in problems
    )
    assert "module.directions=['t2i', 'sideways']; allowed: a non-empty list of ['t2i', 'i2t']" in problems
    assert "module.scorer.questions='captions'; allowed: ['text', 'shapes_objects']" in problems
    assert (
        "module=embedding takes its negatives from module.candidates; negative_sampler must be none"
        in problems
    )


def test_missing_candidate_files_and_mismatched_kinds_fail_at_start_up(compose, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    (records / "train.jsonl").write_text("")
    (records / "val.jsonl").write_text("")
    problems = problems_of(compose, ["loss=rpa", "data=files", f"data.path={records}"])
    assert [p.split(";")[0] for p in problems] == [
        f"module.candidates.train: '{records / 'candidates_train.jsonl'}' does not exist",
        f"module.candidates.val: '{records / 'candidates_val.jsonl'}' does not exist",
    ]
    assert problems_of(compose, ["loss=dpo", "module=embedding"])[-1] == (
        "loss=dpo trains a 'preference' module; module=embedding cannot"
    )
    assert problems_of(compose, ["loss=rpa", "module=preference"])[-1] == (
        "loss=rpa trains a 'embedding' module; module=preference cannot"
    )


def test_the_paper_experiment_composes_with_its_settings_and_names_what_this_machine_lacks(compose, tmp_path):
    cfg = compose(["experiment=maple_qwen2vl2b"], small=False)
    assert (cfg.model.name, cfg.model.family, cfg.model.lora.r) == ("qwen2vl_2b_embed", "qwen2_vl", 32)
    assert cfg.model.freeze.vision_tower and cfg.model.freeze.projector and cfg.model.gradient_checkpointing
    assert (cfg.reward_model.name, cfg.model.dtype) == ("qwen2vl_7b", "bfloat16")
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.module.embedder.bidirectional) == (8, 96, True)
    assert cfg.get("val_negative_sampler") is None
    problems = problems_of(compose, ["experiment=maple_qwen2vl2b"])
    assert [p.split("=")[0] for p in problems[:2]] == ["model.path", "reward_model.path"]
    assert problems[-1].startswith("trainer.accelerator=gpu but this machine has no CUDA device")


def test_a_step_scores_each_directions_pairs_with_the_reward_model_and_embeds_every_item(tmp_path):
    """t2i: alpha(candidate image, the anchor's caption); i2t: alpha(the anchor's image, candidate text); each
    the reward MLLM's yes/no softmax of that pair alone (AlignmentScorer.alignment); column 0 the anchor's own
    pair; absent candidates masked with reward 0; every embedding the item's own, encoded alone."""
    from PIL import Image

    from mmpo.data.candidate_sets import CandidateBatch
    from mmpo.embedding.objective import MapleLoss
    from mmpo.embedding.questions import QuestionScorer
    from mmpo.embedding.scorer import AlignmentScorer
    from tests.engine.conftest import BUILDERS

    paths = []
    for i, colour in enumerate([(220, 30, 30), (30, 60, 220), (30, 170, 50), (240, 200, 0), (90, 90, 90)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    images = [Image.open(p).convert("RGB") for p in paths]
    captions = ["A red circle.", "A blue square."]
    batch = CandidateBatch(
        ids=["a", "b"],
        images=images[:2],
        image_keys=paths[:2],
        texts=captions,
        candidate_images=[images[2:4], images[4:5]],  # anchor b has one of k = 2
        candidate_image_keys=[paths[2:4], paths[4:5]],
        candidate_texts=[["A green circle.", "A red square."], []],
        k=2,
    )
    policy, processor = BUILDERS["llava"]()
    reward_model, reward_processor = BUILDERS["llava"]()
    scorer = AlignmentScorer(reward_model, reward_processor, batch_size=3)
    embedder = Embedder(policy, processor)
    module = EmbeddingModule(embedder, QuestionScorer(scorer), MapleLoss(), {"lr": 0.0})
    with torch.no_grad():
        image_z, text_z, sets = module.candidate_sets(batch)
        t2i, i2t = sets["image_candidates"], sets["text_candidates"]
        alone = [scorer.alignment([p], [captions[0]]) for p in (paths[0], paths[2], paths[3])]
        assert t2i.rewards[0].tolist() == pytest.approx(torch.cat(alone).tolist(), abs=1e-5)
        alone = [scorer.alignment([p], [captions[1]]) for p in (paths[1], paths[4])]
        assert t2i.rewards[1].tolist() == pytest.approx([*torch.cat(alone).tolist(), 0.0], abs=1e-5)
        texts = [captions[0], "A green circle.", "A red square."]
        assert i2t.rewards[0].tolist() == pytest.approx(
            scorer.alignment([paths[0]] * 3, texts).tolist(), abs=1e-5
        )
        assert i2t.mask.tolist() == [[True, True, True], [True, False, False]]
        assert t2i.mask.tolist() == [[True, True, True], [True, True, False]]
        assert torch.allclose(t2i.embeddings[1, 1], embedder.encode_images([images[4]])[0], atol=1e-5)
        assert torch.allclose(i2t.embeddings[0, 2], embedder.encode_texts(["A red square."])[0], atol=1e-5)
        assert torch.equal(t2i.embeddings[:, 0], image_z) and torch.equal(i2t.embeddings[:, 0], text_z)
        assert not t2i.embeddings[1, 2].any()
