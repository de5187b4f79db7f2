"""PaperAgent: PaSa's Crawler/Selector loop over a PaperSource (DESIGN §1.1, paper §3).

The loop, as ``PaperAgent.arun`` reads:

1. **Search.** The Crawler writes search queries for the user query; each query is searched, the papers found
   (and the user's seed papers) are scored by the Selector and queued at depth 0 under their query.
2. **Expand**, for ``depth`` in ``0..expand_layers-1``: the papers queued since the last layer, sorted by score (all
   of them at depth 0, the top ``expand_papers`` later). Per paper (``_Run.expand_paper``): its sections (from the
   record, else fetched) -> the Crawler's choice of sections -> the cited papers of the chosen sections resolved
   (by arXiv id when known, else by title); then, in the layer's order, each new paper is scored and queued at
   ``depth + 1`` under its section.

Every paper is one coroutine: it awaits its tool calls (run in threads, at most ``threads_num`` searches and
``lookup_concurrency`` lookups or section fetches at once) and its model calls (gathered into batches by one
``MicroBatcher`` per model), so papers move through their stages as soon as their own inputs are ready. The only
waits between papers are the algorithm's: a layer is sorted by score before it is expanded, and the papers a layer
finds are queued in the layer's order (query order, rank order, section order, reference order), by awaiting the
papers' tasks in that order, so the tree does not depend on timing. Depth-0 papers are all expanded, so their
expansion starts while the other search papers are still being scored.

Steps that have a released form (``released_behaviour``) are picked once, at construction, from the table in
``pasa/released.py``. Source failures are logged once, counted in ``root.extra["failures"]`` and skipped; model
errors propagate to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pasa.crawler import Crawler
from pasa.llm.batcher import MicroBatcher
from pasa.paper import Paper, PaperNode, empty_failures, normalize_arxiv_id, sort_by_score
from pasa.prompts import has_action
from pasa.released import RELEASED_VALUES, loop_rules
from pasa.resolve import Citation, chosen_citations, lookup_plan
from pasa.selector import Selector
from pasa.tools.sources import PaperSource

logger = logging.getLogger(__name__)

__all__ = ["RELEASED_VALUES", "AgentConfig", "AgentEvent", "PaperAgent", "StageSpan"]

# The child key of the root under which the user's seed papers are queued.
SEED_KEY = "[Seed]"


@dataclass(frozen=True)
class AgentEvent:
    """Progress of a run: ``count`` more of ``kind`` in ``layer`` (0 = the search round, N = the N-th expansion).

    Kinds: "queries" (search queries written), "search" (searches done), "ids" (ids they returned), "lookup"
    (paper lookups done), "found" (citations a lookup found), "sections" (section fetches done), "crawler" (papers
    the Crawler chose sections for), "chosen" (sections chosen), "scored" / "selected" (Selector), "failed" (failed
    source calls).
    """

    kind: str
    layer: int
    count: int = 1


@dataclass
class StageSpan:
    """First start and last end of one kind of call in a run (``time.perf_counter``), and how many calls."""

    start: float = float("inf")
    end: float = 0.0
    calls: int = 0

    def add(self, start: float, end: float) -> None:
        self.start, self.end, self.calls = min(self.start, start), max(self.end, end), self.calls + 1


class PaperAgent:
    """Run the PaSa loop for one user query: ``PaperAgent(crawler, selector, source, config).run(query)``.

    After a run, ``last_spans`` holds the per-stage spans (tool kinds, crawler, selector) for benchmarks.
    """

    def __init__(self, crawler: Crawler, selector: Selector, source: PaperSource, config: AgentConfig | None = None):
        self.crawler = crawler
        self.selector = selector
        self.source = source
        self.config = config or AgentConfig()
        self.rules = loop_rules(self.config)
        self.last_spans: dict[str, StageSpan] = {}

    def run(
        self,
        user_query: str,
        end_date: str | None = None,
        answer: list[str] | None = None,
        seed_papers: list[str] | None = None,
        on_event: Callable[[AgentEvent], None] | None = None,
    ) -> PaperNode:
        """Search, then ``expand_layers`` expansion layers. ``end_date``: ``YYYYMMDD`` or None; ``seed_papers``:
        arXiv ids queued at depth 0 before the search results; ``on_event`` is called on the thread that runs
        the loop, one event at a time (this thread, unless it already runs an event loop)."""
        run = self.arun(user_query, end_date, answer, seed_papers, on_event)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run)
        with ThreadPoolExecutor(1) as thread:  # called from a running event loop (a notebook): a loop of its own
            return thread.submit(asyncio.run, run).result()

    async def arun(
        self,
        user_query: str,
        end_date: str | None = None,
        answer: list[str] | None = None,
        seed_papers: list[str] | None = None,
        on_event: Callable[[AgentEvent], None] | None = None,
    ) -> PaperNode:
        """The loop: search, then expand layer by layer (see the module docstring)."""
        run = _Run(self, user_query, end_date, answer, on_event)
        try:
            async with run.crawler_calls, run.selector_calls:
                # 1. search: seed papers and search results, scored and queued at depth 0
                layer = await run.search([normalize_arxiv_id(s) for s in seed_papers or []])
                # 2. expand: per paper sections -> crawler -> resolve citations; the new papers scored and queued
                for depth in range(self.config.expand_layers):
                    layer = sort_by_score(layer)
                    if depth > 0:
                        layer = layer[: self.config.expand_papers]
                    layer = await run.expand(layer, depth)
        finally:
            await run.close()
            self.last_spans = run.spans()
        return run.root


# PaperSource method -> the failure kind it counts as (``root.extra["failures"]``), and its progress event.
_FAILURE_KIND = {"search": "search", "get_by_id": "lookup", "get_by_title": "title", "get_sections": "sections"}
_EVENT_KIND = {"search": "search", "get_by_id": "lookup", "get_by_title": "lookup", "get_sections": "sections"}

# A resolved citation: the citation, the paper it names (None: not found) and how it was found ("id" / "title").
Resolved = tuple[Citation, Paper | None, str]


def _model_limits(llm, batch_size: int, max_concurrency: int) -> tuple[int, int]:
    """(prompts per call, calls in flight) for one model: the config's figures, else the backend's."""
    if max_concurrency <= 0:
        max_concurrency = int(getattr(llm, "max_concurrency", 1) or 1)
    if batch_size == 0:
        batch_size = int(getattr(llm, "preferred_batch_size", 0) or 0)
    elif batch_size < 0:
        batch_size = 0  # no limit
    return batch_size, max_concurrency


class _Run:
    """One run's state and steps. Everything here runs on the event loop's thread; threads only call the source
    or a model."""

    def __init__(self, agent: PaperAgent, user_query: str, end_date, answer, on_event):
        self.crawler, self.selector, self.source = agent.crawler, agent.selector, agent.source
        self.cfg, self.rules = agent.config, agent.rules
        self.user_query, self.end_date, self.on_event = user_query, end_date, on_event
        self.root = PaperNode.root(user_query)
        if answer is not None:
            self.root.extra["answer"] = list(answer)
        # after the released keys: failed tool calls, crawler replies without actions, how citations were resolved
        self.root.extra["failures"] = empty_failures()
        self.root.extra["crawler_raw_replies"] = []
        self.citations = self.root.extra["citations"] = {"by_id": 0, "by_title": 0, "not_found": 0, "failed": 0}
        self.touched: set[str] = set()

        cfg = self.cfg
        lookups = max(1, cfg.lookup_concurrency)
        self.tool_limits = {
            "search": asyncio.Semaphore(max(1, cfg.threads_num)),
            "get_by_id": asyncio.Semaphore(lookups),
            "get_by_title": asyncio.Semaphore(lookups),
            "get_sections": asyncio.Semaphore(lookups),
        }
        self.tool_pool = ThreadPoolExecutor(max(1, cfg.threads_num) + 3 * lookups, thread_name_prefix="pasa-tool")
        self.tools_inflight = 0
        self.tool_spans: dict[str, StageSpan] = {}
        self.search_crawler_span: StageSpan | None = None

        def idle() -> bool:  # no tool call running: only a model answer can bring new prompts
            return self.tools_inflight == 0

        size, concurrency = _model_limits(self.crawler.llm, cfg.model_batch_size, cfg.max_concurrency)
        self.crawler_calls = MicroBatcher(
            lambda items: self.crawler.expand_sections(user_query, items),
            size, concurrency, cfg.batch_wait_s, idle, name="crawler",
        )  # fmt: skip
        size, concurrency = _model_limits(self.selector.llm, cfg.model_batch_size, cfg.max_concurrency)
        self.selector_calls = MicroBatcher(
            lambda items: self.selector.score(user_query, items),
            size, concurrency, cfg.batch_wait_s, idle, name="selector",
        )  # fmt: skip

        self.lookups: dict[tuple[str, str], asyncio.Task] = {}  # one source call per id / title key in a run
        self.early: dict[int, asyncio.Task] = {}  # depth-0 expansions started while the search round runs
        self.scores: list[asyncio.Task] = []  # the Selector calls of the current phase, in queue order
        self.tasks: list[asyncio.Task] = []

    # -- 1. search -------------------------------------------------------------------------------------------------
    async def search(self, seeds: list[str]) -> list[PaperNode]:
        """Layer 0: the seed papers, then the papers of each search query in query order, scored and queued."""
        seed_lookups = [self.lookup("id", arxiv_id, layer=0) for arxiv_id in seeds]
        writing = self.spawn(self.write_queries())
        layer: list[PaperNode] = []
        if seeds:
            self.root.child[SEED_KEY] = []
        for arxiv_id, lookup in zip(seeds, seed_lookups, strict=True):
            if not self.touch(arxiv_id):
                continue
            paper, _ = await lookup
            if paper is None:
                logger.warning("seed paper %s not found in the paper source; skipped", arxiv_id)
                continue
            # the user named it: queued whatever its date
            layer.append(self.queue_paper(self.root, SEED_KEY, paper, paper.title, depth=0, tag="Seed"))
            self.start_early_expansion(layer[-1], rank=len(layer) - 1)
        queries = await writing
        for query in queries:
            self.root.child[query] = []
        searches = [self.spawn(self.search_ids(query)) for query in queries]
        for query, search in zip(queries, searches, strict=True):
            for arxiv_id in await search:
                if not self.touch(arxiv_id):
                    continue
                paper, _ = await self.lookup("id", arxiv_id, layer=0)
                if paper is not None and self.rules.keep_paper(paper, self.end_date):
                    layer.append(self.queue_paper(self.root, query, paper, paper.title, depth=0, tag="Search"))
                    self.start_early_expansion(layer[-1], rank=len(layer) - 1)
        await self.close_phase(layer)
        return layer

    async def write_queries(self) -> list[str]:
        """The Crawler's search queries (one model call), cut to length, repeats dropped."""
        start = time.perf_counter()
        queries, reply = await asyncio.to_thread(
            self.crawler.search_queries,
            self.user_query,
            limit=self.rules.query_limit,
            keep_empty=self.rules.keep_empty_queries,
        )
        self.search_crawler_span = StageSpan()
        self.search_crawler_span.add(start, time.perf_counter())
        self.emit("queries", 0, len(queries))
        if not has_action(reply):
            self.no_action("search", reply)
        # a repeated query would only find touched ids again (released: searched twice, same tree)
        return list(dict.fromkeys(self.rules.cap_query(q) for q in queries))

    async def search_ids(self, query: str) -> list[str]:
        """The arXiv ids one query finds; their lookups start at once (they are queued in order later)."""
        ids, ok = await self.call_source("search", 0, query, self.cfg.search_papers, self.end_date)
        ids = [normalize_arxiv_id(a) for a in ids or []]
        if ok:
            self.emit("ids", 0, len(ids))
        for arxiv_id in ids:
            self.lookup("id", arxiv_id, layer=0)
        return ids

    # -- 2. expand -------------------------------------------------------------------------------------------------
    async def expand(self, layer: list[PaperNode], depth: int) -> list[PaperNode]:
        """One layer: every paper expanded at once; the papers they cite queued in the layer's order."""
        expansions = [
            self.early.pop(id(node), None) or self.spawn(self.expand_paper(node, depth, rank))
            for rank, node in enumerate(layer)
        ]
        found: list[PaperNode] = []
        for node, expansion in zip(layer, expansions, strict=True):
            for citation, paper, resolved_by in await expansion:
                if paper is None or not self.touch(normalize_arxiv_id(paper.arxiv_id)):
                    continue
                if not self.rules.keep_paper(paper, self.end_date):
                    continue
                shown = self.rules.shown_title(citation, paper)
                child = self.queue_paper(node, citation.section, paper, shown, depth=depth + 1, tag="Expand")
                child.extra["resolved_by"] = resolved_by
                found.append(child)
        await self.close_phase(found)
        return found

    async def expand_paper(self, node: PaperNode, depth: int, rank: int) -> list[Resolved]:
        """One paper: its sections -> the Crawler's choice of sections -> the papers their citations name."""
        layer = depth + 1
        if self.rules.needs_sections(node):
            sections, _ = await self.call_source("get_sections", layer, node.arxiv_id)
            if not sections:
                self.rules.on_failed_sections(node, sections)
                node.extra["expand"] = "get full paper error"
                return []
            node.sections = sections
            node.section_ids = getattr(sections, "section_ids", None)
            if getattr(sections, "source", ""):
                node.extra["sections_source"] = sections.source
        node.extra["expand"] = "not expand"
        request = (node.title, node.abstract, list(node.sections))
        chosen, reply = await self.crawler_calls.submit(request, key=(depth, rank))
        self.emit("crawler", layer)
        self.emit("chosen", layer, len(chosen))
        if not has_action(reply):
            self.no_action(node.arxiv_id or node.title, reply)
        citations = chosen_citations(node.sections, self.rules.citation_ids(node), chosen)
        resolving = [self.spawn(self.resolve(citation, layer)) for citation in citations]
        return [(citation, *await paper) for citation, paper in zip(citations, resolving, strict=True)]

    async def resolve(self, citation: Citation, layer: int) -> tuple[Paper | None, str]:
        """The paper a citation names, and how it was found: by arXiv id when known, else (or when the source does
        not know the id) by title. Counted in ``root.extra["citations"]``."""
        failed = False
        for how, value in lookup_plan(citation):
            paper, ok = await self.lookup(how, value, layer)
            failed = failed or not ok
            if paper is not None:
                self.citations[f"by_{how}"] += 1
                return paper, how
        self.citations["failed" if failed else "not_found"] += 1
        return None, "title"

    # -- shared steps ----------------------------------------------------------------------------------------------
    def queue_paper(self, parent: PaperNode, key: str, paper: Paper, shown: str, depth: int, tag: str) -> PaperNode:
        """Add a paper to the tree now and ask the Selector for its score (under the title ``shown``)."""
        node = PaperNode.from_paper(paper, depth=depth, source=f"{tag} {paper.source}", score=0.0)
        parent.child.setdefault(key, []).append(node)
        if parent is not self.root:
            parent.extra["expand"] = "success"
        self.scores.append(self.spawn(self.score(node, shown, key=(depth, len(self.scores)))))
        return node

    async def score(self, node: PaperNode, shown: str, key: tuple[int, int]) -> None:
        node.select_score = await self.selector_calls.submit((shown, node.abstract), key=key)
        self.emit("scored", node.depth)
        if self.selector.is_selected(node.select_score):
            self.emit("selected", node.depth)

    async def close_phase(self, queued: list[PaperNode]) -> None:
        """Wait for the phase's scores; its papers go to the recall lists in queue order (released: as scored)."""
        for score in self.scores:
            await score
        self.scores = []
        for node in queued:
            self.root.extra["crawler_recall_papers"].append(node.title)
            if self.selector.is_selected(node.select_score):
                self.root.extra["recall_papers"].append(node.title)

    def start_early_expansion(self, node: PaperNode, rank: int) -> None:
        """Depth-0 papers are all expanded: start now, before the search round's scores are in."""
        if self.cfg.expand_layers > 0:
            self.early[id(node)] = self.spawn(self.expand_paper(node, depth=0, rank=rank))

    def touch(self, arxiv_id: str) -> bool:
        """Record a first sighting in ``touch_ids`` (released order); False when already seen in this run."""
        if arxiv_id in self.touched:
            return False
        self.touched.add(arxiv_id)
        self.root.extra["touch_ids"].append(arxiv_id)
        return True

    def no_action(self, session: str, reply: str) -> None:
        """A crawler reply with no parseable action: one WARNING naming the session, counted, kept raw."""
        logger.warning("crawler reply with no action for %s (query %r): %r", session, self.user_query, reply[:200])
        self.root.extra["failures"]["crawler_no_action"] += 1
        self.root.extra["crawler_raw_replies"].append({"session": session, "reply": reply})

    def emit(self, kind: str, layer: int, count: int = 1) -> None:
        if self.on_event is not None and count:
            self.on_event(AgentEvent(kind, layer, count))

    # -- tool calls ------------------------------------------------------------------------------------------------
    def lookup(self, kind: str, value: str, layer: int) -> asyncio.Task:
        """The paper behind an arXiv id (``kind`` "id") or a cited title ("title"), as a task giving
        ``(paper or None, call succeeded)``: one source call per id / title key in a run, shared by every asker."""
        key = (kind, value if kind == "id" else self.rules.title_key(value))
        if key not in self.lookups:
            method = "get_by_id" if kind == "id" else "get_by_title"
            self.lookups[key] = self.spawn(self.call_source(method, layer, value))
        return self.lookups[key]

    async def call_source(self, method: str, layer: int, *args) -> tuple[Any, bool]:
        """``source.<method>(*args)`` in a thread, within the method's limit. Returns (result, succeeded); a
        failure is logged once, counted and answered with None (a failed call is a skip, never a crashed run)."""
        self.tools_inflight += 1
        try:
            async with self.tool_limits[method]:
                start = time.perf_counter()
                try:
                    result = await asyncio.get_running_loop().run_in_executor(
                        self.tool_pool, getattr(self.source, method), *args
                    )
                except Exception as err:
                    logger.warning("paper source %s(%r) failed: %s: %s", method, args[0], type(err).__name__, err)
                    self.root.extra["failures"][_FAILURE_KIND[method]] += 1
                    self.emit("failed", layer)
                    return None, False
                finally:
                    self.tool_spans.setdefault(method, StageSpan()).add(start, time.perf_counter())
        finally:
            self.tools_inflight -= 1
            self.crawler_calls.poke()
            self.selector_calls.poke()
        self.emit(_EVENT_KIND[method], layer)
        if method != "get_sections" and layer > 0 and result is not None:
            self.emit("found", layer)
        return result, True

    # -- the run's tasks -------------------------------------------------------------------------------------------
    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        """After an error, cancel what is left; wait for the tool threads still running."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.to_thread(self.tool_pool.shutdown, wait=True, cancel_futures=True)

    def spans(self) -> dict[str, StageSpan]:
        out = dict(self.tool_spans)
        if self.search_crawler_span is not None:
            out["crawler_search"] = self.search_crawler_span
        for name, batcher in (("crawler", self.crawler_calls), ("selector", self.selector_calls)):
            if batcher.spans:
                out[name] = StageSpan(
                    min(s.start for s in batcher.spans), max(s.end for s in batcher.spans), len(batcher.spans)
                )
        return out


# -- configuration ------------------------------------------------------------------------------------------------
@dataclass
class AgentConfig:
    """The released knobs of ``run_paper_agent.py`` (DESIGN §1.1), with their defaults, and the released-compat flags.

    Every row of docs/released_differences.md ("Agent") that has a released form is one flag here;
    ``released_behaviour`` sets all of them to their released values (the table in ``pasa/released.py``, which
    also holds each flag's two forms of the step it changes).
    """

    expand_layers: int = field(default=2, metadata={"help": "Number of expansion layers after the search round."})
    search_queries: int = field(default=5, metadata={"help": "Crawler search queries kept (the first ones)."})
    search_papers: int = field(default=10, metadata={"help": "Search results requested per query."})
    expand_papers: int = field(default=20, metadata={"help": "Papers expanded per layer at depth > 0 (top by score)."})
    threads_num: int = field(
        default=20,
        metadata={
            "help": "Concurrent search calls (the released name; released: one thread pool for every tool call). "
            "Lookups and section fetches have their own limit, lookup_concurrency."
        },
    )
    lookup_concurrency: int = field(
        default=256,
        metadata={
            "help": "Concurrent paper lookups (by id or title) and section fetches. Local lookups answer at once; "
            "the web services behind them (arXiv, ar5iv) are rate-limited per host by the HTTP layer, so extra "
            "threads only wait there."
        },
    )
    max_concurrency: int = field(
        default=0,
        metadata={
            "help": "Model calls in flight at once, per model. 0 = the backend's own figure: 1 for a local model "
            "(calls would queue on the device), OpenAILLM's `concurrency` for a server (vLLM, SGLang, OpenAI)."
        },
    )
    model_batch_size: int = field(
        default=0,
        metadata={
            "help": "Most prompts per model call. 0 = the backend's own figure: its batch_size for a local model (a "
            "chunk's results flow on while the next chunk runs), 1 for a server (every prompt is its own request), "
            "no limit for a scripted model. -1 = no limit (the backend splits a call itself)."
        },
    )
    batch_wait_s: float = field(
        default=0.25,
        metadata={
            "help": "Longest a prompt waits for more prompts while tool calls are still running; when no tool call "
            "is running the waiting prompts go at once."
        },
    )
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
        return loop_rules(self).query_limit
