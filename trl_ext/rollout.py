"""One update's rollout as tensors, and the default ways its sessions become tokens and rewards.

``RolloutBatch`` holds every session of one update on one process. The functions below are the defaults the
trainer picks at construction; ``trl_ext/released.py`` holds the released trainer's alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trl_ext import released
from trl_ext import rewards as R
from trl_ext.config import SessionPPOConfig
from trl_ext.env import SessionOutcome
from trl_ext.tokens import SessionPrompts, token_char_ends


@dataclass
class RolloutBatch:
    """All sessions of one update on this process, padded to the longest reply T."""

    # trajectory
    prompt_ids: list[torch.Tensor]  # N x (P_i,) chat-formatted prompt tokens
    responses: torch.Tensor  # (N, T) generated tokens, pad after the end
    action_mask: torch.Tensor  # (N, T) bool: tokens the crawler generated (EOS included)
    kinds: list[str]  # N x "search" | "expand"
    round_index: list[int]  # N x the round the session ran in
    # policy
    logprobs: torch.Tensor = None  # (N, T) log π_old(y_t) at the sampling temperature
    ref_logprobs: torch.Tensor = None  # (N, T) log π_sft(y_t)
    # value
    values: torch.Tensor = None  # (N, T) V(s_t) before each generated token
    # outcome
    scores: torch.Tensor = None  # (N, T) environment rewards placed on tokens
    rewards: torch.Tensor = None  # (N, T) scores + KL penalty
    advantages: torch.Tensor = None  # (N, T)
    returns: torch.Tensor = None  # (N, T)
    outcomes: list[SessionOutcome] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def width(self) -> int:
        return self.responses.shape[1]


def session_prompts(tokenizer, args: SessionPPOConfig) -> SessionPrompts:
    """How sessions are tokenised: cut on the left (default), or the released right cut."""
    cls = released.RightCutPrompts if args.truncate_prompts_right else SessionPrompts
    return cls(tokenizer, args.max_prompt_length, args.value_max_length)


def rewards_on_char_offsets(tokenizer, row: list[int], outcome: SessionOutcome, width: int) -> torch.Tensor:
    """A session's rewards on the tokens holding their characters: each action's on the ``[`` that ends it, the
    stop bonus on the ``]`` of the stop tag. Returns (width,)."""
    chars, values = outcome.reward_positions()
    ends = torch.tensor(token_char_ends(tokenizer, row), dtype=torch.long)
    return R.place_rewards_on_tokens(ends, torch.tensor(chars), torch.tensor(values), length=width)


def action_mask_only(action_mask: torch.Tensor) -> torch.Tensor:
    """The tokens whose value enters GAE and the value loss: the generated ones; the state after EOS is terminal."""
    return action_mask.bool()


def new_tokens_only(response_length: int, prompt_width: int) -> int:
    """New tokens of a reply: ``response_length``, whatever the prompt's length."""
    return response_length
