"""The released PPO's variants (hyc2026/trl, the authors' fork of trl), kept apart from the corrected algorithm.

``SessionPPOConfig(released_behaviour=True)`` sets every field of :data:`RELEASED_PPO_VALUES`; the environment
(``trl_ext/env.py``) and the trainer (``trl_ext/trainer.py``) then pick, once at construction, the function or class of
this module for each switch that is on, so the default path carries no released branch. Every
row is explained in docs/released_differences.md ("PPO"). Sources: hyc2026/trl ``trl/trainer/ppo_trainer.py``,
``ppo_config.py`` and ``custom_agent/utils.py`` (``response_handler``, ``call_vm``, ``get_expand_papers``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from trl_ext.tokens import SessionPrompts, chat_ids

if TYPE_CHECKING:  # the environment's types; importing them here would make a cycle
    from trl_ext.env import ActionOutcome, Session, SessionOutcome

# The value ``released_behaviour=True`` gives each field that is at its default (a value set explicitly is kept).
RELEASED_PPO_VALUES: dict[str, object] = {
    "dedup_scope": "reply",
    "response_length_is_total": True,
    "bootstrap_after_eos": True,
    "value_papers_rule": "shortest_of_top",
    "keep_empty_actions": True,
    "sections_ascii": True,
    "clip_floor_search_cost": True,
    "fill_sessions": True,
    "reward_on_bracket_ids": True,
    "resolve_citations_by_id": False,
    "query_from_reply": True,
    "truncate_prompts_right": True,
    # the fork's warm-up check `update < warm_up_step` with updates counted from 1: 50 meant 49 value-only updates
    "value_warmup_updates": 49,
}

# The fork read the user query back from the decoded search text with this regex; the decoded chat ends
# "...User Query: <q>\nassistant\n" + reply, so it matches only when the reply starts with `[`.
QUERY_IN_DECODED_CHAT_RE = re.compile(r"User Query:(.*?)assistant\n\[", flags=re.DOTALL)


# ---- environment ------------------------------------------------------------------------------------------------
def query_read_back(outcome: SessionOutcome) -> str | None:
    """The user query of the sessions a reply opens, parsed back from the decoded search chat (fork ``utils.py``).

    A search reply that does not start with ``[`` gives an empty query; expand replies keep the episode's (None).
    """
    if outcome.session.kind != "search":
        return None
    text = f"User Query: {outcome.session.episode.user_query}\nassistant\n{outcome.reply}"
    m = QUERY_IN_DECODED_CHAT_RE.search(text)
    return m.group(1).strip() if m else ""


def sections_list_ascii(names: list[str]) -> str:
    """The expand prompt's Sections list as the fork wrote it: ``json.dumps`` with non-ASCII escaped (``\\u00e9``)."""
    return json.dumps(names)


def clip_floor_search_cost(kind: str, c_search: float, c_expand: float) -> float:
    """Every action's reward is clipped below at −c_search, expand actions too (fork ``-args.search_cost``)."""
    return -c_search


def fill_sessions(chosen: list[Session], this_round: Sequence[Session], expand_top_k: int) -> list[Session]:
    """Repeat the chosen sessions to ``expand_top_k``; when none was chosen, this round's sessions again (fork)."""
    pool = chosen or list(this_round)
    return [pool[i % len(pool)] for i in range(expand_top_k)] if pool and expand_top_k > 0 else []


def open_shortest_of_top(
    outcomes: list[SessionOutcome],
    value_papers_max: int,
    open_session: Callable[[SessionOutcome, object], Session],
) -> tuple[list[tuple[ActionOutcome, list[Session]]], list[Session]]:
    """Per action, the sessions whose values its reward adds; and the next round's candidates, best first (fork).

    Of an action's new papers, the ``value_papers_max + 2`` best by score (stable), then of those the
    ``value_papers_max`` with the shortest expand prompt (characters, stable), papers without sections included;
    only those are candidates, sorted by score (stable, in session order), repeats across sessions kept.
    """
    per_action, candidates = [], []
    for outcome in outcomes:
        for action in outcome.actions:
            top = sorted(zip(action.scores, action.new_papers, strict=True), key=lambda sp: -sp[0])
            opened = [(s, open_session(outcome, p)) for s, p in top[: value_papers_max + 2]]
            opened = sorted(opened, key=lambda ss: len(ss[1].prompt))[:value_papers_max]
            per_action.append((action, [session for _, session in opened]))
            candidates += opened
    return per_action, [session for _, session in sorted(candidates, key=lambda ss: -ss[0])]


# ---- trainer ----------------------------------------------------------------------------------------------------
def value_mask_after_eos(action_mask: torch.Tensor) -> torch.Tensor:
    """The fork's value mask ``~padding_mask_p1`` ("include eos and the first pad"): the action mask plus the first
    position after each row's last kept token, when the row has one.

    Its reward is 0, so GAE over this mask bootstraps the last token from that state's value V and trains V toward
    0 (its return is A + V = −V + V = 0). The advantages differ from the terminal ones by γ(1−λ)(γλ)^(L−1−t)·V for a
    reply of L tokens. Shapes: (B, T) bool in, (B, T) bool out.

    >>> value_mask_after_eos(torch.tensor([[True, True, False, False]])).tolist()
    [[True, True, True, False]]
    """
    mask = action_mask.bool()
    pos = torch.arange(mask.shape[1])
    last = torch.where(mask, pos[None, :], -1).max(1).values  # −1 for an empty row: nothing to add
    return mask | ((pos[None, :] == last[:, None] + 1) & (last[:, None] >= 0))


def place_rewards_on_bracket_ids(
    response_ids: torch.Tensor,
    action_rewards: torch.Tensor,
    stop_reward: float | None,
    open_id: int,
    close_id: int,
    length: int | None = None,
) -> torch.Tensor:
    """The fork's placement (``response_handler``): rewards on tokens found by id, scanning from the end.

    Scanning the reply backwards, the first token equal to ``close_id`` (Qwen ``]`` = 60) gets ``stop_reward`` when
    it is not None (the reply contains the stop tag), and the k-th token equal to ``open_id`` (Qwen ``[`` = 58) from
    the end gets the k-th action reward from the end; the scan stops when every action reward is placed. A ``[``
    merged into another token (``\\n[``, `` [``) is invisible to it, so the rewards shift to earlier ``[`` tokens or
    are lost: ``trl_ext.rewards.place_rewards_on_tokens`` (character offsets) is the default.

    Shapes: ``response_ids`` (T,), ``action_rewards`` (K,) in reply order. Returns (length or T,) float.
    """
    length = response_ids.numel() if length is None else length
    out = torch.zeros(length, dtype=torch.float32)
    ids = response_ids.tolist()
    rewards = [float(r) for r in torch.as_tensor(action_rewards, dtype=torch.float32).reshape(-1).tolist()]
    k = len(rewards) - 1
    pending_stop = stop_reward is not None
    for t in range(len(ids) - 1, -1, -1):
        if pending_stop and ids[t] == close_id:
            out[t] = stop_reward
            pending_stop = False
        if ids[t] == open_id:
            if k < 0:
                break
            out[t] = rewards[k]
            k -= 1
            if k < 0:
                break
    return out


def rewards_on_bracket_ids(tokenizer, row: list[int], outcome: SessionOutcome, width: int) -> torch.Tensor:
    """:func:`place_rewards_on_bracket_ids` for one session, with the tokenizer's ids of ``[`` and ``]``."""
    return place_rewards_on_bracket_ids(
        torch.tensor(row, dtype=torch.long),
        torch.tensor([a.reward for a in outcome.actions]),
        outcome.stop_reward if outcome.stop_char is not None else None,
        tokenizer.convert_tokens_to_ids("["),
        tokenizer.convert_tokens_to_ids("]"),
        length=width,
    )


def budget_including_prompt(response_length: int, prompt_width: int) -> int:
    """New tokens of a reply when ``GenerationConfig(max_length=response_length)`` counts the prompt too (fork)."""
    return max(1, response_length - prompt_width)


@dataclass
class RightCutPrompts(SessionPrompts):
    """The fork's prompt tokenisation: expand prompts cut on the right at ``value_max_length`` tokens, and a
    session's value read at index −2 of chat(user, assistant ``[``) cut on the right (``call_vm``); the cut can drop
    the ``[`` or the generation prompt. Search prompts are cut on the left, as by default."""

    def prompt_ids(self, session: Session) -> list[int]:
        if session.kind == "expand":
            return chat_ids(self.tokenizer, session.prompt)[: self.value_max_length]
        return self.chat_ids(session.prompt, self.max_prompt_length)

    def value_ids(self, session: Session) -> tuple[list[int], int]:
        turns = [{"role": "user", "content": session.prompt}, {"role": "assistant", "content": "["}]
        text = self.tokenizer.apply_chat_template(turns, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.value_max_length], -2
