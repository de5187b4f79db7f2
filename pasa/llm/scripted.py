"""A scripted stand-in LLM for tests, benchmarks and the offline demo (no model, no network).

Replies and scores are looked up by a key found in the prompt: the user query for a search prompt, the paper
title for an expand or select prompt. Every call is recorded in ``calls`` so tests can assert batching.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

_TITLE_RE = re.compile(r"Title: (.*?)\n", flags=re.DOTALL)
_QUERY_RE = re.compile(r"User Query: (.*)$", flags=re.DOTALL)


def prompt_title(prompt: str) -> str | None:
    """The paper title of an expand/select prompt, if any."""
    m = _TITLE_RE.search(prompt)
    return m.group(1) if m else None


def prompt_user_query(prompt: str) -> str | None:
    """The user query of a search prompt (``generate_query`` ends with ``User Query: <q>``)."""
    m = _QUERY_RE.search(prompt)
    return m.group(1).strip() if m and "Title: " not in prompt else None


class ScriptedLLM:
    """``generate``: ``replies[title or user query]`` (or ``reply_fn(prompt)``), else ``default_reply``.
    ``true_prob``: ``scores[title]`` (or ``score_fn(prompt)``), else ``default_score``.
    ``latency``: seconds slept per call (not per prompt), to simulate a batched model call.
    """

    def __init__(
        self,
        replies: dict[str, str] | None = None,
        scores: dict[str, float] | None = None,
        reply_fn: Callable[[str], str] | None = None,
        score_fn: Callable[[str], float] | None = None,
        default_reply: str = "",
        default_score: float = 0.0,
        latency: float = 0.0,
    ):
        self.replies = replies or {}
        self.scores = scores or {}
        self.reply_fn = reply_fn
        self.score_fn = score_fn
        self.default_reply = default_reply
        self.default_score = default_score
        self.latency = latency
        self.calls: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()

    def _record(self, method: str, prompts: list[str]) -> None:
        with self._lock:
            self.calls.append((method, list(prompts)))
        if self.latency:
            time.sleep(self.latency)

    def generate(self, prompts: list[str], chat: bool = True, sample: bool = False) -> list[str]:
        self._record("generate", prompts)
        out = []
        for p in prompts:
            if self.reply_fn is not None:
                out.append(self.reply_fn(p))
                continue
            key = prompt_title(p) or prompt_user_query(p)
            out.append(self.replies.get(key, self.default_reply))
        return out

    def true_prob(self, prompts: list[str]) -> list[float]:
        self._record("true_prob", prompts)
        if self.score_fn is not None:
            return [float(self.score_fn(p)) for p in prompts]
        return [float(self.scores.get(prompt_title(p), self.default_score)) for p in prompts]
