"""TRL's DPO training step on ``scripts/bench_step.py``'s proxy: the peer timed in the same run.

``trl.DPOTrainer`` (trl 1.16, ``pip install -e .[bench]``) is built on the very policy the benchmark times
(the proxy's LoRA from ``attach_lora``, fp32, the policy's own gradient checkpointing, non-reentrant),
with ``beta`` and the sigmoid loss of our DPO, and its step is ``trainer.training_step(model, inputs)``:
TRL's concatenated ``[chosen; rejected]`` forward through its fused LM head (``add_fused_lm_head``), its
reference forward with the adapters disabled, its loss and metrics, then ``accelerator.backward``.

``inputs`` is what TRL's ``DataCollatorForVisionPreference`` returns for the benchmark's records, built
from their chosen and rejected rows (same token ids, same pixels): ``input_ids``, ``attention_mask`` and
``completion_mask`` of the 2B rows (chosen first, padded with TRL's ``pad`` then ``flush_left``; the
proxy's prompts are of one length, so this is the collator's left-padded prompt + right-padded
completion layout) and ``pixel_values`` of every row (the collator repeats each record's image).

Two settings differ from a plain ``DPOTrainer(model=peft_model)``: TRL 1.16 gives a pre-wrapped
``PeftModel`` a frozen copy of its adapter named ``ref`` as the reference; it is deleted, so that TRL
takes its reference with the adapters off (its path for an adapter it creates from ``peft_config``), as
our ``reference=adapter_off`` does. ``current_gradient_accumulation_steps`` is set to 1, the value
``Trainer``'s loop sets for one micro-batch per step (``training_step`` divides the loss by it).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer, models
from transformers import LlavaProcessor, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mmpo.branches import CHOSEN, REJECTED
from mmpo.data.rows import IGNORE_INDEX, PreferenceBatch
from mmpo.engine.forward import branch_logps
from mmpo.losses import DPOLoss
from mmpo.modules.preference import PreferenceModule

INSTALL_HINT = "pip install -e .[bench]"
BRANCH_LOGPS = ("chosen", "rejected", "reference chosen", "reference rejected")
"""The per-branch log-probs :func:`parity` compares, in its tables' order."""


@contextlib.contextmanager
def v6_deprecations_ignored() -> Iterator[None]:
    """TRL 1.16 calls transformers 5's deprecated gradient-checkpointing names (they warn, and work)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".* is deprecated and will be removed in v6", FutureWarning)
        yield


def unavailable() -> str | None:
    """Why TRL's step cannot run here (None when it can)."""
    try:
        import trl  # noqa: F401
    except ImportError as error:
        return f"trl is not importable ({error}); {INSTALL_HINT}"
    return None


def proxy_processor(policy: torch.nn.Module) -> LlavaProcessor:
    """A LLaVA processor whose tokenizer has the proxy's ids (bos, eos, image placeholder, pad): TRL reads
    the pad token from it and writes it into the model config, so it must be the proxy's."""
    config = policy.config
    text = config.get_text_config()
    names = {text.bos_token_id: "<s>", text.eos_token_id: "</s>", config.image_token_index: "<image>"}
    names[text.pad_token_id] = "<pad>"
    vocab = {names.get(i, f"t{i}"): i for i in range(text.vocab_size)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="t0",
    )
    size = config.vision_config.image_size
    images = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
    )


def collated(batch: PreferenceBatch) -> dict[str, torch.Tensor]:
    """TRL's vision-collator output for the batch's chosen and rejected rows (see module docstring)."""
    from trl.trainer.utils import flush_left, pad

    chosen, rejected = batch.rows[CHOSEN].tensors, batch.rows[REJECTED].tensors

    def stacked(key: str, value: int) -> torch.Tensor:
        return torch.cat(tuple(pad([chosen[key], rejected[key]], padding_value=value)))

    attention_mask, input_ids, completion_mask = flush_left(
        stacked("attention_mask", 0),
        stacked("input_ids", batch.pad_token_id),
        (stacked("labels", IGNORE_INDEX) != IGNORE_INDEX).long(),
    )
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": torch.cat([chosen["pixel_values"], rejected["pixel_values"]]),
        "completion_mask": completion_mask,
    }


@dataclass
class TRLStep:
    """One ``DPOTrainer.training_step`` on fixed collated inputs."""

    trainer: Any
    inputs: dict[str, torch.Tensor]

    def run(self) -> torch.Tensor:
        """TRL's step (forward, reference, loss, backward); gradients dropped like bench_step's steps."""
        with v6_deprecations_ignored():
            loss = self.trainer.training_step(self.trainer.model, self.inputs)
        self.trainer.model.zero_grad(set_to_none=True)
        return loss

    def last_logps(self) -> list[float]:
        """TRL's numbers for the last step's batch, in :data:`BRANCH_LOGPS` order: the policy's chosen and
        rejected log-probs as it logged them (batch means), its reference log-probs (``compute_ref_log_probs``,
        batch means)."""
        logged = self.trainer._metrics["train"]
        with torch.no_grad(), v6_deprecations_ignored():
            reference = self.trainer.compute_ref_log_probs(self.trainer.model, self.inputs)
        return [
            logged["logps/chosen"][-1],
            logged["logps/rejected"][-1],
            *(r.mean().item() for r in reference),
        ]


@v6_deprecations_ignored()
def build_trl_step(policy: torch.nn.Module, batch: PreferenceBatch, beta: float, output_dir: str) -> TRLStep:
    """``DPOTrainer`` on ``policy`` (a PeftModel) matched to the benchmark's step (module docstring)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=len(batch),
        beta=beta,
        loss_type=["sigmoid"],
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=policy.get_base_model().is_activation_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        max_length=None,
        report_to="none",
        save_strategy="no",
    )
    # one record in TRL's vision format: the trainer only inspects it (the step gets collated inputs)
    records = Dataset.from_list([{"images": [], "prompt": "", "chosen": "", "rejected": ""}])
    trainer = DPOTrainer(
        model=policy, args=config, train_dataset=records, processing_class=proxy_processor(policy)
    )
    if "ref" in policy.peft_config:
        policy.delete_adapter("ref")
    trainer.current_gradient_accumulation_steps = 1
    return TRLStep(trainer, collated(batch))


@contextlib.contextmanager
def fresh_adapter(policy: torch.nn.Module) -> Iterator[None]:
    """LoRA B = 0, so policy == reference as at the start of training; the adapter is restored on exit."""
    saved = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_B" in n}
    parameters = dict(policy.named_parameters())
    with torch.no_grad():
        for name in saved:
            parameters[name].zero_()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                parameters[name].copy_(value)


@dataclass
class Parity:
    """TRL's step against ours on the same batch."""

    first_losses: tuple[float, float]
    """(TRL, mmpo) loss with LoRA B = 0: both log 2."""
    trl_logps: list[float]
    mmpo_logps: list[float]
    """:data:`BRANCH_LOGPS` with the benchmark's adapter: TRL's, and ours in naive mode (batch means)."""
    losses: tuple[float, float]
    """(TRL, mmpo) loss with the benchmark's adapter."""

    @property
    def max_logp_difference(self) -> float:
        return max(abs(a - b) for a, b in zip(self.trl_logps, self.mmpo_logps, strict=True))


def parity(step: TRLStep, batch: PreferenceBatch) -> Parity:
    """First losses at a fresh adapter, then log-probs and losses with the benchmark's adapter, of TRL's
    step and of our naive-mode DPO step with the adapters-off reference."""
    policy = step.trainer.model
    ours = PreferenceModule(policy, DPOLoss(beta=step.trainer.beta), {"strategy": "adapter_off"}, {}, "naive")

    def our_loss() -> float:
        with torch.no_grad():
            return ours.compute(batch, "train")[0].loss.item()

    with fresh_adapter(policy):
        first_losses = (step.run().item(), our_loss())
    trl_loss = step.run().item()
    with torch.no_grad():
        policy_logps, _ = branch_logps(policy, batch, "naive")
        reference = ours.reference.logps(policy, batch)
    mmpo_logps = [t[b].mean().item() for t in (policy_logps, reference) for b in (CHOSEN, REJECTED)]
    return Parity(first_losses, step.last_logps(), mmpo_logps, (trl_loss, our_loss()))
