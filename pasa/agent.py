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
from pasa.paper import Paper, PaperNode, empty_failures, normalize_arxiv_id, sort_by_score, title_key
from pasa.prompts import has_action
from pasa.selector import Selector
from pasa.tools.sources import PaperSource, published_before

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


# The individual released-compat flags and their released values (``released_behaviour`` sets all of them).
RELEASED_VALUES = {
    "filter_by_end_date": False,
    "selector_sees_cited_title": True,
    "refetch_empty_sections": False,
    "keep_empty_queries": True,
    "search_queries_from_expand_papers": True,
    "dedup_title_lookups": False,
    "resolve_citations_by_id": False,
    "keep_failed_sections": True,
    "max_query_chars": 0,
}


@dataclass
class AgentConfig:
    """The released knobs of ``run_paper_agent.py`` (DESIGN §1.1), with their defaults, and the released-compat flags.

    Every row of docs/released_differences.md ("Agent") that has a released form is one flag here;
    ``released_behaviour`` sets all of them to their released values (``RELEASED_VALUES``).
    """

    expand_layers: int = field(default=2, metadata={"help": "Number of expansion layers after the search round."})
    search_queries: int = field(default=5, metadata={"help": "Crawler search queries kept (the first ones)."})
    search_papers: int = field(default=10, metadata={"help": "Search results requested per query."})
    expand_papers: int = field(default=20, metadata={"help": "Papers expanded per layer at depth > 0 (top by score)."})
    threads_num: int = field(default=20, metadata={"help": "Concurrent tool calls (search, lookups, sections)."})
    released_behaviour: bool = field(
        default=False,
        metadata={
            "help": "Reproduce the released paper_agent.py exactly: sets every released-compat flag below to its "
            "released value (docs/released_differences.md, Agent). Default: the project's corrected behaviour."
        },
    )
    filter_by_end_date: bool = field(
        default=True,
        metadata={
            "help": "Drop papers published after the end date wherever a date is known, whether found by search or "
            "by expansion. The released agent only passed the date to Google, so papers resolved from search ids "
            "or cited titles were never filtered. False restores the released behaviour."
        },
    )
    selector_sees_cited_title: bool = field(
        default=False,
        metadata={
            "help": "Score a cited paper with the title string as written in the citing paper's bibliography (and "
            "the resolved paper's abstract), as released; default: the resolved paper's own title. The node's "
            "title is the resolved paper's in both modes."
        },
    )
    refetch_empty_sections: bool = field(
        default=True,
        metadata={
            "help": "Fetch sections (ar5iv) for a paper whose record has sections {} (e.g. a paper DB entry with "
            'nothing citable). Released: only a missing record ("") was fetched; a {} paper was shown to the '
            "crawler with no sections and marked 'not expand'."
        },
    )
    keep_empty_queries: bool = field(
        default=False,
        metadata={
            "help": "Keep an empty '[Search] ' query: counted against search_queries, searched, and a root child "
            "'' (released). Default: dropped before the limit."
        },
    )
    search_queries_from_expand_papers: bool = field(
        default=False,
        metadata={
            "help": "Use expand_papers as the search-query limit, as the released run_paper_agent.py did by "
            "mistake (search_queries=args.expand_papers). Default: search_queries."
        },
    )
    dedup_title_lookups: bool = field(
        default=True,
        metadata={
            "help": "Look a cited title up once per normalised title (letters only, lower case) in a layer. "
            "Released: every cited string was looked up as written (a title source with its own matching may "
            "then resolve two spellings differently)."
        },
    )
    resolve_citations_by_id: bool = field(
        default=True,
        metadata={
            "help": "Resolve a citation by its arXiv id when the paper record has one (Paper.section_ids, a "
            "database built from unarXive), else by title. Released: always by title."
        },
    )
    keep_failed_sections: bool = field(
        default=False,
        metadata={
            "help": "Store what a failed section fetch returned (null or {}) on the node, as released. Default: "
            'the node keeps its sections field as it was ("").'
        },
    )
    max_query_chars: int = field(
        default=512,
        metadata={
            "help": "Cut a search query to this many characters (a garbage crawler reply once sent a 96 kB query "
            "to Google); 0 = no cap (released)."
        },
    )

    def __post_init__(self):
        if self.released_behaviour:
            for name, value in RELEASED_VALUES.items():
                setattr(self, name, value)

    @property
    def query_limit(self) -> int:
        """How many search queries are kept (released script: expand_papers, by mistake)."""
        return self.expand_papers if self.search_queries_from_expand_papers else self.search_queries


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

    def fail(self, kind: str) -> None:
        self.root.extra["failures"][kind] += 1


# PaperSource method -> the failure kind it counts as (``root.extra["failures"]``).
_FAILURE_KIND = {"search": "search", "get_by_id": "lookup", "get_by_title": "title", "get_sections": "sections"}


@dataclass
class _Ref:
    """One citation to resolve: the citing node, the section, the cited string and its arXiv id if known."""

    node: PaperNode
    section: str
    cited: str
    arxiv_id: str | None = None


class PaperAgent:
    """Run the PaSa loop for one user query: ``PaperAgent(crawler, selector, source, config).run(query)``."""

    def __init__(self, crawler: Crawler, selector: Selector, source: PaperSource, config: AgentConfig | None = None):
        self.crawler = crawler
        self.selector = selector
        self.source = source
        self.config = config or AgentConfig()

    # -- helpers ---------------------------------------------------------------------------------------------
    def _call_source(self, state: _RunState, method: str, arg, *rest) -> Any:
        """One source call; a raised error is one WARNING (method, argument, cause), a counted failure and None."""
        try:
            return getattr(self.source, method)(arg, *rest)
        except Exception as err:  # one failed tool call is a logged, counted skip, never a crashed run
            logger.warning("paper source %s(%r) failed: %s: %s", method, arg, type(err).__name__, err)
            state.fail(_FAILURE_KIND[method])
            return None

    def _map(self, pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(pool.map(fn, items))

    def _no_action(self, state: _RunState, session: str, reply: str) -> None:
        """A crawler reply with no parseable action: one WARNING naming the session, counted, kept raw."""
        logger.warning("crawler reply with no action for %s (query %r): %r", session, state.user_query, reply[:200])
        state.fail("crawler_no_action")
        state.root.extra["crawler_raw_replies"].append({"session": session, "reply": reply})

    def _cap_query(self, query: str) -> str:
        cap = self.config.max_query_chars
        if cap and len(query) > cap:
            logger.warning("search query of %d characters cut to %d: %r...", len(query), cap, query[:80])
            return query[:cap].rstrip()
        return query

    def _keep(self, paper: Paper | None, state: _RunState) -> bool:
        if paper is None:
            return False
        if self.config.filter_by_end_date and not published_before(paper, state.end_date):
            logger.debug(
                "dropped %s (published %s, after end date %s)", paper.arxiv_id, paper.published, state.end_date
            )
            return False
        return True

    def _add_scored(
        self, state: _RunState, items: list[tuple[PaperNode, str, Paper, str, str | None]], depth: int, tag: str
    ) -> None:
        """Score ``(parent, key, paper, title shown to the selector, resolved_by)`` items in one Selector batch and
        attach them to the tree and queue."""
        scores = self.selector.score(state.user_query, [(shown, p.abstract) for _, _, p, shown, _ in items])
        extra = state.root.extra
        for (parent, key, paper, _, resolved_by), score in zip(items, scores, strict=True):
            node = PaperNode.from_paper(paper, depth=depth, source=f"{tag} {paper.source}", score=score)
            if resolved_by is not None:
                node.extra["resolved_by"] = resolved_by
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
        state.root.extra["failures"] = empty_failures()
        state.root.extra["crawler_raw_replies"] = []
        if answer is not None:
            state.root.extra["answer"] = list(answer)
        with ThreadPoolExecutor(max_workers=max(1, self.config.threads_num)) as pool:
            self._search(state, pool)
            for depth in range(self.config.expand_layers):
                self._expand(state, pool, depth)
        return state.root

    def _search(self, state: _RunState, pool: ThreadPoolExecutor) -> None:
        cfg = self.config
        queries, reply = self.crawler.search_queries(
            state.user_query, limit=cfg.query_limit, keep_empty=cfg.keep_empty_queries
        )
        if not has_action(reply):
            self._no_action(state, "search", reply)
        # a repeated query would only find touched ids again (released: searched twice, same tree)
        queries = list(dict.fromkeys(self._cap_query(q) for q in queries))
        for q in queries:
            state.root.child[q] = []
        results = self._map(
            pool, lambda q: self._call_source(state, "search", q, cfg.search_papers, state.end_date) or [], queries
        )
        new: list[tuple[str, str]] = []
        for q, ids in zip(queries, results, strict=True):
            for arxiv_id in ids:
                arxiv_id = normalize_arxiv_id(arxiv_id)
                if state.touch(arxiv_id):
                    new.append((q, arxiv_id))
        papers = self._map(pool, lambda item: self._call_source(state, "get_by_id", item[1]), new)
        items = [
            (state.root, q, p, p.title, None) for (q, _), p in zip(new, papers, strict=True) if self._keep(p, state)
        ]
        self._add_scored(state, items, depth=0, tag="Search")

    def _needs_sections(self, node: PaperNode) -> bool:
        """Released: fetch only when the record had none (""); the project also fetches for {}."""
        if not isinstance(node.sections, dict):
            return True
        return not node.sections and self.config.refetch_empty_sections

    def _expand(self, state: _RunState, pool: ThreadPoolExecutor, depth: int) -> None:
        cfg = self.config
        layer = sort_by_score(state.queue[state.expand_start :])
        state.queue[state.expand_start :] = layer
        if depth > 0:
            layer = layer[: cfg.expand_papers]
        state.expand_start = len(state.queue)

        # sections: the paper's own (local DB) or fetched (ar5iv); papers without any are not expanded
        missing = [n for n in layer if self._needs_sections(n)]
        fetched = self._map(pool, lambda n: self._call_source(state, "get_sections", n.arxiv_id), missing)
        for node, sections in zip(missing, fetched, strict=True):
            if sections:
                node.sections = sections
                node.section_ids = None  # fetched sections carry no ids
            elif cfg.keep_failed_sections:
                node.sections = sections  # released: null (fetch failed) or {} (nothing citable)
        asked = {id(n) for n in missing}
        expandable = []
        for node in layer:
            # fetched: expandable when the fetch found sections; not fetched: a dict ({} only when not refetching)
            if node.has_sections or (id(node) not in asked and isinstance(node.sections, dict)):
                node.extra["expand"] = "not expand"
                expandable.append(node)
            else:
                node.extra["expand"] = "get full paper error"
        if not expandable:
            return

        choices = self.crawler.expand_sections(
            state.user_query, [(n.title, n.abstract, list(n.sections)) for n in expandable]
        )
        refs: list[_Ref] = []
        for node, (chosen, reply) in zip(expandable, choices, strict=True):
            if not has_action(reply):
                self._no_action(state, node.arxiv_id or node.title, reply)
            for section in chosen:
                ids = (node.section_ids or {}).get(section) if cfg.resolve_citations_by_id else None
                for i, cited in enumerate(node.sections[section]):
                    arxiv_id = ids[i] if ids is not None and i < len(ids) and ids[i] else None
                    refs.append(_Ref(node, section, cited, normalize_arxiv_id(arxiv_id) if arxiv_id else None))
        found = self._resolve(state, pool, refs)

        items: list[tuple[PaperNode, str, Paper, str, str | None]] = []
        for ref, (paper, resolved_by) in zip(refs, found, strict=True):
            if paper is None:
                continue
            if state.touch(normalize_arxiv_id(paper.arxiv_id)) and self._keep(paper, state):
                shown = ref.cited if cfg.selector_sees_cited_title else paper.title
                items.append((ref.node, ref.section, paper, shown, resolved_by))
        self._add_scored(state, items, depth=depth + 1, tag="Expand")

    def _title_lookup_key(self, title: str) -> str:
        return title_key(title) if self.config.dedup_title_lookups else title

    def _resolve(self, state: _RunState, pool: ThreadPoolExecutor, refs: list[_Ref]) -> list[tuple[Paper | None, str]]:
        """The paper behind each citation, and how it was found: by its arXiv id (when known), else by title.

        One call per distinct id / lookup key, concurrently. An id the source does not know falls back to the
        title lookup.
        """
        by_id = list(dict.fromkeys(r.arxiv_id for r in refs if r.arxiv_id))
        id_papers = dict(zip(by_id, self._map(pool, lambda i: self._call_source(state, "get_by_id", i), by_id)))
        first_title: dict[str, str] = {}
        for r in refs:
            if r.arxiv_id is None or id_papers.get(r.arxiv_id) is None:
                first_title.setdefault(self._title_lookup_key(r.cited), r.cited)
        titles = self._map(pool, lambda t: self._call_source(state, "get_by_title", t), list(first_title.values()))
        by_key = dict(zip(first_title, titles, strict=True))
        out: list[tuple[Paper | None, str]] = []
        for r in refs:
            paper = id_papers.get(r.arxiv_id) if r.arxiv_id else None
            if paper is not None:
                out.append((paper, "id"))
            else:
                out.append((by_key.get(self._title_lookup_key(r.cited)), "title"))
        return out
