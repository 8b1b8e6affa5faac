"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the policy and a frozen reference copy, under
Lightning's ``ModelParallelStrategy`` (``trainer=fsdp2`` on GPUs, ``trainer=fsdp2_cpu`` over gloo).

Full sharding (ZeRO-3, Rajbhandari et al. 2020, section 5): each of the N ranks of the ``data_parallel``
mesh keeps 1/N of every weight, gradient and optimizer moment, 16P/N bytes per trained parameter with
AdamW, and a unit all-gathers its weights just before its forward and frees them after it (again in
backward, where its gradients are reduce-scattered). The units, bottom-up:

- every layer class the model names in ``_no_split_modules`` (decoder layers, vision-tower blocks);
- every module the engines call directly rather than through the model's forward
  (:mod:`mmpo.engine.shared_prefix`): the projector and the vision tower (``get_image_features`` runs
  them), the input embeddings and the head (``get_input_embeddings()`` / ``get_output_embeddings()``: one
  unit when their weight is tied) and the decoder (``get_decoder()``: its final norm);
- the root, which holds whatever is left and the FSDP state all units share. FSDP2 makes the first unit
  to run forward the root; the shared-prefix engine never runs the root's forward, so the root is
  initialised here, before any unit runs.

LoRA and full fine-tuning shard alike (a unit may mix frozen and trainable weights; only the trainable
ones get gradients); frozen units (the vision tower and projector under the freeze policy) never
reduce-scatter. ``bf16-mixed`` all-gathers and computes in bf16 and reduces gradients in fp32
(:data:`PRECISIONS`). The frozen reference copy (``reference=copy``) is sharded the same way and only
runs forward under ``no_grad``: FSDP's counterpart of MCM-DPO's ZeRO-3 inference engine for its
reference model. ``reference=adapter_off`` is the policy itself; ``reference=precomputed`` holds no model.

Every rank must call every unit equally often in a step (each call is a collective):
:func:`agreed_count` makes the engine's data-dependent call counts (decoder length buckets, head chunks)
the same on every rank. The vision tower runs once per step on every rank as long as every rank's batch
holds images (records with images, or none at all with ``data.image=none``). The saved weights are gathered in full on rank 0 (:func:`full_state_dict`), so
they load with plain transformers / peft.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

STRATEGY = "lightning.pytorch.strategies.ModelParallelStrategy"
"""The Lightning strategy that calls ``configure_model`` to shard (``trainer.strategy._target_``)."""

PRECISIONS: dict[str, MixedPrecisionPolicy | None] = {
    "32-true": None,
    "bf16-mixed": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32),
}
"""``trainer.precision`` under FSDP2: the mixed-precision policy of every unit (None: the weights' dtype)."""


def sharding_requested(trainer: DictConfig) -> bool:
    strategy = trainer.get("strategy")
    return isinstance(strategy, DictConfig) and strategy.get("_target_") == STRATEGY


def sharding_problems(cfg: DictConfig, shards: bool) -> list[str]:
    """Why the run's ``trainer`` (a ModelParallelStrategy) cannot shard it; ``shards``: whether the module
    kind applies FSDP2 in ``configure_model``. Callbacks that run the policy on the global-zero process
    only (:class:`mmpo.callbacks.periodic.EveryNSteps`) cannot run with a sharded one: its forward needs
    every rank."""
    from hydra.utils import get_class

    from mmpo.callbacks.periodic import EveryNSteps

    trainer = cfg.trainer
    if not sharding_requested(trainer):
        return []
    problems = []
    if not shards:
        problems.append(f"trainer.strategy={STRATEGY} (FSDP2) shards module=preference only")
    if trainer.strategy.get("tensor_parallel_size") != 1:
        problems.append(
            f"trainer.strategy.tensor_parallel_size={trainer.strategy.get('tensor_parallel_size')!r}: mmpo "
            "shards with FSDP2 only; allowed: 1 (and data_parallel_size: the number of processes)"
        )
    if trainer.strategy.get("save_distributed_checkpoint", True):
        problems.append(
            "trainer.strategy.save_distributed_checkpoint must be false: checkpoints/last.ckpt is then one file "
            "(the trainable weights and optimizer state gathered on rank 0) that ckpt_path=<run dir> resumes "
            "from; true writes a directory of per-rank shards, which mmpo does not resume"
        )
    if str(trainer.precision) not in PRECISIONS:
        problems.append(f"trainer.precision={trainer.precision!r} with FSDP2; allowed: {list(PRECISIONS)}")
    generating = [
        f"callbacks.{key}"
        for key, node in (cfg.get("callbacks") or {}).items()
        if isinstance(node, DictConfig)
        and node.get("_target_")
        and issubclass(get_class(node._target_), EveryNSteps)
    ]
    if generating:
        problems.append(
            f"{generating} generate on the global-zero process only, which a sharded policy cannot (every "
            "rank takes part in its forward); drop them (callbacks=default) or use trainer=ddp"
        )
    return problems


def is_sharded(module: nn.Module) -> bool:
    return isinstance(module, FSDPModule)


def shard(model: nn.Module, mesh, precision: str) -> nn.Module:
    """Apply FSDP2 to ``model`` (a peft or HF model) over ``mesh`` in place (module docstring)."""
    from mmpo.models.families import base_model, family_of  # here: the engine imports agreed_count

    options = {"mesh": mesh, "mp_policy": PRECISIONS[precision] or MixedPrecisionPolicy()}
    base, family = base_model(model), family_of(model)
    layer_classes = set(getattr(base, "_no_split_modules", None) or ())
    for module in reversed(list(base.modules())):  # children before their parents
        if type(module).__name__ in layer_classes:
            fully_shard(module, **options)
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    units = [base.get_submodule(family.projector_module), base.get_submodule(family.vision_module)]
    units += [[embeddings, head]] if embeddings.weight is head.weight else [embeddings, head]
    for unit in [*units, model.get_decoder()]:
        fully_shard(unit, **options)
    fully_shard(model, **options)
    model._get_fsdp_state()._lazy_init()  # the root (module docstring); no public call does this yet
    _keep_output_capture(model)
    return model


def _keep_output_capture(model: nn.Module) -> None:
    """``fully_shard`` gives each unit a new class (``FSDP<name>``); transformers finds the outputs a model
    can record (the vision tower's hidden states, which ``get_image_features`` selects) by its class name,
    so each sharded model's new class is registered with what its own class records."""
    from transformers import PreTrainedModel
    from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and is_sharded(module):
            _CAN_RECORD_REGISTRY[module] = module._can_record_outputs


def agreed_count(count: int, module: nn.Module, op: str) -> int:
    """``count`` reduced with ``op`` (``min`` | ``max``) over the ranks when ``module`` is an FSDP2 unit,
    else ``count``: every rank then calls the unit the same number of times."""
    if not is_sharded(module):
        return count
    value = torch.tensor(count, device=next(module.parameters()).device)
    dist.all_reduce(value, op={"min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return int(value)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full weights of a sharded ``model`` on the CPU of global rank 0 (``{}`` on the other ranks; a
    collective: every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_gathered(model: nn.Module, weights: dict[str, torch.Tensor], target) -> None:
    """Write a sharded ``model``'s gathered ``weights`` (:func:`full_state_dict`) at ``target`` as the
    unsharded model would: a peft model its adapter; an HF model through an unsharded twin built on the
    meta device around them (the units' ``FSDP<name>`` classes would otherwise reach ``config.json``'s
    ``architectures`` and the class-name look-ups of transformers' saving)."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(target, state_dict=weights)
        return
    model_class = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("meta"):
        twin = model_class(model.config)
    twin.load_state_dict(weights, assign=True)
    twin.generation_config = model.generation_config
    twin.save_pretrained(target)
