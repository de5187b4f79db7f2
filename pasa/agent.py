"""PaperAgent: the Crawler/Selector loop of DESIGN §1.1 over a PaperSource, streamed.

The algorithm is the released ``paper_agent.py``:

1. **Search.** One Crawler call on the ``generate_query`` prompt; the first ``search_queries`` queries are
   searched; ids are deduplicated against ``touch_ids`` in query order, resolved to papers, scored by the
   Selector, and added as depth-0 children of the root under their query.
2. **Expand**, for ``depth`` in ``0..expand_layers-1``: the papers added since the last layer, sorted by score
   (stable), all of them at depth 0 and the top ``expand_papers`` later; for each, its sections (record, else
   fetched), the Crawler's ``select_section`` choice, the cited papers of the chosen sections resolved (by arXiv id
   when known, else by title), deduplicated by arXiv id, scored and added as children (depth + 1) under the
   section.

It runs as a stream (issue 13): each paper moves through its stages (sections -> crawler -> citation lookups ->
selector -> queue) as soon as its own inputs are ready. The only barriers are the algorithm's: a layer is sorted
by score before it is expanded (and cut to the top ``expand_papers`` after depth 0). Depth-0 papers are all
expanded, so their sections and crawler calls start while search papers are still being scored. Model calls go
through one ``MicroBatcher`` per model; tool calls run in per-service pools (``threads_num`` for search,
``lookup_concurrency`` for lookups and sections).

All bookkeeping happens on the thread that called ``run``: workers only call the source or the model and hand
the result back through one event queue. Results are merged in a fixed order (query order, queue order, section
order, reference order), the same order as the layer-by-layer loop, so a run is reproducible and the tree does not
depend on timing. Source failures are logged, counted in ``root.extra["failures"]`` and skipped; model errors
propagate to the caller (the batch runner logs them and goes on with the next query).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pasa.crawler import Crawler
from pasa.llm.batcher import MicroBatcher
from pasa.paper import Paper, PaperNode, empty_failures, normalize_arxiv_id, sort_by_score, title_key
from pasa.prompts import has_action
from pasa.selector import Selector
from pasa.tools.sources import PaperSource, published_before

logger = logging.getLogger(__name__)


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
        return self.expand_papers if self.search_queries_from_expand_papers else self.search_queries


# PaperSource method -> the failure kind it counts as (``root.extra["failures"]``).
_FAILURE_KIND = {"search": "search", "get_by_id": "lookup", "get_by_title": "title", "get_sections": "sections"}


@dataclass
class _Ref:
    """One citation to resolve: the section, the cited string, its arXiv id if known, and the answer."""

    section: str
    cited: str
    arxiv_id: str | None = None
    paper: Paper | None = None
    resolved_by: str = "title"


@dataclass
class _Expansion:
    """A paper's way through one expansion: sections -> crawler -> citation lookups -> ready to merge."""

    node: PaperNode
    depth: int
    ready: bool = False
    request: Any = None  # the crawler request while it waits (its key is the paper's rank in the layer)
    refs: list[_Ref] = field(default_factory=list)
    unresolved: int = 0


@dataclass
class StageSpan:
    """First start and last end of one kind of call in a run (``time.perf_counter``), and how many calls."""

    start: float = float("inf")
    end: float = 0.0
    calls: int = 0


class PaperAgent:
    """Run the PaSa loop for one user query: ``PaperAgent(crawler, selector, source, config).run(query)``.

    After a run, ``last_spans`` holds the per-stage spans (tool kinds, crawler, selector) for benchmarks.
    """

    def __init__(self, crawler: Crawler, selector: Selector, source: PaperSource, config: AgentConfig | None = None):
        self.crawler = crawler
        self.selector = selector
        self.source = source
        self.config = config or AgentConfig()
        self.last_spans: dict[str, StageSpan] = {}

    def run(self, user_query: str, end_date: str | None = None, answer: list[str] | None = None) -> PaperNode:
        """Search, then ``expand_layers`` expansion layers. ``end_date``: ``YYYYMMDD`` or None."""
        run = _Run(self, user_query, end_date, answer)
        try:
            run.search()
            for depth in range(self.config.expand_layers):
                run.expand(depth)
        finally:
            run.close()
            self.last_spans = run.spans()
        return run.root


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
    """The state of one run. Every method runs on the caller's thread; workers only hand results back."""

    def __init__(self, agent: PaperAgent, user_query: str, end_date: str | None, answer: list[str] | None):
        self.agent, self.cfg, self.source = agent, agent.config, agent.source
        self.user_query, self.end_date = user_query, end_date
        self.root = PaperNode.root(user_query)
        if answer is not None:
            self.root.extra["answer"] = list(answer)
        # after the released keys: failed tool calls and crawler replies without actions (issue 11)
        self.root.extra["failures"] = empty_failures()
        self.root.extra["crawler_raw_replies"] = []
        self.queue: list[PaperNode] = []
        self.expand_start = 0
        self.touched: set[str] = set()

        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.tools_inflight = 0
        self._tool_spans: dict[str, StageSpan] = {}
        cfg = self.cfg
        lookups = max(1, cfg.lookup_concurrency)
        self.pools = {
            "search": ThreadPoolExecutor(max(1, cfg.threads_num), thread_name_prefix="pasa-search"),
            "get_by_id": ThreadPoolExecutor(lookups, thread_name_prefix="pasa-lookup"),
            "get_by_title": ThreadPoolExecutor(lookups, thread_name_prefix="pasa-title"),
            "get_sections": ThreadPoolExecutor(lookups, thread_name_prefix="pasa-sections"),
        }
        c_size, c_conc = _model_limits(agent.crawler.llm, cfg.model_batch_size, cfg.max_concurrency)
        s_size, s_conc = _model_limits(agent.selector.llm, cfg.model_batch_size, cfg.max_concurrency)
        self.crawler_batcher = MicroBatcher(
            lambda items: agent.crawler.expand_sections(user_query, items),
            self.emit,
            c_size,
            c_conc,
            cfg.batch_wait_s,
            "crawler",
        )
        self.selector_batcher = MicroBatcher(
            lambda items: agent.selector.score(user_query, items),
            self.emit,
            s_size,
            s_conc,
            cfg.batch_wait_s,
            "selector",
        )
        self.batchers = (self.crawler_batcher, self.selector_batcher)
        self.search_crawler_span: tuple[float, float] | None = None

        # one lookup per arXiv id and per title key in a run: key -> (done, paper, waiting callbacks)
        self.lookups: dict[tuple[str, str], list] = {}
        self.expansions: dict[int, _Expansion] = {}
        self.scores_pending = 0
        self.order: list[PaperNode] | None = None  # the layer being merged, in queue order
        self.cursor = 0
        self.merged: list[tuple[PaperNode, str]] = []  # (node, title) of the phase, in merge order

    # -- the event loop ----------------------------------------------------------------------------------------
    def emit(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Called from worker threads: run ``fn(arg)`` on the loop's thread."""
        self.events.put((fn, arg))

    def drive(self, finished: Callable[[], bool]) -> None:
        """Handle events until ``finished()``; dispatch model calls when due."""
        while not finished():
            idle = self.events.empty() and self.tools_inflight == 0
            for batcher in self.batchers:
                batcher.dispatch(idle)
            if not self.events.empty():
                fn, arg = self.events.get()
                fn(arg)
                continue
            if self.tools_inflight == 0 and not any(b.inflight for b in self.batchers):
                if any(b.pending for b in self.batchers):
                    continue  # idle: the next pass dispatches them
                raise RuntimeError("agent loop stalled: nothing in flight and the phase is not finished")
            # wake up for a deadline only where a call slot is free (else a finished call wakes the loop)
            deadlines = [
                d for b in self.batchers if b.inflight < b.max_concurrency and (d := b.deadline()) is not None
            ]
            timeout = max(0.0, min(deadlines) - time.perf_counter()) if deadlines else None
            try:
                fn, arg = self.events.get(timeout=timeout)
            except queue.Empty:
                continue
            fn(arg)

    def close(self) -> None:
        for pool in self.pools.values():  # after an error, calls not started yet are dropped
            pool.shutdown(wait=True, cancel_futures=True)
        for batcher in self.batchers:
            batcher.close()

    def spans(self) -> dict[str, StageSpan]:
        out = dict(self._tool_spans)
        if self.search_crawler_span is not None:
            start, end = self.search_crawler_span
            out["crawler_search"] = StageSpan(start, end, 1)
        for name, batcher in (("crawler", self.crawler_batcher), ("selector", self.selector_batcher)):
            if batcher.spans:
                out[name] = StageSpan(
                    min(s.start for s in batcher.spans), max(s.end for s in batcher.spans), len(batcher.spans)
                )
        return out

    # -- tool calls --------------------------------------------------------------------------------------------
    def tool(self, method: str, arg, *rest, then: Callable[[Any], None]) -> None:
        """Call ``source.<method>(arg, *rest)`` in the method's pool; ``then(result or None)`` runs on this thread."""
        self.tools_inflight += 1
        fn = getattr(self.source, method)
        span = self._tool_spans.setdefault(method, StageSpan())

        def work():
            start = time.perf_counter()
            try:
                result, error = fn(arg, *rest), None
            except Exception as err:  # one failed tool call is a logged, counted skip, never a crashed run
                result, error = None, err
            return result, error, start, time.perf_counter()

        def done(future: Future):
            self.emit(finish, future)

        def finish(future: Future):
            self.tools_inflight -= 1
            result, error, start, end = future.result()
            span.start, span.end, span.calls = min(span.start, start), max(span.end, end), span.calls + 1
            if error is not None:
                logger.warning("paper source %s(%r) failed: %s: %s", method, arg, type(error).__name__, error)
                self.root.extra["failures"][_FAILURE_KIND[method]] += 1
            then(result)

        self.pools[method].submit(work).add_done_callback(done)

    def lookup(self, kind: str, key: str, method: str, arg: str, then: Callable[[Paper | None], None]) -> None:
        """One source call per ``(kind, key)`` in a run; later askers get the same answer."""
        entry = self.lookups.get((kind, key))
        if entry is None:
            entry = self.lookups[(kind, key)] = [False, None, [then]]

            def found(paper, entry=entry):
                entry[0], entry[1] = True, paper
                waiting, entry[2] = entry[2], []
                for callback in waiting:
                    callback(paper)

            self.tool(method, arg, then=found)
        elif entry[0]:
            then(entry[1])
        else:
            entry[2].append(then)

    # -- shared steps --------------------------------------------------------------------------------------------
    def touch(self, arxiv_id: str) -> bool:
        """Record a first sighting in ``touch_ids`` (released order); False when already seen in this run."""
        if arxiv_id in self.touched:
            return False
        self.touched.add(arxiv_id)
        self.root.extra["touch_ids"].append(arxiv_id)
        return True

    def keep(self, paper: Paper | None) -> bool:
        if paper is None:
            return False
        if self.cfg.filter_by_end_date and not published_before(paper, self.end_date):
            logger.debug(
                "dropped %s (published %s, after end date %s)", paper.arxiv_id, paper.published, self.end_date
            )
            return False
        return True

    def no_action(self, session: str, reply: str) -> None:
        """A crawler reply with no parseable action: one WARNING naming the session, counted, kept raw."""
        logger.warning("crawler reply with no action for %s (query %r): %r", session, self.user_query, reply[:200])
        self.root.extra["failures"]["crawler_no_action"] += 1
        self.root.extra["crawler_raw_replies"].append({"session": session, "reply": reply})

    def cap_query(self, query: str) -> str:
        cap = self.cfg.max_query_chars
        if cap and len(query) > cap:
            logger.warning("search query of %d characters cut to %d: %r...", len(query), cap, query[:80])
            return query[:cap].rstrip()
        return query

    def attach(self, parent: PaperNode, key: str, paper: Paper, shown: str, depth: int, tag: str) -> PaperNode:
        """Add a paper to the tree and the queue now; its score arrives from the Selector later."""
        node = PaperNode.from_paper(paper, depth=depth, source=f"{tag} {paper.source}", score=0.0)
        parent.child.setdefault(key, []).append(node)
        if parent is not self.root:
            parent.extra["expand"] = "success"
        self.queue.append(node)
        self.merged.append((node, paper.title))
        self.scores_pending += 1

        def scored(score: float, node=node):
            node.select_score = score
            self.scores_pending -= 1

        self.selector_batcher.submit((depth, len(self.merged)), (shown, paper.abstract), scored)
        return node

    def close_phase(self) -> None:
        """The phase's papers in merge order go to the recall lists (released: appended as they were scored)."""
        extra = self.root.extra
        for node, title in self.merged:
            extra["crawler_recall_papers"].append(title)
            if self.agent.selector.is_selected(node.select_score):
                extra["recall_papers"].append(title)
        self.merged = []

    # -- 1. search -----------------------------------------------------------------------------------------------
    def search(self) -> None:
        cfg = self.cfg
        start = time.perf_counter()
        queries, reply = self.agent.crawler.search_queries(
            self.user_query, limit=cfg.query_limit, keep_empty=cfg.keep_empty_queries
        )
        self.search_crawler_span = (start, time.perf_counter())
        if not has_action(reply):
            self.no_action("search", reply)
        # a repeated query would only find touched ids again (released: searched twice, same tree)
        queries = list(dict.fromkeys(self.cap_query(q) for q in queries))
        for q in queries:
            self.root.child[q] = []
        results: list[list[str] | None] = [None] * len(queries)
        pending: list[tuple[str, str]] = []  # (query, id) touched in query order, waiting for their paper
        papers: dict[str, tuple[bool, Paper | None]] = {}
        state = {"query": 0, "paper": 0}

        def merge() -> None:
            while state["query"] < len(queries) and results[state["query"]] is not None:
                q = queries[state["query"]]
                pending.extend((q, i) for i in results[state["query"]] if self.touch(i))
                state["query"] += 1
            while state["paper"] < len(pending) and pending[state["paper"]][1] in papers:
                q, arxiv_id = pending[state["paper"]]
                paper = papers[arxiv_id][1]
                if self.keep(paper):
                    node = self.attach(self.root, q, paper, paper.title, depth=0, tag="Search")
                    if cfg.expand_layers > 0:  # every depth-0 paper is expanded: start on it now
                        self.start_expansion(node, depth=0, rank=len(self.queue))
                state["paper"] += 1

        def searched(ids, i: int) -> None:
            ids = [normalize_arxiv_id(a) for a in ids or []]
            results[i] = ids
            for arxiv_id in ids:

                def found(paper, arxiv_id=arxiv_id):
                    papers[arxiv_id] = (True, paper)
                    merge()

                self.lookup("id", arxiv_id, "get_by_id", arxiv_id, found)
            merge()

        for i, q in enumerate(queries):
            self.tool("search", q, cfg.search_papers, self.end_date, then=lambda ids, i=i: searched(ids, i))
        self.drive(
            lambda: state["query"] == len(queries) and state["paper"] == len(pending) and not self.scores_pending
        )
        self.close_phase()

    # -- 2. expand -----------------------------------------------------------------------------------------------
    def expand(self, depth: int) -> None:
        layer = sort_by_score(self.queue[self.expand_start :])
        self.queue[self.expand_start :] = layer
        if depth > 0:
            layer = layer[: self.cfg.expand_papers]
        self.expand_start = len(self.queue)
        self.order, self.cursor = layer, 0
        for rank, node in enumerate(layer):
            exp = self.expansions.get(id(node))
            if exp is None:
                self.start_expansion(node, depth, rank)
            elif exp.request is not None:  # started early (depth 0): now its rank is known, ask in rank order
                exp.request.key = (depth, rank)
        self.merge_layer()
        self.drive(lambda: self.cursor == len(layer) and not self.scores_pending)
        self.order = None
        self.close_phase()

    def needs_sections(self, node: PaperNode) -> bool:
        """Released: fetch only when the record had none (""); the project also fetches for {}."""
        if not isinstance(node.sections, dict):
            return True
        return not node.sections and self.cfg.refetch_empty_sections

    def start_expansion(self, node: PaperNode, depth: int, rank: int) -> None:
        exp = self.expansions.get(id(node))
        if exp is not None:
            return  # started early (depth 0)
        exp = self.expansions[id(node)] = _Expansion(node, depth)
        if not self.needs_sections(node):
            self.sections_ready(exp, rank, fetched=False)
            return

        def fetched(sections) -> None:
            if sections:
                node.sections = sections
                node.section_ids = None  # fetched sections carry no ids
            elif self.cfg.keep_failed_sections:
                node.sections = sections  # released: null (fetch failed) or {} (nothing citable)
            self.sections_ready(exp, rank, fetched=True)

        self.tool("get_sections", node.arxiv_id, then=fetched)

    def sections_ready(self, exp: _Expansion, rank: int, fetched: bool) -> None:
        node = exp.node
        # fetched: expandable when the fetch found sections; not fetched: a dict ({} only when not refetching)
        if not (node.has_sections or (not fetched and isinstance(node.sections, dict))):
            node.extra["expand"] = "get full paper error"
            exp.ready = True
            self.merge_layer()
            return
        node.extra["expand"] = "not expand"
        item = (node.title, node.abstract, list(node.sections))
        exp.request = self.crawler_batcher.submit((exp.depth, rank), item, lambda choice: self.replied(exp, choice))

    def replied(self, exp: _Expansion, choice: tuple[list[str], str]) -> None:
        chosen, reply = choice
        exp.request = None
        node, cfg = exp.node, self.cfg
        if not has_action(reply):
            self.no_action(node.arxiv_id or node.title, reply)
        for section in chosen:
            ids = (node.section_ids or {}).get(section) if cfg.resolve_citations_by_id else None
            for i, cited in enumerate(node.sections[section]):
                arxiv_id = ids[i] if ids is not None and i < len(ids) and ids[i] else None
                exp.refs.append(_Ref(section, cited, normalize_arxiv_id(arxiv_id) if arxiv_id else None))
        exp.unresolved = len(exp.refs)
        if not exp.refs:
            exp.ready = True
            self.merge_layer()
            return
        for ref in exp.refs:
            self.resolve(exp, ref)

    def resolve(self, exp: _Expansion, ref: _Ref) -> None:
        """The paper behind a citation: by its arXiv id when known (an unknown id falls back to the title)."""

        def settle(paper: Paper | None, how: str) -> None:
            ref.paper, ref.resolved_by = paper, how
            exp.unresolved -= 1
            if exp.unresolved == 0:
                exp.ready = True
                self.merge_layer()

        def by_title() -> None:
            key = title_key(ref.cited) if self.cfg.dedup_title_lookups else ref.cited
            self.lookup("title", key, "get_by_title", ref.cited, lambda p: settle(p, "title"))

        if ref.arxiv_id:
            self.lookup("id", ref.arxiv_id, "get_by_id", ref.arxiv_id, lambda p: settle(p, "id") if p else by_title())
        else:
            by_title()

    def merge_layer(self) -> None:
        """Merge ready papers of the current layer in queue order: touch, filter, attach, send to the Selector."""
        if self.order is None:
            return
        cfg = self.cfg
        while self.cursor < len(self.order):
            exp = self.expansions[id(self.order[self.cursor])]
            if not exp.ready:
                return
            for ref in exp.refs:
                paper = ref.paper
                if paper is None:
                    continue
                if self.touch(normalize_arxiv_id(paper.arxiv_id)) and self.keep(paper):
                    shown = ref.cited if cfg.selector_sees_cited_title else paper.title
                    child = self.attach(exp.node, ref.section, paper, shown, depth=exp.depth + 1, tag="Expand")
                    child.extra["resolved_by"] = ref.resolved_by
            self.cursor += 1
