"""Wall time of the agent loop against its critical path, on three kinds of model backend.

The agent runs on a fake paper source and fake models that sleep a fixed time per call. Defaults: a PaSa-sized
world and these latencies: search 0.3 s, id/title lookup 0.05 s, sections 0.2 s, crawler 0.5 s + 0.01 s/prompt per
call, selector 0.05 s + 0.001 s/prompt per call, and the released knobs (expand_layers 2, search_queries 5,
search_papers 10, expand_papers 20, threads 20). Backend kinds:

  A  each model on one device: calls queue (one at a time), a call of n prompts costs base + n x per-prompt
  B  model servers (vLLM, SGLang, OpenAI): concurrent calls overlap (up to --server_concurrency), same cost per call
  C  HF generate in chunks of 8 on one device: a call of n prompts costs ceil(n/8) chunks of base + 8 x per-prompt

The critical path is the longest chain of dependent stages when each stage is one call with all its prompts (on
that backend's cost): crawler(search) -> search -> id lookup -> [selector(search papers) || sections ->
crawler(layer 0) -> title lookups] -> selector(layer 0) -> sections -> crawler(layer 1) -> title lookups ->
selector(layer 1). (Depth-0 papers are all expanded, so their expansion does not wait for the search scores; only
the merge into the queue does.) Per-stage spans are the first start and last end of each kind of call.

``--released`` also runs an emulation of the released loop's threads (one thread per query, threads_num threads
for sections, threads_num x 3 threads per paper for its references, one selector call per query / per paper) on
the same fakes, for comparison.

    python bench/agent_latency.py                      # A, B, C with the released knobs, median of 3 queries
    python bench/agent_latency.py --released           # and the released loop's threads
    python bench/agent_latency.py --kinds A --threads 128 --user_queries 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
from collections import defaultdict

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.llm.scripted import prompt_title, prompt_user_query
from pasa.paper import Paper, PaperNode, normalize_arxiv_id, sort_by_score
from pasa.prompts import EXPAND_RE, parse_search_queries, render_expand_prompt, render_select_prompt
from pasa.selector import Selector
from pasa.tools.sources import InMemoryPaperSource

TOOLS = ("search", "get_by_id", "get_sections", "get_by_title")


class SlowSource:
    """Delegate to a source, sleeping ``latency[method]`` per call and counting calls per method."""

    def __init__(self, source, latency: dict[str, float]):
        self.source, self.latency = source, latency
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def _call(self, method, *args):
        with self._lock:
            self.calls[method] += 1
        time.sleep(self.latency[method])
        return getattr(self.source, method)(*args)

    def search(self, query, k, end_date=None):
        return self._call("search", query, k, end_date)

    def get_by_id(self, arxiv_id):
        return self._call("get_by_id", arxiv_id)

    def get_by_title(self, title):
        return self._call("get_by_title", title)

    def get_sections(self, arxiv_id):
        return self._call("get_sections", arxiv_id)


def call_cost(kind: str, n: int, base: float, per_prompt: float, chunk: int = 8) -> float:
    """Seconds one call of ``n`` prompts takes on backend ``kind``."""
    if n == 0:
        return 0.0
    if kind == "C":
        return sum(base + per_prompt * min(chunk, n - i) for i in range(0, n, chunk))
    return base + per_prompt * n


class FakeModel:
    """A model that answers like ``reply_fn``/``score_fn`` after the latency of backend ``kind``."""

    def __init__(self, kind: str, base: float, per_prompt: float, reply_fn=None, score_fn=None, concurrency=8):
        self.kind, self.base, self.per_prompt = kind, base, per_prompt
        self.reply_fn, self.score_fn = reply_fn, score_fn
        self._device = threading.Lock() if kind in ("A", "C") else None
        # what the agent's micro-batcher reads (as from HFLLM / OpenAILLM)
        if kind == "B":
            self.max_concurrency, self.preferred_batch_size = concurrency, 0
        elif kind == "C":
            self.max_concurrency, self.preferred_batch_size = 1, 8
        self.calls: list[int] = []

    def _sleep(self, n: int) -> None:
        self.calls.append(n)
        cost = call_cost(self.kind, n, self.base, self.per_prompt)
        if self._device is None:
            time.sleep(cost)
        else:
            with self._device:
                time.sleep(cost)

    def generate(self, prompts, chat=True, sample=False):
        self._sleep(len(prompts))
        return [self.reply_fn(p) for p in prompts]

    def true_prob(self, prompts):
        self._sleep(len(prompts))
        return [self.score_fn(p) for p in prompts]


def make_world(n_queries: int, papers_per_query: int, sections: int, refs: int, seed: int = 0):
    """The benchmark world: search hits that overlap across queries; every paper's sections come from a fetch (as
    for papers found online); cited papers overlap across citing papers; titles differ in their letters."""
    import random

    rng = random.Random(seed)
    papers: dict[str, Paper] = {}
    counter = iter(range(10**6))

    def new_paper() -> Paper:
        i = next(counter)
        name = "".join(chr(ord("a") + int(d)) for d in f"{i:06d}")
        p = Paper(f"2401.{i:05d}", f"Paper {name}", "abstract", None, "SearchFrom:bench")
        papers[p.arxiv_id] = p
        return p

    pool = [new_paper() for _ in range(4 * n_queries * papers_per_query)]
    results = {f"query {q}": [rng.choice(pool).arxiv_id for _ in range(papers_per_query)] for q in range(n_queries)}
    cited_pool = [new_paper() for _ in range(500)]
    online: dict[str, dict[str, list[str]]] = {}
    for p in list(papers.values()):
        online[p.arxiv_id] = {
            f"{s} Section": [rng.choice(cited_pool).title for _ in range(refs)] + ["An unknown title"]
            for s in range(sections)
        }
    return list(papers.values()), results, online


class OnlineSections(InMemoryPaperSource):
    def __init__(self, papers, results, online):
        super().__init__(papers, results)
        self.online = online

    def get_sections(self, arxiv_id):
        return self.online.get(arxiv_id)


def crawler_reply_fn(results):
    search_reply = "".join(f"[Search] {q}\n" for q in results) + "[StopSearch]"

    def reply(prompt: str) -> str:
        if prompt_user_query(prompt) is not None:
            return search_reply
        return "[Expand] 0 Section\n[Expand] 1 Section\n[StopExpand]" if prompt_title(prompt) else "[StopExpand]"

    return reply


def score_fn(prompt: str) -> float:
    title = prompt_title(prompt) or ""
    return (sum(map(ord, title)) % 97) / 97


# -- the released loop's threads, emulated on the same fakes ---------------------------------------------------------
def run_threads(fn, n: int) -> None:
    """Run ``fn`` in ``n`` threads and wait for them all (the released loop's ``threading.Thread`` pattern)."""
    threads = [threading.Thread(target=fn) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class ReleasedLoop:
    """The released ``paper_agent.py`` thread structure (not its code) over a PaperSource and LLMs."""

    def __init__(self, crawler_llm, selector_llm, source, cfg: AgentConfig, user_query: str):
        self.crawler_llm, self.selector_llm, self.source, self.cfg = crawler_llm, selector_llm, source, cfg
        self.user_query = user_query
        self.root = PaperNode.root(user_query)
        self.lock = threading.Lock()
        self.queue: list[PaperNode] = []

    def run(self) -> PaperNode:
        (reply,) = self.crawler_llm.generate([f"User Query: {self.user_query}"])
        queries = parse_search_queries(reply, self.cfg.search_queries)
        run_threads(lambda: self.search_worker(queries), len(queries))
        start = 0
        for depth in range(self.cfg.expand_layers):
            layer = sort_by_score(self.queue[start:])
            if depth > 0:
                layer = layer[: self.cfg.expand_papers]
            start = len(self.queue)
            self.expand_layer(layer, depth)
        return self.root

    def touch(self, arxiv_id) -> bool:
        with self.lock:
            if arxiv_id in self.root.extra["touch_ids"]:
                return False
            self.root.extra["touch_ids"].append(arxiv_id)
            return True

    def score_and_add(self, parent, items, depth, tag):
        prompts = [render_select_prompt(self.user_query, shown, p.abstract) for p, shown, _ in items]
        scores = self.selector_llm.true_prob(prompts)
        with self.lock:
            for (p, _, key), s in zip(items, scores, strict=True):
                node = PaperNode.from_paper(p, depth, f"{tag} {p.source}", s)
                parent.child.setdefault(key, []).append(node)
                self.queue.append(node)

    def search_worker(self, queries: list[str]) -> None:
        while True:
            with self.lock:
                if not queries:
                    return
                q = queries.pop()
                self.root.child[q] = []
            found = []
            for arxiv_id in self.source.search(q, self.cfg.search_papers):
                arxiv_id = normalize_arxiv_id(arxiv_id)
                if self.touch(arxiv_id):
                    p = self.source.get_by_id(arxiv_id)
                    if p is not None:
                        found.append((p, p.title, q))
            self.score_and_add(self.root, found, 0, "Search")

    def expand_layer(self, layer: list[PaperNode], depth: int) -> None:
        todo, ready = list(layer), []

        def sections_worker():
            while True:
                with self.lock:
                    if not todo:
                        return
                    node = todo.pop(0)
                if node.sections == "":
                    node.sections = self.source.get_sections(node.arxiv_id)
                if node.sections:
                    node.extra["expand"] = "not expand"
                    with self.lock:
                        ready.append(node)

        run_threads(sections_worker, self.cfg.threads_num)
        replies = self.crawler_llm.generate(
            [render_expand_prompt(self.user_query, n.title, n.abstract, list(n.sections)) for n in ready]
        )
        pairs = list(zip(ready, replies, strict=True))

        def expand_worker():
            while True:
                with self.lock:
                    if not pairs:
                        return
                    node, reply = pairs.pop(0)
                self.expand_paper(node, reply, depth)

        run_threads(expand_worker, self.cfg.threads_num)

    def expand_paper(self, node: PaperNode, reply: str, depth: int) -> None:
        refs = [
            (s.strip(), r)
            for s in EXPAND_RE.findall(reply)
            if s.strip() in node.sections
            for r in node.sections[s.strip()]
        ]
        found, ref_lock = [], threading.Lock()

        def ref_worker():
            while True:
                with ref_lock:
                    if not refs:
                        return
                    section, cited = refs.pop(0)
                p = self.source.get_by_title(cited)
                if p is not None and self.touch(normalize_arxiv_id(p.arxiv_id)):
                    with ref_lock:
                        found.append((p, cited, section))

        run_threads(ref_worker, self.cfg.threads_num * 3)
        self.score_and_add(node, found, depth + 1, "Expand")


# -- the critical path -------------------------------------------------------------------------------------------------
def critical_path(root: PaperNode, kind: str, lat: dict[str, float], layers: int) -> float:
    """Longest chain of dependent stages, one call per stage with all its prompts (see the module docstring)."""
    by_depth: dict[int, list[PaperNode]] = defaultdict(list)
    for node in root.iter_nodes():
        by_depth[node.depth].append(node)

    def crawler(n):
        return call_cost(kind, n, lat["crawler"], lat["crawler_per"])

    def selector(n):
        return call_cost(kind, n, lat["selector"], lat["selector_per"])

    def expanded(depth):
        return sum(1 for n in by_depth[depth] if n.extra.get("expand") in ("not expand", "success"))

    t = crawler(1) + lat["search"] + lat["get_by_id"]
    scores_done = t + selector(len(by_depth[0]))
    for depth in range(layers):
        n_asked = expanded(depth)
        if not by_depth[depth]:
            break
        stage_start = t if depth == 0 else scores_done  # depth 0 starts before the search scores are in
        lookups_done = stage_start + lat["get_sections"] + crawler(n_asked) + (lat["get_by_title"] if n_asked else 0)
        scores_done = max(scores_done, lookups_done) + selector(len(by_depth[depth + 1]))
    return scores_done


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="ABC", help="backend kinds to run (A, B, C)")
    parser.add_argument("--search_queries", type=int, default=5)
    parser.add_argument("--search_papers", type=int, default=10)
    parser.add_argument("--expand_layers", type=int, default=2)
    parser.add_argument("--expand_papers", type=int, default=20)
    parser.add_argument("--threads", type=int, default=20, help="threads_num (released default 20)")
    parser.add_argument("--server_concurrency", type=int, default=8, help="B: calls in flight (OpenAILLM default)")
    parser.add_argument("--user_queries", type=int, default=3, help="queries per kind; the median is reported")
    parser.add_argument("--refs", type=int, default=7, help="cited titles per section (2 sections per paper)")
    parser.add_argument("--released", action="store_true", help="also run the released loop's threads")
    parser.add_argument("--lat_search", type=float, default=0.3)
    parser.add_argument("--lat_lookup", type=float, default=0.05)
    parser.add_argument("--lat_sections", type=float, default=0.2)
    parser.add_argument("--lat_crawler", type=float, default=0.5)
    parser.add_argument("--lat_crawler_per_prompt", type=float, default=0.01)
    parser.add_argument("--lat_selector", type=float, default=0.05)
    parser.add_argument("--lat_selector_per_prompt", type=float, default=0.001)
    return parser


def bench_kind(kind: str, args, world, lat: dict[str, float], config: AgentConfig) -> list[tuple]:
    """Run every user query on backend ``kind``; print a row per loop; returns (kind, loop, wall, critical) rows."""
    papers, results, online = world
    rows = {"stream": [], "released": []}
    spans_seen = None
    for u in range(args.user_queries):
        for loop in ["stream"] + (["released"] if args.released else []):
            source = SlowSource(OnlineSections(papers, results, online), lat)
            crawler_llm = FakeModel(
                kind,
                lat["crawler"],
                lat["crawler_per"],
                reply_fn=crawler_reply_fn(results),
                concurrency=args.server_concurrency,
            )
            selector_llm = FakeModel(
                kind, lat["selector"], lat["selector_per"], score_fn=score_fn, concurrency=args.server_concurrency
            )
            start = time.perf_counter()
            if loop == "stream":
                agent = PaperAgent(Crawler(crawler_llm), Selector(selector_llm), source, config)
                root = agent.run(f"user query {u}")
                spans_seen = (agent.last_spans, start)
            else:
                root = ReleasedLoop(crawler_llm, selector_llm, source, config, f"user query {u}").run()
            wall = time.perf_counter() - start
            crit = critical_path(root, kind, lat, args.expand_layers)
            n = sum(1 for _ in root.iter_nodes())
            rows[loop].append((wall, crit, n, sum(source.calls.values())))
    summary = []
    for loop, runs in rows.items():
        if not runs:
            continue
        wall = statistics.median(r[0] for r in runs)
        crit = statistics.median(r[1] for r in runs)
        print(f"{kind:>4} {loop:>8} {wall:7.2f} {crit:10.2f} {wall / crit:9.2f} {runs[0][2]:6d} {runs[0][3]:10d}")
        summary.append((kind, loop, wall, crit))
    if spans_seen is not None:
        spans, start = spans_seen
        parts = [
            f"{name} {s.start - start:.2f}-{s.end - start:.2f}s/{s.calls}"
            for name, s in sorted(spans.items(), key=lambda kv: kv[1].start)
        ]
        print("     spans (last stream run, start-end/calls): " + ", ".join(parts))
    return summary


def main() -> None:
    args = make_parser().parse_args()
    world = make_world(args.search_queries, args.search_papers, sections=2, refs=args.refs)
    lat = {
        "search": args.lat_search,
        "get_by_id": args.lat_lookup,
        "get_by_title": args.lat_lookup,
        "get_sections": args.lat_sections,
        "crawler": args.lat_crawler,
        "crawler_per": args.lat_crawler_per_prompt,
        "selector": args.lat_selector,
        "selector_per": args.lat_selector_per_prompt,
    }
    config = AgentConfig(
        search_queries=args.search_queries,
        search_papers=args.search_papers,
        expand_layers=args.expand_layers,
        expand_papers=args.expand_papers,
        threads_num=args.threads,
    )
    print(
        f"world: {len(world[0])} papers; knobs: {args.search_queries} queries x {args.search_papers} papers, "
        f"{args.expand_layers} layers, expand_papers {args.expand_papers}, threads {args.threads}"
    )
    print("latencies (s): " + ", ".join(f"{k}={v}" for k, v in lat.items()))
    print(
        f"{'kind':>4} {'loop':>8} {'wall s':>7} {'critical s':>10} {'wall/crit':>9} {'papers':>6} {'tool calls':>10}"
    )
    summary = []
    for kind in args.kinds:
        summary += bench_kind(kind, args, world, lat, config)
    worst = max((w / c for k, loop, w, c in summary if loop == "stream"), default=math.nan)
    print(f"max stream wall / critical path: {worst:.2f} (bar: <= 1.10)")
    if args.released:
        for kind in args.kinds:
            s = {loop: w for k, loop, w, _ in summary if k == kind}
            if "released" in s:
                print(f"{kind}: released / stream = {s['released'] / s['stream']:.2f}x")


if __name__ == "__main__":
    main()
