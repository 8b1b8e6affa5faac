"""FSDP2 (:mod:`mmpo.models.sharding`): every unit the engine calls is sharded and the log-probs and
gradients stay those of the unsharded model (both families, a tied head, the root's forward after direct
unit calls); the frozen copy reference shards; gathered weights save as the unsharded model does and load
with plain transformers / peft; a rank with fewer head chunks than another still calls the head as often
(2 real processes); the start-up checks. In-process tests use a 1-rank gloo group: the hooks, classes and
state dicts of FSDP2 are those of N ranks, the collectives trivial."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from torch import distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from mmpo.config import ConfigError
from mmpo.data.records import read_records
from mmpo.engine.cache import weights_digest
from mmpo.engine.forward import branch_logps
from mmpo.models.families import base_model
from mmpo.models.sharding import full_state_dict, is_sharded, save_gathered, shard
from mmpo.models.tiny import build_tiny_llava
from mmpo.train import check_run

from ..engine.conftest import BRANCH_SETS, BUILDERS, Reference, collate, make_policy, mixed_records
from .two_ranks import chunk_unequally

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """A 1-rank gloo process group and its device mesh, for the tests of this module."""
    store = dist.FileStore(str(tmp_path_factory.mktemp("store") / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield init_device_mesh("cpu", (1,))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def records(shapes_dir):
    return read_records(shapes_dir / "train.jsonl")


def whole(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def run(model, batch, mode: str = "shared_prefix") -> tuple[dict, dict]:
    """Log-probs per branch and the gradients of a fixed combination of them."""
    model.zero_grad(set_to_none=True)
    logps, _ = branch_logps(model, batch, mode)
    sum((i + 1) * logps[b].sum() for i, b in enumerate(sorted(logps))).backward()
    grads = {n: whole(p.grad).clone() for n, p in model.named_parameters() if p.grad is not None}
    return {b: v.detach() for b, v in logps.items()}, grads


def assert_same(got, want) -> None:
    (logps, grads), (want_logps, want_grads) = got, want
    assert logps.keys() == want_logps.keys() and grads.keys() == want_grads.keys() and want_grads
    for branch in want_logps:
        torch.testing.assert_close(logps[branch], want_logps[branch], atol=1e-5, rtol=1.3e-6)
    for name, grad in want_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item())


def engine_units(model) -> list[nn.Module]:
    """The modules the shared-prefix engine calls directly, and every decoder layer."""
    base = base_model(model).model
    vision, projector = (
        ("visual", "visual.merger") if hasattr(base, "visual") else ("vision_tower", "multi_modal_projector")
    )
    decoder = model.get_decoder()
    return [
        *decoder.layers,
        decoder,
        model.get_input_embeddings(),
        model.get_output_embeddings(),
        base.get_submodule(vision),
        base.get_submodule(projector),
    ]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_a_sharded_policy_gives_the_log_probs_and_gradients_of_the_unsharded_one(family, records, mesh):
    policy, processor, fam = make_policy(family)
    batch = collate(processor, fam, mixed_records(records, 3), BRANCH_SETS["mdpo"])
    expected = {mode: run(policy, batch, mode) for mode in ("shared_prefix", "batched")}
    sharded = shard(copy.deepcopy(policy), mesh, "32-true")
    assert all(is_sharded(unit) for unit in [*engine_units(sharded), sharded])
    assert all(isinstance(p, DTensor) for p in sharded.parameters())
    assert_same(run(sharded, batch), expected["shared_prefix"])
    # the root's own forward after the units ran alone: the root was initialised first
    assert_same(run(sharded, batch, "batched"), expected["batched"])


def test_a_tied_head_and_input_embedding_are_one_unit_and_train_alike(records, mesh):
    model, processor = BUILDERS["llava"]()
    model.lm_head.weight = model.get_input_embeddings().weight  # full fine-tuning of a tied weight
    model.train()
    family = make_policy("llava", gradient_checkpointing=False)[2]
    batch = collate(processor, family, mixed_records(records, 2), BRANCH_SETS["dpo"])
    expected = run(model, batch)
    sharded = shard(copy.deepcopy(model), mesh, "32-true")
    assert sharded.get_input_embeddings().weight is sharded.get_output_embeddings().weight
    assert is_sharded(sharded.get_input_embeddings()) and is_sharded(sharded.get_output_embeddings())
    assert_same(run(sharded, batch), expected)


def test_the_frozen_copy_reference_is_sharded_and_scores_like_before(records, mesh):
    policy, processor, family = make_policy("llava")
    batch = collate(processor, family, mixed_records(records, 2), BRANCH_SETS["dpo"])
    reference = Reference("copy", policy, "shared_prefix")
    want = reference.logps(policy, batch)
    reference.shard(mesh, "32-true")
    assert is_sharded(reference.frozen) and not is_sharded(policy)
    assert not any(p.requires_grad for p in reference.frozen.parameters())
    got = reference.logps(policy, batch)
    for branch in want:
        torch.testing.assert_close(got[branch], want[branch], atol=1e-5, rtol=1.3e-6)


@pytest.mark.parametrize("lora", [True, False])
def test_gathered_weights_save_what_the_unsharded_model_saves_and_load_with_plain_libraries(
    tmp_path, mesh, lora
):
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    model = make_policy("llava", gradient_checkpointing=False)[0] if lora else build_tiny_llava()[0]
    model.save_pretrained(tmp_path / "plain")
    sharded = shard(copy.deepcopy(model), mesh, "32-true")
    assert weights_digest(sharded) == weights_digest(model)  # reference=precomputed's cache key
    save_gathered(sharded, full_state_dict(sharded), tmp_path / "sharded")
    name = "adapter_model.safetensors" if lora else "model.safetensors"
    plain, saved = (load_file(tmp_path / d / name) for d in ("plain", "sharded"))
    assert plain.keys() == saved.keys() and all(torch.equal(plain[k], saved[k]) for k in plain)
    if lora:
        loaded = PeftModel.from_pretrained(build_tiny_llava()[0], tmp_path / "sharded")
    else:
        assert (tmp_path / "sharded" / "config.json").read_text() == (
            tmp_path / "plain" / "config.json"
        ).read_text()
        loaded = LlavaForConditionalGeneration.from_pretrained(tmp_path / "sharded")
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_ranks_with_unequal_responses_call_the_sharded_head_equally_often(tmp_path):
    """Rank 0 scores 5 response tokens, rank 1 one, with the sharded head 2 rows at a time: rank 1 calls
    the head 3 times too (twice on nothing); otherwise the all-gathers of the ranks would not pair up."""
    torch.multiprocessing.spawn(chunk_unequally, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank, chunks in ((0, [2, 2, 1]), (1, [1, 0, 0])):
        result = torch.load(tmp_path / f"{rank}.pt")
        assert result["calls"][:3] == chunks  # forward; the backward recomputes each chunk
        torch.testing.assert_close(result["logps"], result["expected"])
        torch.testing.assert_close(result["grad"], result["expected_grad"])


def test_the_fsdp2_trainers_compose_with_a_data_parallel_mesh_of_every_process(compose):
    cpu = compose(["trainer=fsdp2_cpu"])
    check_run(cpu)
    assert cpu.trainer.strategy.data_parallel_size == 2
    gpu = compose(["trainer=fsdp2", "trainer.devices=4", "trainer.num_nodes=2"])
    assert gpu.trainer.strategy.data_parallel_size == 8 and gpu.trainer.strategy.tensor_parallel_size == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=rpa"], "shards module=preference only"),
        (["callbacks=log_generations"], r"\['callbacks.log_generations'\] generate on the global-zero"),
        (["trainer.precision=16-mixed"], r"allowed: \['32-true', 'bf16-mixed'\]"),
        (["trainer.strategy.tensor_parallel_size=2"], "tensor_parallel_size=2: mmpo shards with FSDP2 only"),
        (["trainer.strategy.save_distributed_checkpoint=true"], "save_distributed_checkpoint must be false"),
    ],
)
def test_what_fsdp2_cannot_run_fails_at_start_up(compose, overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_run(compose(["trainer=fsdp2_cpu", *overrides]))
