"""PaperAgent: the Crawler/Selector loop of DESIGN §1.1 over a PaperSource.

The loop is the released ``paper_agent.py`` made deterministic and batched:

1. **Search.** One Crawler call on the ``generate_query`` prompt; the first ``search_queries`` queries go to the
   source concurrently; ids are deduplicated against ``touch_ids`` in query order, resolved concurrently, scored
   by the Selector in one batch, and added as depth-0 children of the root under their query.
2. **Expand**, for ``depth`` in ``0..expand_layers-1``: the papers added since the last layer, sorted by score
   (stable), all of them at depth 0 and the top ``expand_papers`` later; their sections are fetched
   concurrently, the Crawler answers all ``select_section`` prompts in one batch, the cited titles of the chosen
   sections are resolved concurrently, deduplicated by arXiv id, scored in one Selector batch, and added as
   children (depth + 1) of the expanded paper under the section.

Unlike the released threads, results are merged in a fixed order (query order, queue order, section order,
reference order), so a run is reproducible. Source failures are logged and skipped; model errors propagate to
the caller (the batch runner logs them and goes on with the next query).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pasa.crawler import Crawler
from pasa.paper import Paper, PaperNode, normalize_arxiv_id, sort_by_score, title_key
from pasa.selector import Selector
from pasa.tools.sources import PaperSource, published_before

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class AgentConfig:
    """The released knobs of ``run_paper_agent.py`` (DESIGN §1.1), with their defaults."""

    expand_layers: int = field(default=2, metadata={"help": "Number of expansion layers after the search round."})
    search_queries: int = field(default=5, metadata={"help": "Crawler search queries kept (the first ones)."})
    search_papers: int = field(default=10, metadata={"help": "Search results requested per query."})
    expand_papers: int = field(default=20, metadata={"help": "Papers expanded per layer at depth > 0 (top by score)."})
    threads_num: int = field(default=20, metadata={"help": "Concurrent tool calls (search, lookups, sections)."})
    filter_by_end_date: bool = field(
        default=True,
        metadata={
            "help": "Drop papers published after the end date wherever a date is known. The released agent only "
            "passed the date to Google (search results); cited papers were never filtered, so later papers "
            "could leak in through expansion. False restores the released behaviour."
        },
    )


@dataclass
class _RunState:
    user_query: str
    end_date: str | None
    root: PaperNode
    queue: list[PaperNode] = field(default_factory=list)
    expand_start: int = 0
    touched: set[str] = field(default_factory=set)

    def touch(self, arxiv_id: str) -> bool:
        """Record a first sighting in ``touch_ids`` (released order); False when already seen in this run."""
        if arxiv_id in self.touched:
            return False
        self.touched.add(arxiv_id)
        self.root.extra["touch_ids"].append(arxiv_id)
        return True


class PaperAgent:
    """Run the PaSa loop for one user query: ``PaperAgent(crawler, selector, source, config).run(query)``."""

    def __init__(self, crawler: Crawler, selector: Selector, source: PaperSource, config: AgentConfig | None = None):
        self.crawler = crawler
        self.selector = selector
        self.source = source
        self.config = config or AgentConfig()

    # -- helpers ---------------------------------------------------------------------------------------------
    def _call_source(self, method: str, *args) -> Any:
        try:
            return getattr(self.source, method)(*args)
        except Exception as err:  # one failed tool call is a logged skip, never a crashed run
            logger.warning("paper source %s%r failed: %s", method, args, err)
            return None

    def _map(self, pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(pool.map(fn, items))

    def _keep(self, paper: Paper | None, state: _RunState) -> bool:
        if paper is None:
            return False
        if self.config.filter_by_end_date and not published_before(paper, state.end_date):
            logger.debug(
                "dropped %s (published %s, after end date %s)", paper.arxiv_id, paper.published, state.end_date
            )
            return False
        return True

    def _add_scored(self, state: _RunState, items: list[tuple[PaperNode, str, Paper]], depth: int, tag: str) -> None:
        """Score ``(parent, key, paper)`` items in one Selector batch and attach them to the tree and queue."""
        scores = self.selector.score(state.user_query, [(p.title, p.abstract) for _, _, p in items])
        extra = state.root.extra
        for (parent, key, paper), score in zip(items, scores, strict=True):
            node = PaperNode.from_paper(paper, depth=depth, source=f"{tag} {paper.source}", score=score)
            parent.child.setdefault(key, []).append(node)
            if parent is not state.root:
                parent.extra["expand"] = "success"
            state.queue.append(node)
            extra["crawler_recall_papers"].append(paper.title)
            if self.selector.is_selected(score):
                extra["recall_papers"].append(paper.title)

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self, user_query: str, end_date: str | None = None, answer: list[str] | None = None) -> PaperNode:
        """Search, then ``expand_layers`` expansion layers. ``end_date``: ``YYYYMMDD`` or None."""
        state = _RunState(user_query=user_query, end_date=end_date, root=PaperNode.root(user_query))
        if answer is not None:
            state.root.extra["answer"] = list(answer)
        with ThreadPoolExecutor(max_workers=max(1, self.config.threads_num)) as pool:
            self._search(state, pool)
            for depth in range(self.config.expand_layers):
                self._expand(state, pool, depth)
        return state.root

    def _search(self, state: _RunState, pool: ThreadPoolExecutor) -> None:
        queries, _ = self.crawler.search_queries(state.user_query, limit=self.config.search_queries)
        queries = list(dict.fromkeys(queries))  # a repeated query would only find touched ids again
        for q in queries:
            state.root.child[q] = []
        results = self._map(
            pool, lambda q: self._call_source("search", q, self.config.search_papers, state.end_date) or [], queries
        )
        new: list[tuple[str, str]] = []
        for q, ids in zip(queries, results, strict=True):
            for arxiv_id in ids:
                arxiv_id = normalize_arxiv_id(arxiv_id)
                if state.touch(arxiv_id):
                    new.append((q, arxiv_id))
        papers = self._map(pool, lambda item: self._call_source("get_by_id", item[1]), new)
        items = [(state.root, q, p) for (q, _), p in zip(new, papers, strict=True) if self._keep(p, state)]
        self._add_scored(state, items, depth=0, tag="Search")

    def _expand(self, state: _RunState, pool: ThreadPoolExecutor, depth: int) -> None:
        layer = sort_by_score(state.queue[state.expand_start :])
        state.queue[state.expand_start :] = layer
        if depth > 0:
            layer = layer[: self.config.expand_papers]
        state.expand_start = len(state.queue)

        # sections: the paper's own (local DB) or fetched (ar5iv); papers without any are not expanded
        missing = [n for n in layer if not n.has_sections]
        fetched = self._map(pool, lambda n: self._call_source("get_sections", n.arxiv_id), missing)
        for node, sections in zip(missing, fetched, strict=True):
            if sections:
                node.sections = sections
        expandable = []
        for node in layer:
            if node.has_sections:
                node.extra["expand"] = "not expand"
                expandable.append(node)
            else:
                node.extra["expand"] = "get full paper error"
        if not expandable:
            return

        choices = self.crawler.expand_sections(
            state.user_query, [(n.title, n.abstract, list(n.sections)) for n in expandable]
        )
        refs = [
            (node, section, cited)
            for node, (chosen, _) in zip(expandable, choices, strict=True)
            for section in chosen
            for cited in node.sections[section]
        ]
        # one title lookup per distinct normalised title, concurrently
        first_title: dict[str, str] = {}
        for _, _, cited in refs:
            first_title.setdefault(title_key(cited), cited)
        found = self._map(pool, lambda t: self._call_source("get_by_title", t), list(first_title.values()))
        by_key = dict(zip(first_title, found, strict=True))

        items: list[tuple[PaperNode, str, Paper]] = []
        for node, section, cited in refs:
            paper = by_key.get(title_key(cited))
            if paper is None:
                continue
            if state.touch(normalize_arxiv_id(paper.arxiv_id)) and self._keep(paper, state):
                items.append((node, section, paper))
        self._add_scored(state, items, depth=depth + 1, tag="Expand")
