"""SessionPPOTrainer: session-level multi-round PPO for the Crawler (paper §3.2, DESIGN §1.3).

Adapted from trl 0.12.0.dev0 ``trl/trainer/ppo_trainer.py`` as modified by hyc2026/trl (the released PaSa trainer):
the same policy+value wrapper prepared as one model, frozen reference, rollout inside
``unwrap_model_for_generation``, clipped policy and value losses, value-only warm-up, policy-only checkpoints. What
changed: the batch shape is whatever the environment returns (the released code hard-coded 4 search and 6 expand
sessions), rewards are placed from character spans (``trl_ext.rewards``), GAE runs over explicit masks, the paper
search is an injected ``PaperSearchEnv``, and resume restores the value model and optimizer too. The released
variants a config asks for (``trl_ext.released``) are chosen once, in ``__init__``.

``train()`` reads as one PPO update per iteration: 1. rollout sessions, 2. policy/reference/value scores,
3. rewards, 4. returns and advantages, 5. PPO epochs, 6. log.
"""

from __future__ import annotations

import logging
import math
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
from accelerate import Accelerator
from transformers import Trainer, get_scheduler
from transformers.integrations import get_reporting_integration_callbacks
from transformers.integrations.deepspeed import propagate_args_to_deepspeed
from transformers.trainer import DEFAULT_CALLBACKS, DEFAULT_PROGRESS_CALLBACK
from transformers.trainer_callback import CallbackHandler, PrinterCallback, TrainerControl, TrainerState
from transformers.trainer_utils import get_last_checkpoint
from trl.models.utils import prepare_deepspeed, unwrap_model_for_generation
from trl.trainer.utils import disable_dropout_in_model, selective_log_softmax

from trl_ext import released
from trl_ext import rewards as R
from trl_ext.config import SessionPPOConfig
from trl_ext.env import Episode, PaperSearchEnv, Session
from trl_ext.modeling import (
    PolicyAndValueWrapper,
    generation_config_of,
    rollout_generation_config,
    zero3_init_disabled,
)
from trl_ext.rollout import (
    RolloutBatch,
    action_mask_only,
    new_tokens_only,
    rewards_on_char_offsets,
    session_prompts,
)

logger = logging.getLogger(__name__)

TRAIN_STATE_DIR = "train_state"  # inside a checkpoint: accelerate state (policy + value + optimizer) for resume


class SessionPPOTrainer(Trainer):
    """PPO over crawler sessions.

    Args:
        args: ``SessionPPOConfig``.
        processing_class: the crawler tokenizer (chat template, pad token).
        policy: the SFT crawler (``AutoModelForCausalLM``), trained.
        ref_policy: a second copy of the SFT crawler, frozen.
        value_model: ``AutoModelForSequenceClassification`` (num_labels=1) from the SFT crawler.
        train_dataset: sequence of ``Episode``-like dicts ``{"question", "answer": [titles], "end_date"}``.
        env: the ``PaperSearchEnv`` (paper source + selector).

    ``generate_replies`` samples the crawler's replies; a subclass may override it to script them.
    """

    _tag_names = ["trl_ext", "session-ppo", "pasa"]

    def __init__(
        self,
        args: SessionPPOConfig,
        processing_class,
        policy: nn.Module,
        ref_policy: nn.Module,
        value_model: nn.Module,
        train_dataset: Sequence[dict],
        env: PaperSearchEnv,
        callbacks=None,
    ):
        if ref_policy is policy:
            raise ValueError("policy and ref_policy must be different objects (pass a second copy of the SFT model)")
        if len(train_dataset) == 0:
            raise ValueError("train_dataset is empty")
        if processing_class.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token")
        self.args = args
        self.processing_class = processing_class
        self.train_dataset = train_dataset
        self.env = env
        # the released variants, chosen once (trl_ext/released.py)
        self.prompts = session_prompts(processing_class, args)
        self.value_mask = released.value_mask_after_eos if args.bootstrap_after_eos else action_mask_only
        self.place_rewards = released.rewards_on_bracket_ids if args.reward_on_bracket_ids else rewards_on_char_offsets
        self.reply_budget = released.budget_including_prompt if args.response_length_is_total else new_tokens_only

        self._init_accelerator()
        self.model = self._init_models(policy, ref_policy, value_model)
        self._init_optimizer()
        torch.manual_seed(args.seed)
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.accelerator.register_for_checkpointing(self.lr_scheduler)
        torch.manual_seed(self.local_seed)
        if self.is_deepspeed_enabled:
            self.ref_policy = prepare_deepspeed(ref_policy, self.accelerator)
            self.deepspeed = self.model_wrapped = self.model
        else:
            self.ref_policy = ref_policy.to(self.accelerator.device)
            self.model_wrapped = self.model
        self._init_callbacks(callbacks)
        if args.should_save:
            os.makedirs(args.output_dir, exist_ok=True)

    def _init_accelerator(self) -> None:
        """The accelerator and the batch sizes: an update is ``local_queries_per_update`` user queries per process.

        Under ``accelerate launch`` with a DeepSpeed config, TrainingArguments built the DeepSpeed plugin (and, for
        ZeRO-3, made from_pretrained load partitioned); the accelerator must use that plugin, as transformers'
        Trainer does, and DeepSpeed's micro-batch / accumulation / clipping come from these arguments.
        """
        args = self.args
        plugin = getattr(args, "deepspeed_plugin", None)
        self.accelerator = accelerator = Accelerator(
            cpu=args.use_cpu and plugin is None,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision="bf16" if args.bf16 else ("fp16" if args.fp16 else None),
            deepspeed_plugin=plugin,
        )
        self.is_deepspeed_enabled = getattr(accelerator.state, "deepspeed_plugin", None) is not None
        self.zero_stage = accelerator.state.deepspeed_plugin.zero_stage if self.is_deepspeed_enabled else 0
        if self.is_deepspeed_enabled:
            propagate_args_to_deepspeed(accelerator, args)
        self.is_fsdp_enabled = False
        self.world_size = accelerator.num_processes
        self.episodes_per_update = args.local_queries_per_update * self.world_size
        self.num_updates = max(1, math.ceil(args.total_episodes / self.episodes_per_update))
        if args.max_steps and args.max_steps > 0:
            self.num_updates = min(self.num_updates, args.max_steps)
        self.local_seed = args.seed + accelerator.process_index * 100003  # released: one sampling stream per rank

    def _init_models(self, policy: nn.Module, ref_policy: nn.Module, value_model: nn.Module) -> PolicyAndValueWrapper:
        """No dropout, gradient checkpointing if asked, a frozen reference, one wrapper for policy + value."""
        args, tokenizer = self.args, self.processing_class
        policy.generation_config.eos_token_id = tokenizer.eos_token_id
        policy.generation_config.pad_token_id = tokenizer.pad_token_id
        for module in (policy, ref_policy, value_model):
            disable_dropout_in_model(module)
        if args.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
            value_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
        ref_policy.requires_grad_(False).eval()
        model = PolicyAndValueWrapper(policy, value_model)
        model.config = policy.config
        return model

    def _init_optimizer(self) -> None:
        """AdamW over policy + value parameters and a scheduler stepped once per update (released).

        With ZeRO optimizer offload on GPUs, DeepSpeed's CPU Adam (same AdamW math, vectorised on the host); on
        CPU-only runs torch's AdamW, which DeepSpeed accepts once told not to force its own.
        """
        args, accelerator = self.args, self.accelerator
        offload = self.is_deepspeed_enabled and self._offload_device("offload_optimizer") not in (None, "none")
        optimizer_cls = torch.optim.AdamW
        if offload and accelerator.device.type != "cpu":
            from deepspeed.ops.adam import DeepSpeedCPUAdam as optimizer_cls  # noqa: N813
        elif offload:
            accelerator.state.deepspeed_plugin.deepspeed_config["zero_force_ds_cpu_optimizer"] = False
        self.optimizer = optimizer_cls(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
        )
        self.lr_scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer=self.optimizer,
            num_warmup_steps=args.get_warmup_steps(self.num_updates),
            num_training_steps=self.num_updates,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )

    def _init_callbacks(self, callbacks) -> None:
        """The Trainer bookkeeping that ``self.log`` and the callbacks use."""
        args, accelerator = self.args, self.accelerator
        callbacks = DEFAULT_CALLBACKS + get_reporting_integration_callbacks(args.report_to) + list(callbacks or [])
        self.callback_handler = CallbackHandler(
            callbacks, self.model, self.processing_class, self.optimizer, self.lr_scheduler
        )
        self.callback_handler.add_callback(PrinterCallback if args.disable_tqdm else DEFAULT_PROGRESS_CALLBACK)
        self.control = TrainerControl()
        self.state = TrainerState(
            is_local_process_zero=accelerator.is_local_main_process,
            is_world_process_zero=accelerator.is_main_process,
        )
        self.hp_search_backend = None
        self.current_flos = 0
        self._times: dict[str, float] = {}  # seconds per part of the current update (time/* metrics)

    def _offload_device(self, key: str) -> str | None:
        """``zero_optimization.<key>.device`` of the DeepSpeed config (``offload_optimizer`` / ``offload_param``)."""
        zero = self.accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {})
        return (zero.get(key) or {}).get("device")

    # -- training ---------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | None = None):
        """Run the PPO updates (from a checkpoint's next update when resuming); returns the last update's metrics."""
        args, accelerator = self.args, self.accelerator
        start_update = self._resume(resume_from_checkpoint or args.resume_from_checkpoint)
        self.state.max_steps = self.num_updates
        self.state.logging_steps = args.logging_steps
        self.state.save_steps = args.save_steps
        self.state.num_train_epochs = args.total_episodes / len(self.train_dataset)
        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        start_time = time.time()
        metrics: dict[str, float] = {}

        for update in range(start_update, self.num_updates + 1):
            self._times, update_start = {}, time.perf_counter()
            episodes = self._episodes_for_update(update)
            self.model.eval()
            with unwrap_model_for_generation(self.model, accelerator) as unwrapped, zero3_init_disabled():
                # 1. rollout sessions: round by round, the crawler replies and the environment runs its actions,
                # scores the new papers with the Selector and values the sessions they open
                batch = self._rollout(unwrapped, episodes, update)
                # 2. scores of every reply token: policy log-probs and values (gathered weights: local forwards),
                # then the frozen reference's log-probs
                with self._timed("rollout_forward"):
                    batch.logprobs, batch.values = self._policy_scores(unwrapped, batch)
            with self._timed("ref_forward"):
                batch.ref_logprobs = self._reference_logprobs(batch)
            mask = batch.action_mask
            batch.values = batch.values.masked_fill(~self.value_mask(mask), 0.0)
            # 3. rewards: each action's reward on its token, the stop bonus on the stop tag's, minus the KL penalty
            batch.scores = torch.stack(
                [
                    self.place_rewards(self.processing_class, row[m].tolist(), outcome, batch.width)
                    for row, m, outcome in zip(batch.responses, mask, batch.outcomes, strict=True)
                ]
            )
            batch.rewards = R.token_rewards(batch.scores, batch.logprobs, batch.ref_logprobs, args.kl_coef, mask)
            # 4. returns and advantages: GAE over the generated tokens
            vmask = self.value_mask(mask)
            batch.advantages, batch.returns = R.masked_gae(batch.rewards, batch.values, vmask, args.gamma, args.lam)
            batch.advantages = batch.advantages.masked_fill(~mask, 0.0)
            spread = self._global_mean_std({"val/returns": batch.returns, "val/advantages": batch.advantages}, mask)
            if args.whiten_advantages:
                batch.advantages = R.masked_whiten(batch.advantages, mask)
            # 5. PPO epochs (value loss only during the warm-up)
            with self._timed("ppo_epochs"):
                stats = self._ppo_epochs(batch, policy_on=update > args.value_warmup_updates)
            stats.update(spread)
            # 6. log, schedule, save
            self.lr_scheduler.step()
            self.state.global_step = update
            self.state.episode = update * self.episodes_per_update
            self.state.epoch = self.state.episode / len(self.train_dataset)
            self._times["update"] = time.perf_counter() - update_start
            metrics = self._metrics(batch, episodes, stats, start_time, update, start_update)
            if args.logging_steps and (update % int(args.logging_steps) == 0 or update == self.num_updates):
                self.log(metrics)
            self.control = self.callback_handler.on_step_end(args, self.state, self.control)
            if args.save_steps and update % int(args.save_steps) == 0 and update != self.num_updates:
                self._save_checkpoint()
        if self.state.global_step < start_update:  # nothing left to train
            return metrics
        self._save_checkpoint()
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        return metrics

    def _resume(self, resume: str | None) -> int:
        """Restore the accelerate state and trainer state of a checkpoint (``"last"``: the newest in output_dir);
        returns the first update to run."""
        if not resume:
            return 1
        if resume == "last":
            resume = get_last_checkpoint(self.args.output_dir)
            if resume is None:
                raise ValueError(f"no checkpoint to resume from in {self.args.output_dir!r}")
        self.accelerator.load_state(os.path.join(resume, TRAIN_STATE_DIR))
        self.state = TrainerState.load_from_json(os.path.join(resume, "trainer_state.json"))
        self.accelerator.print(f"resumed from {resume} at update {self.state.global_step + 1}")
        return self.state.global_step + 1

    # -- data -------------------------------------------------------------------------------------------------------
    def _episodes_for_update(self, update: int) -> list[Episode]:
        """This process's user queries for an update: a seeded permutation per pass over the data (resumable)."""
        n = len(self.train_dataset)
        start = (update - 1) * self.episodes_per_update
        local = self.args.local_queries_per_update
        first = start + self.accelerator.process_index * local
        episodes = []
        self._episode_index = {}
        for k in range(first, first + local):
            perm = np.random.default_rng(self.args.seed + k // n).permutation(n)
            r = self.train_dataset[int(perm[k % n])]
            episodes.append(Episode.from_titles(r["question"], r.get("answer", []), r.get("end_date")))
            self._episode_index[id(episodes[-1])] = k
        return episodes

    # -- tensors ----------------------------------------------------------------------------------------------------
    def _left_pad(self, seqs: list[list[int]] | list[torch.Tensor]):
        pad = self.processing_class.pad_token_id
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if len(s):
                ids[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
                mask[i, width - len(s) :] = 1
        dev = self.accelerator.device
        return ids.to(dev), mask.to(dev)

    def _batch_inputs(self, batch: RolloutBatch, idx: Sequence[int]):
        """Left-padded prompts + right-padded replies of the sessions ``idx``; returns inputs and the prompt width."""
        prompt_ids, prompt_mask = self._left_pad([batch.prompt_ids[i] for i in idx])
        responses = batch.responses[list(idx)].to(self.accelerator.device)
        response_mask = batch.action_mask[list(idx)].to(self.accelerator.device).long()
        input_ids = torch.cat([prompt_ids, responses], 1)
        attention_mask = torch.cat([prompt_mask, response_mask], 1)
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
        input_ids = input_ids.masked_fill(attention_mask == 0, self.processing_class.pad_token_id)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
        }, prompt_ids.shape[1]

    def _response_logprobs(self, logits: torch.Tensor, responses: torch.Tensor, context: int) -> torch.Tensor:
        """log π(y_t) of the reply tokens at the sampling temperature; logits (B, L, V) -> (B, T)."""
        t = responses.shape[1]
        logits = logits[:, context - 1 : context - 1 + t].float() / (self.args.temperature + 1e-7)
        return selective_log_softmax(logits, responses)

    # -- rollout ----------------------------------------------------------------------------------------------------
    def _sampling_seed(self, session: Session, update: int, round_index: int) -> int:
        """Seed of the generate call that starts with ``session``: from the run seed, the update, the round, the
        global index of the session's user query and its prompt, so a rollout does not depend on how the queries
        are split over processes (with ``local_rollout_forward_batch_size=1``) nor on where a run was resumed."""
        k = getattr(self, "_episode_index", {}).get(id(session.episode), -1)
        key = f"{self.args.seed}|{update}|{round_index}|{k}|{session.prompt}"
        return zlib.crc32(key.encode("utf-8"))

    @torch.no_grad()
    def generate_replies(
        self, unwrapped, sessions: list[Session], update: int = 0, round_index: int = 0
    ) -> tuple[list[list[int]], list[list[int]], list[str]]:
        """Sample one reply per session; returns prompt ids, reply ids (through EOS) and decoded replies.

        ``unwrapped`` holds full weights (gathered under ZeRO-3), so calls are local: processes may make
        different numbers of them.
        """
        args, tok = self.args, self.processing_class
        prompts, replies, texts = [], [], []
        bs = args.local_rollout_forward_batch_size
        for i in range(0, len(sessions), bs):
            chunk = [self.prompts.prompt_ids(s) for s in sessions[i : i + bs]]
            ids, mask = self._left_pad(chunk)
            torch.manual_seed(self._sampling_seed(sessions[i], update, round_index))
            config = rollout_generation_config(args, tok, self.reply_budget(args.response_length, ids.shape[1]))
            with generation_config_of(unwrapped.policy, config) as policy:
                out = policy.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            for p, row in zip(chunk, out[:, ids.shape[1] :].tolist(), strict=True):
                if tok.eos_token_id in row:
                    row = row[: row.index(tok.eos_token_id) + 1]
                prompts.append(p)
                replies.append(row)
                texts.append(tok.decode(row, skip_special_tokens=True))
        return prompts, replies, texts

    @torch.no_grad()
    def _session_values(self, unwrapped, sessions: list[Session]) -> list[float]:
        """V of each expand session: the value head at the ``[`` opening the reply (released ``call_vm``)."""
        out: list[float] = []
        bs = self.args.local_rollout_forward_batch_size
        with self._timed("value_bootstrap"):
            for i in range(0, len(sessions), bs):
                seqs, reads = zip(*(self.prompts.value_ids(s) for s in sessions[i : i + bs]), strict=True)
                ids, mask = self._left_pad(list(seqs))
                pos = (mask.cumsum(1) - 1).clamp(min=0)
                values = unwrapped.values(ids, mask, pos)
                out.extend(values[:, reads[0]].float().cpu().tolist())  # one read index for the whole run
        return out

    @torch.no_grad()
    def _rollout(self, unwrapped, episodes: list[Episode], update: int) -> RolloutBatch:
        """``rounds`` rounds of sessions: the search session of each episode, then the expand sessions the
        environment opens; returns the padded batch with each session's priced outcome.

        Runs inside ``unwrap_model_for_generation``, which under ZeRO-3 gathers the whole policy+value wrapper once
        (one collective on entry and exit; local forwards in between). Only submodules are called
        (``unwrapped.policy``, ``unwrapped.values``): the wrapper itself keeps DeepSpeed's start-of-forward hook, a
        collective, and HF ``generate`` is told it is not partitioned (no ``synced_gpus``: the policy and a local
        selector generate on their own).
        """
        prompts, replies, kinds, rounds, outcomes = [], [], [], [], []
        sessions = [self.env.search_session(e) for e in episodes]
        for r in range(self.args.rounds):
            if not sessions:
                break
            with self._timed("generate"):
                p, rep, texts = self.generate_replies(unwrapped, sessions, update, r)
            with self._timed("env"):  # search, selector and the value bootstrap (timed on its own too)
                outs, next_sessions = self.env.step(sessions, texts, lambda s: self._session_values(unwrapped, s))
            prompts += p
            replies += rep
            kinds += [s.kind for s in sessions]
            rounds += [r] * len(sessions)
            outcomes += outs
            sessions = next_sessions
        width = max(1, max(len(x) for x in replies))
        responses = torch.full((len(replies), width), self.processing_class.pad_token_id, dtype=torch.long)
        action_mask = torch.zeros((len(replies), width), dtype=torch.bool)
        for i, row in enumerate(replies):
            responses[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            action_mask[i, : len(row)] = True
        return RolloutBatch(
            [torch.as_tensor(p) for p in prompts], responses, action_mask, kinds, rounds, outcomes=outcomes
        )

    @torch.no_grad()
    def _policy_scores(self, unwrapped, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """log π_old and V of every reply token, (N, T) each, 0 after the reply (local forwards, gathered weights)."""
        logprobs, values = [], []
        n, bs = len(batch), self.args.local_rollout_forward_batch_size
        for i in range(0, n, bs):
            idx = list(range(i, min(n, i + bs)))
            inputs, context = self._batch_inputs(batch, idx)
            logits = unwrapped.policy(**inputs, use_cache=False).logits
            vals = unwrapped.values(**inputs)
            logprobs.append(self._response_logprobs(logits, batch.responses[idx].to(logits.device), context).cpu())
            values.append(vals[:, context - 1 : context - 1 + batch.width].float().cpu())
        return torch.cat(logprobs).masked_fill(~batch.action_mask, 0.0), torch.cat(values)

    @torch.no_grad()
    def _reference_logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        """log π_sft of every reply token, (N, T). Under ZeRO-3 the reference is sharded, so its forwards are
        collective: every process runs the same number (a process with fewer chunks repeats its first)."""
        n, bs = len(batch), self.args.local_rollout_forward_batch_size
        chunks = math.ceil(n / bs)
        ref_logprobs = []
        for c in range(self._same_count_on_all_ranks(chunks)):
            idx = list(range(c * bs, min(n, c * bs + bs))) if c < chunks else list(range(min(n, bs)))
            inputs, context = self._batch_inputs(batch, idx)
            logits = self.ref_policy(**inputs, use_cache=False).logits
            if c < chunks:
                ref_logprobs.append(
                    self._response_logprobs(logits, batch.responses[idx].to(logits.device), context).cpu()
                )
        return torch.cat(ref_logprobs).masked_fill(~batch.action_mask, 0.0)

    def _global_mean_std(self, tensors: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, float]:
        """``<name>_mean`` / ``<name>_std`` of each (N, T) tensor over the generated tokens of all processes."""
        m = mask.double()
        sums = [m.sum()]
        for x in tensors.values():
            sums += [(x.double() * m).sum(), (x.double() ** 2 * m).sum()]
        totals = self.accelerator.reduce(torch.stack(sums).to(self.accelerator.device), "sum").cpu()
        n = max(totals[0].item(), 1.0)
        out = {}
        for i, name in enumerate(tensors):
            mean = totals[1 + 2 * i].item() / n
            out[f"{name}_mean"] = mean
            out[f"{name}_std"] = max(totals[2 + 2 * i].item() / n - mean**2, 0.0) ** 0.5
        return out

    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        """Add the wall time of the block to this update's ``time/<key>`` (seconds)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._times[key] = self._times.get(key, 0.0) + time.perf_counter() - t0

    def _same_count_on_all_ranks(self, n: int) -> int:
        """Max of ``n`` over processes: ZeRO-3 forwards gather shards, so every rank must run as many."""
        if self.world_size == 1:
            return n
        t = torch.tensor([n], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max().item())

    def _ppo_epochs(self, batch: RolloutBatch, policy_on: bool) -> dict[str, float]:
        """Step 5: ``num_ppo_epochs`` shuffled passes in micro-batches of ``per_device_train_batch_size`` sessions.

        Every rank runs the same number of micro-batches (a multiple of ``gradient_accumulation_steps``): ranks with
        fewer sessions repeat one with zero loss weight, so collective ops (DDP, ZeRO-3) stay in step.
        """
        args, accelerator = self.args, self.accelerator
        mbs = args.per_device_train_batch_size
        n = len(batch)
        own = math.ceil(n / mbs)
        ga = args.gradient_accumulation_steps
        total = self._same_count_on_all_ranks(own)
        total = math.ceil(total / ga) * ga
        pg_coef = 1.0 if policy_on else 0.0
        sums: dict[str, float] = {}
        count = 0
        self.model.train()
        for _ in range(args.num_ppo_epochs):
            order = np.random.permutation(n)
            for m in range(total):
                weight = 1.0 if m < own else 0.0
                idx = order[m * mbs : (m + 1) * mbs] if m < own else order[:mbs]
                idx = [int(i) for i in idx]
                with accelerator.accumulate(self.model):
                    t0 = time.perf_counter()
                    inputs, context = self._batch_inputs(batch, idx)
                    width = batch.responses.shape[1]
                    logits, vpred = self.model(**inputs)
                    dev = logits.device
                    mb_mask = batch.action_mask[idx].to(dev)
                    new_logprobs = self._response_logprobs(logits, batch.responses[idx].to(dev), context)
                    vpred = vpred[:, context - 1 : context - 1 + width].float()
                    pg_loss, pg_stats = R.ppo_policy_loss(
                        new_logprobs,
                        batch.logprobs[idx].to(dev),
                        batch.advantages[idx].to(dev),
                        mb_mask,
                        args.cliprange,
                    )
                    vf_loss, vf_stats = R.ppo_value_loss(
                        vpred,
                        batch.values[idx].to(dev),
                        batch.returns[idx].to(dev),
                        self.value_mask(mb_mask),
                        args.cliprange_value,
                    )
                    loss = weight * (pg_coef * pg_loss + args.vf_coef * vf_loss)
                    t1 = time.perf_counter()
                    # under DeepSpeed, backward also runs the optimizer step at accumulation boundaries
                    accelerator.backward(loss)
                    t2 = time.perf_counter()
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                    t3 = time.perf_counter()
                    for key, dt in (("train_forward", t1 - t0), ("train_backward", t2 - t1), ("optimizer", t3 - t2)):
                        self._times[key] = self._times.get(key, 0.0) + dt
                if weight:
                    count += 1
                    for k, v in {
                        "policy/approx_kl": pg_stats["approx_kl"],
                        "policy/clipfrac": pg_stats["clipfrac"],
                        "policy/ratio": pg_stats["ratio"],
                        "loss/policy": pg_loss.detach(),
                        "loss/value": vf_loss.detach(),
                        "val/clipfrac": vf_stats["clipfrac"],
                    }.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / max(count, 1) for k, v in sums.items()}

    def _metrics(self, batch, episodes, stats, start_time, update, start_update) -> dict[str, float]:
        """Step 6: update metrics averaged over processes (sessions weighted by their count)."""
        mask = batch.action_mask
        kl = (batch.logprobs - batch.ref_logprobs).masked_fill(~mask, 0)
        outs = batch.outcomes
        found = sum(len(e.answers & e.seen) for e in episodes)
        n_answers = sum(len(e.answers) for e in episodes)
        local = {
            # per-session sums (divided by the session count below)
            "objective/kl": kl.sum(1).sum().item(),
            "objective/entropy": (-batch.logprobs).sum(1).sum().item(),
            "objective/non_score_reward": (-self.args.kl_coef * kl).sum(1).sum().item(),
            "objective/scores": batch.scores.sum(1).sum().item(),
            "env/reward_per_session": sum(o.total_reward for o in outs),
            "env/actions": sum(len(o.actions) for o in outs),
            "env/failed_calls": sum(sum(o.failures.values()) for o in outs),
            "env/stops": sum(o.stop_char is not None for o in outs),
            "env/new_papers": sum(len(a.new_papers) for o in outs for a in o.actions),
            "env/relevant_papers": sum(a.n_relevant for o in outs for a in o.actions),
            "env/reply_tokens": mask.sum().item(),
            "env/expand_sessions": sum(k == "expand" for k in batch.kinds),
        }
        keys = list(local)
        totals = torch.tensor([local[k] for k in keys] + [len(batch), found, n_answers], dtype=torch.float64)
        totals = self.accelerator.reduce(totals.to(self.accelerator.device), "sum").cpu()
        sessions = max(totals[-3].item(), 1.0)
        metrics = {k: totals[i].item() / sessions for i, k in enumerate(keys)}
        metrics["env/expand_sessions"] *= sessions / self.world_size  # per process, not per session
        per_round = torch.tensor([batch.round_index.count(r) for r in range(self.args.rounds)], dtype=torch.float64)
        per_round = self.accelerator.reduce(per_round.to(self.accelerator.device), "sum").cpu() / self.world_size
        metrics.update({f"env/sessions_round_{r}": per_round[r].item() for r in range(self.args.rounds)})
        metrics["objective/rlhf_reward"] = metrics["objective/scores"] + metrics["objective/non_score_reward"]
        metrics["env/sessions"] = sessions / self.world_size
        # sessions of the busiest and the idlest process: the others repeat zero-weight batches to stay in step
        counts = self.accelerator.gather(torch.tensor([len(batch)], device=self.accelerator.device)).cpu()
        metrics["env/sessions_min_process"] = float(counts.min())
        metrics["env/sessions_max_process"] = float(counts.max())
        metrics["env/recall"] = totals[-2].item() / max(totals[-1].item(), 1.0)
        ev = R.explained_variance(batch.values, batch.returns, mask)
        stats = dict(stats)
        stats["val/explained_variance"] = ev.item()
        stats["val/mean"] = R.masked_mean(batch.values, mask).item()
        stats_keys = sorted(stats)
        st = torch.tensor([stats[k] for k in stats_keys], dtype=torch.float64, device=self.accelerator.device)
        st = self.accelerator.reduce(st, "mean").cpu()
        metrics.update({k: st[i].item() for i, k in enumerate(stats_keys)})
        metrics["policy/loss_on"] = float(update > self.args.value_warmup_updates)
        metrics["lr"] = self.lr_scheduler.get_last_lr()[0]
        metrics["episode"] = self.state.episode
        # where the time goes: seconds per update, averaged over processes; tokens/s of generation on one process
        times = dict(getattr(self, "_times", {}))
        parts = ("generate", "env", "rollout_forward", "ref_forward", "ppo_epochs")
        times["other"] = times.get("update", 0.0) - sum(times.get(k, 0.0) for k in parts)
        time_keys = [*parts, "value_bootstrap", "train_forward", "train_backward", "optimizer", "other", "update"]
        tt = torch.tensor([times.get(k, 0.0) for k in time_keys], dtype=torch.float64, device=self.accelerator.device)
        tt = self.accelerator.reduce(tt, "mean").cpu()
        metrics.update({f"time/{k}": tt[i].item() for i, k in enumerate(time_keys)})
        metrics["time/generate_tokens_per_s"] = float(mask.sum().item()) / max(times.get("generate", 0.0), 1e-9)
        metrics["eps"] = (update - start_update + 1) * self.episodes_per_update / max(time.time() - start_time, 1e-9)
        return metrics

    # -- saving -----------------------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the policy only, in Hugging Face format (under ZeRO-3 the full weights are gathered on rank 0)."""
        output_dir = output_dir or self.args.output_dir
        state_dict = self.accelerator.get_state_dict(self.model)  # collective under ZeRO-3: every rank calls it
        if self.accelerator.is_main_process:
            policy_sd = {k[len("policy.") :]: v for k, v in state_dict.items() if k.startswith("policy.")}
            policy = self.accelerator.unwrap_model(self.model).policy
            if getattr(policy.config, "tie_word_embeddings", False):  # the tied output head is the input embedding
                head = policy.get_output_embeddings()
                for name, module in policy.named_modules():
                    if module is head:
                        policy_sd.pop(f"{name}.weight", None)  # ZeRO-2/DDP state dicts list it twice, ZeRO-3 once
            policy.save_pretrained(output_dir, state_dict=policy_sd, safe_serialization=True)
            self.processing_class.save_pretrained(output_dir)
        self.accelerator.wait_for_everyone()

    def _save_checkpoint(self, model=None, trial=None) -> None:
        """``checkpoint-<update>/``: the policy (HF format), plus ``train_state/`` (policy, value, optimizer,
        scheduler, RNG) and ``trainer_state.json`` for ``--resume_from_checkpoint``. The final save also writes the
        policy to ``output_dir``."""
        args = self.args
        ckpt = os.path.join(args.output_dir, f"checkpoint-{self.state.global_step}")
        self.save_model(ckpt)
        self.accelerator.save_state(os.path.join(ckpt, TRAIN_STATE_DIR))
        if self.accelerator.is_main_process:
            self.state.save_to_json(os.path.join(ckpt, "trainer_state.json"))
        if self.state.global_step == self.num_updates:
            self.save_model(args.output_dir)
        if self.accelerator.is_main_process and args.save_total_limit:
            self._rotate_checkpoints(use_mtime=False, output_dir=args.output_dir)
        self.accelerator.wait_for_everyone()
