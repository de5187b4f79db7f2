"""The Selector: a relevance score for each (user query, paper) pair (DESIGN §1.1)."""

from __future__ import annotations

from pasa.llm import LLM
from pasa.metrics import SELECT_THRESHOLD  # one threshold for the agent and the metrics
from pasa.prompts import render_select_prompt


class Selector:
    """Scores papers with P(True) of the ``get_selected`` prompt, all papers of a call in one batch."""

    def __init__(self, llm: LLM, threshold: float = SELECT_THRESHOLD):
        self.llm = llm
        self.threshold = threshold

    def score(self, user_query: str, papers: list[tuple[str, str]]) -> list[float]:
        """Scores for (title, abstract) pairs, in order."""
        if not papers:
            return []
        prompts = [render_select_prompt(user_query, title, abstract) for title, abstract in papers]
        scores = [float(s) for s in self.llm.true_prob(prompts)]
        if len(scores) != len(prompts):
            raise RuntimeError(f"selector returned {len(scores)} scores for {len(prompts)} prompts")
        return scores

    def is_selected(self, score: float) -> bool:
        return score > self.threshold
