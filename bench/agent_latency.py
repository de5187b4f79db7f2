"""Wall time of the agent loop against its critical path, with simulated tool and model latencies.

The agent runs on a fake paper source and scripted LLMs that sleep a fixed time per call (search, id lookup,
section fetch, title lookup, crawler call, selector call). The steps of DESIGN §1.1 that depend on each other
are: crawler(search) -> search -> id lookup -> selector, then per layer: section fetch -> crawler(expand) ->
title lookup -> selector; the critical path is the sum of one latency per non-empty stage. With a pool of
``threads`` workers a stage of n independent calls takes ceil(n / threads) latencies: the "pool bound" column.

    python bench/agent_latency.py                       # 5 search queries x 10 papers, 2 layers, 128 threads
    python bench/agent_latency.py --threads 20 --user_queries 3
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections import defaultdict

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.llm.scripted import ScriptedLLM, prompt_title, prompt_user_query
from pasa.paper import Paper
from pasa.selector import Selector
from pasa.tools.sources import InMemoryPaperSource


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


def make_world(n_queries: int, papers_per_query: int, sections: int, refs: int):
    """Search papers with ``sections`` sections of ``refs`` fresh cited papers each (a tree, no overlaps)."""
    papers, results, counter = [], {}, iter(range(10**6))

    def new_paper(with_sections: bool) -> Paper:
        i = next(counter)
        name = "".join(chr(ord("a") + int(d)) for d in f"{i:06d}")  # letters only: titles must differ in letters
        secs = None
        if with_sections:
            secs = {f"{s} Section": [new_paper(False).title for _ in range(refs)] for s in range(sections)}
        p = Paper(f"2401.{i:05d}", f"Paper {name}", "abstract", secs, "SearchFrom:bench")
        papers.append(p)
        return p

    for q in range(n_queries):
        results[f"query {q}"] = [new_paper(True).arxiv_id for _ in range(papers_per_query)]
    # depth-1 papers get sections too, so layer 1 has work
    for p in list(papers):
        if p.sections is None:
            p.sections = {"1 Section": [new_paper(False).title for _ in range(refs)]}
    return papers, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search_queries", type=int, default=5)
    parser.add_argument("--search_papers", type=int, default=10)
    parser.add_argument("--expand_layers", type=int, default=2)
    parser.add_argument("--expand_papers", type=int, default=20)
    parser.add_argument("--threads", type=int, default=128)
    parser.add_argument("--user_queries", type=int, default=3, help="user queries run one after another")
    parser.add_argument("--lat_search", type=float, default=0.20)
    parser.add_argument("--lat_id", type=float, default=0.10)
    parser.add_argument("--lat_sections", type=float, default=0.15)
    parser.add_argument("--lat_title", type=float, default=0.10)
    parser.add_argument("--lat_crawler", type=float, default=0.30)
    parser.add_argument("--lat_selector", type=float, default=0.20)
    args = parser.parse_args()

    papers, results = make_world(args.search_queries, args.search_papers, sections=2, refs=1)
    latency = {
        "search": args.lat_search,
        "get_by_id": args.lat_id,
        "get_sections": args.lat_sections,
        "get_by_title": args.lat_title,
    }

    def crawler_reply(prompt: str) -> str:
        if prompt_user_query(prompt) is not None:
            return "".join(f"[Search] {q}\n" for q in results) + "[StopSearch]"
        return "[Expand] 0 Section\n[Expand] 1 Section\n[StopExpand]" if prompt_title(prompt) else "[StopExpand]"

    config = AgentConfig(
        search_queries=args.search_queries,
        search_papers=args.search_papers,
        expand_layers=args.expand_layers,
        expand_papers=args.expand_papers,
        threads_num=args.threads,
    )
    print(
        f"agent: {args.search_queries} search queries x {args.search_papers} papers, {args.expand_layers} layers, "
        f"expand_papers={args.expand_papers}, threads={args.threads}"
    )
    print(
        "latencies (s): "
        + ", ".join(f"{k}={v}" for k, v in latency.items())
        + f", crawler={args.lat_crawler}, selector={args.lat_selector}"
    )
    print(
        f"{'query':>5} {'wall s':>8} {'critical s':>10} {'pool bound s':>12} {'wall/critical':>13} {'papers':>7} {'tool calls':>10}"
    )
    ratios = []
    for u in range(args.user_queries):
        source = SlowSource(InMemoryPaperSource(papers, results), latency)
        crawler_llm = ScriptedLLM(reply_fn=crawler_reply, latency=args.lat_crawler)
        selector_llm = ScriptedLLM(default_score=0.6, latency=args.lat_selector)
        agent = PaperAgent(Crawler(crawler_llm), Selector(selector_llm), source, config)

        # count the stage sizes by wrapping the pool's map
        stages: list[tuple[str, int]] = []
        orig_map = agent._map

        def counting_map(pool, fn, items, _orig=orig_map, _stages=stages):
            items = list(items)
            _stages.append(("tools", len(items)))
            return _orig(pool, fn, items)

        agent._map = counting_map
        start = time.perf_counter()
        root = agent.run(f"user query {u}")
        wall = time.perf_counter() - start

        # bound: model calls (one per step) + tool stages in the order the loop runs them
        tool_lat = [latency["search"], latency["get_by_id"]]
        tool_lat += [latency["get_sections"], latency["get_by_title"]] * args.expand_layers
        models = len(crawler_llm.calls) * args.lat_crawler + len(selector_llm.calls) * args.lat_selector
        critical = models + sum(lat for (_, n), lat in zip(stages, tool_lat) if n)
        bound = models + sum(math.ceil(n / args.threads) * lat for (_, n), lat in zip(stages, tool_lat))
        ratio = wall / critical
        ratios.append(ratio)
        n_papers = sum(1 for _ in root.iter_nodes())
        calls = sum(source.calls.values())
        print(f"{u:>5} {wall:8.3f} {critical:10.3f} {bound:12.3f} {ratio:13.3f} {n_papers:7d} {calls:10d}")
    print(f"max wall / critical path: {max(ratios):.3f} (target <= 1.2; the pool bound exceeds the critical path")
    print("when a stage has more calls than --threads)")


if __name__ == "__main__":
    main()
