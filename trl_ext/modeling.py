"""The models of the session PPO: policy and value as one module, the value head's init, rollout sampling settings,
and loading under DeepSpeed ZeRO-3.

Adapted from trl 0.12.0.dev0 ``trl/trainer/ppo_trainer.py`` as modified by hyc2026/trl (``PolicyAndValueWrapper``,
from MOSS-RLHF).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
from transformers import GenerationConfig
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled


def gathered_params(params, modifier_rank: int | None = None):
    """``deepspeed.zero.GatheredParameters`` when ZeRO-3 partitions the models, else a no-op context.

    Under ``accelerate launch`` with ZeRO-3, ``from_pretrained`` loads inside ``deepspeed.zero.Init``: every
    parameter is an empty shard until gathered. Writes inside the context need ``modifier_rank`` (that rank's values
    are broadcast on exit).
    """
    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(params), modifier_rank=modifier_rank)


@contextmanager
def zero3_init_disabled() -> Iterator[None]:
    """Load models whole even under a ZeRO-3 launch (for models no DeepSpeed engine manages, e.g. a local selector).

    A ZeRO-3 ``TrainingArguments`` makes every later ``from_pretrained`` load inside ``deepspeed.zero.Init``; a model
    that is never passed to ``deepspeed.initialize`` would then keep empty shards and fail at its first forward.
    """
    import transformers.integrations.deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def init_value_head(value_model: nn.Module, std: float, seed: int) -> None:
    """Fresh scalar head ~ N(0, std), bias 0 (released ppo_tldr.py), the same on every process and every stage.

    Under ZeRO-3 the head is partitioned at load time, so it is gathered, initialised on rank 0 and broadcast (an
    init outside the gather would act on an empty shard and do nothing).
    """
    head = [m for m in value_model.score.modules() if isinstance(m, nn.Linear)]
    params = [p for m in head for p in m.parameters()]
    with gathered_params(params, modifier_rank=0):
        torch.manual_seed(seed)
        for m in head:
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def rollout_generation_config(args, tokenizer, max_new_tokens: int) -> GenerationConfig:
    """The complete sampling configuration of a rollout: temperature only, no other logits processor.

    Set as the policy's ``generation_config`` during sampling (not merged with it): transformers fills every unset
    field of a passed config from the model's own, so a checkpoint's ``repetition_penalty``, ``top_k``,
    ``bad_words_ids`` ... would change the behaviour policy while the old log-probs are recomputed without them. With
    this config the sampling distribution is softmax(logits / temperature), exactly the one the trainer's
    ``_response_logprobs`` scores. ``args`` needs ``temperature`` only.
    """
    return GenerationConfig(
        do_sample=True,
        temperature=args.temperature + 1e-7,
        top_k=0,
        top_p=1.0,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        length_penalty=1.0,
        min_length=0,
        num_beams=1,
        num_return_sequences=1,
        renormalize_logits=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


@contextmanager
def generation_config_of(model: nn.Module, config: GenerationConfig) -> Iterator[nn.Module]:
    """Temporarily replace ``model.generation_config`` (restored on exit)."""
    saved = model.generation_config
    model.generation_config = config
    try:
        yield model
    finally:
        model.generation_config = saved


class PolicyAndValueWrapper(nn.Module):
    """Policy and value model as one module, so one ``accelerator.prepare`` (and one ZeRO-3 engine) holds both.

    ``forward`` returns ``(logits (B, L, V), values (B, L))``; the value is the scalar head on the value backbone's
    last hidden state (released ``PolicyAndValueWrapper``, from MOSS-RLHF).
    """

    def __init__(self, policy: nn.Module, value_model: nn.Module):
        super().__init__()
        self.policy = policy
        self.value_model = value_model

    # trl's unwrap_model_for_generation turns gradient checkpointing off for generation and back on after
    @property
    def is_gradient_checkpointing(self) -> bool:
        name = "is_activation_checkpointing" if hasattr(type(self.policy), "is_activation_checkpointing") else None
        return bool(getattr(self.policy, name or "is_gradient_checkpointing", False))

    def gradient_checkpointing_disable(self):
        for m in (self.policy, self.value_model):
            m.gradient_checkpointing_disable()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        for m in (self.policy, self.value_model):
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def values(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        backbone = getattr(self.value_model, self.value_model.base_model_prefix)
        hidden = backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return self.value_model.score(hidden).squeeze(-1)

    def forward(self, input_ids, attention_mask, position_ids):
        logits = self.policy(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).logits
        return logits, self.values(input_ids, attention_mask, position_ids)
