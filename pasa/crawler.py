"""The Crawler: search queries for a user query, sections to expand for a paper (DESIGN §1.1)."""

from __future__ import annotations

from pasa.llm import LLM
from pasa.prompts import parse_expand_sections, parse_search_queries, render_expand_prompt, render_search_prompt


class Crawler:
    """Render the Crawler prompts, call the LLM in one batch, parse the actions. No I/O of its own."""

    def __init__(self, llm: LLM, sections_style: str = "dict_keys", sample: bool = False):
        self.llm = llm
        self.sections_style = sections_style
        # greedy at inference (released); sampling (released RL settings) makes two runs differ for the ensemble
        self.sample = sample

    def search_queries(
        self, user_query: str, limit: int | None = None, keep_empty: bool = False
    ) -> tuple[list[str], str]:
        """Returns (queries, raw reply). ``keep_empty``: keep empty ``[Search]`` arguments (released)."""
        (reply,) = self.llm.generate([render_search_prompt(user_query)], chat=True, sample=self.sample)
        return parse_search_queries(reply, limit, keep_empty), reply

    def expand_sections(
        self, user_query: str, papers: list[tuple[str, str, list[str]]]
    ) -> list[tuple[list[str], str]]:
        """For each (title, abstract, section names), the chosen sections (exact matches) and the raw reply.

        All papers go to the LLM as one batch.
        """
        if not papers:
            return []
        prompts = [
            render_expand_prompt(user_query, title, abstract, names, self.sections_style)
            for title, abstract, names in papers
        ]
        replies = self.llm.generate(prompts, chat=True, sample=self.sample)
        return [
            (parse_expand_sections(reply, names), reply) for reply, (_, _, names) in zip(replies, papers, strict=True)
        ]
