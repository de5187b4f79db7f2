"""Helpers of the ``pasa serve`` tests: a scripted demo agent (no model), waiting for a condition or a search."""

from __future__ import annotations

import time

import pytest

# Scripted selector scores of the demo papers: the retrieval papers are selected, the others are not.
SELECTED_WORDS = ("Retrieval", "REALM", "Dense Passage")


def scripted_score(prompt: str) -> float:
    from pasa.llm.scripted import prompt_title

    title = prompt_title(prompt) or ""
    return 0.9 if any(w in title for w in SELECTED_WORDS) else 0.1


def scripted_agent():
    """The demo agent with a scripted selector instead of the tiny model (same crawler, papers and knobs)."""
    from pasa.demo import build_demo_agent
    from pasa.llm.scripted import ScriptedLLM

    return build_demo_agent("", selector_llm=ScriptedLLM(score_fn=scripted_score))


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_finished(client, search_id: str, timeout: float = 30.0, headers=None) -> dict:
    def finished():
        body = client.get(f"/api/search/{search_id}", headers=headers).json()
        return body if body["status"] in ("done", "failed") else None

    return wait_for(finished, timeout, what=f"search {search_id} to finish")
