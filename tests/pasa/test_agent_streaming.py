"""The streaming loop against the sequential reference (tests/pasa/reference_loop.py) on random worlds.

Tools and models answer after random delays, so papers finish their stages in a different order on every run;
the trees must still equal the reference's, in the project's mode and in the released mode (which the reference
then runs as the released loop in its fixed order). Plus the micro-batcher and per-service concurrency.
"""

import asyncio
import random
import threading
import time

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.llm.batcher import MicroBatcher
from pasa.llm.scripted import ScriptedLLM, prompt_title, prompt_user_query
from pasa.paper import Paper
from pasa.selector import Selector
from pasa.tools.sources import InMemoryPaperSource
from tests.pasa.reference_loop import reference_run

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def word(rng, n=6):
    return "".join(rng.choice(LETTERS) for _ in range(n))


def variant(rng, title):
    """The title as a bibliography might write it: same letters, other case and punctuation."""
    return rng.choice([title, title.upper(), title.lower() + ".", f"{title}!", title.replace(" ", "  ")])


class WorldSource(InMemoryPaperSource):
    """InMemory lookups, sections from 'ar5iv' for some papers, random delays so completion order varies."""

    def __init__(self, papers, search, online_sections, rng_seed, max_delay):
        super().__init__(papers, search)
        self.online_sections = online_sections
        self._rng = random.Random(rng_seed)
        self._lock = threading.Lock()
        self.max_delay = max_delay

    def _sleep(self):
        with self._lock:
            delay = self._rng.random() * self.max_delay
        time.sleep(delay)

    def search(self, query, k, end_date=None):
        self._sleep()
        return super().search(query, k, end_date)

    def get_by_id(self, arxiv_id):
        self._sleep()
        return super().get_by_id(arxiv_id)

    def get_by_title(self, title):
        self._sleep()
        return super().get_by_title(title)

    def get_sections(self, arxiv_id):
        self._sleep()
        return self.online_sections.get(arxiv_id)


def make_world(seed):
    rng = random.Random(seed)
    n = 60
    ids = [f"2403.{i:05d}" for i in range(n)]
    titles = {i: f"The {word(rng)} {word(rng, 4)} study" for i in ids}
    papers, online = [], {}
    for i in ids:
        r = rng.random()
        sections = None
        if r < 0.5:
            sections = {
                f"{s} {word(rng, 5)}": [
                    variant(rng, titles[rng.choice(ids)]) if rng.random() < 0.8 else f"Unknown {word(rng)}"
                    for _ in range(rng.randint(0, 5))
                ]
                for s in range(rng.randint(1, 3))
            }
        elif r < 0.6:
            sections = {}  # a DB record with nothing citable
        if rng.random() < 0.5:
            online[i] = {f"9 {word(rng, 5)}": [variant(rng, titles[rng.choice(ids)]) for _ in range(3)]}
        published = rng.choice([None, "20230101", "20250101"])
        p = Paper(i, titles[i], f"Abstract {word(rng)}", sections, "SearchFrom:world", published)
        if sections and rng.random() < 0.5:  # some records know the arXiv id of some citations
            p.section_ids = {
                s: [rng.choice([None, rng.choice(ids), "2403.99999"]) for _ in refs] for s, refs in sections.items()
            }
        papers.append(p)
    queries = [f"q {word(rng)}" for _ in range(6)]
    search = {q: [rng.choice(ids + ["2403.77777"]) + rng.choice(["", "v2"]) for _ in range(8)] for q in queries}
    search[""] = [rng.choice(ids)]
    search_reply = "".join(f"[Search] {rng.choice(queries + [''])}\n" for _ in range(7)) + "[StopSearch]"
    by_title = {p.title: p for p in papers}
    replies = {}
    for p in papers:
        names = list((p.sections or {}) | online.get(p.arxiv_id, {}))
        picks = [rng.choice(names + ["Not A Section"]) for _ in range(rng.randint(0, 3))] if names else []
        replies[p.title] = "".join(f"[Expand] {s}\n" for s in picks) + "[StopExpand]"
    scores = {}

    def score_fn(prompt):  # depends on the exact title string shown (a cited variant scores differently)
        t = prompt_title(prompt)
        if t not in scores:
            scores[t] = random.Random(t).random()
        return scores[t]

    def reply_fn(prompt):
        if prompt_user_query(prompt) is not None:
            return search_reply
        return replies.get(prompt_title(prompt), "")

    assert by_title
    return papers, search, online, reply_fn, score_fn


def strip(tree: dict) -> dict:
    tree = dict(tree)
    tree["extra"] = {
        k: v for k, v in tree["extra"].items() if k not in ("failures", "crawler_raw_replies", "citations")
    }
    return tree


@pytest.mark.parametrize("released", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_reference(seed, released):
    papers, search, online, reply_fn, score_fn = make_world(seed)
    cfg = AgentConfig(released_behaviour=released, expand_papers=6, search_queries=4, search_papers=6)
    ref = reference_run(
        ScriptedLLM(reply_fn=reply_fn),
        ScriptedLLM(score_fn=score_fn),
        WorldSource(papers, search, online, seed, 0.0),
        cfg,
        "user query",
        end_date="20240601",
    )
    agent = PaperAgent(
        Crawler(ScriptedLLM(reply_fn=reply_fn, latency=0.002)),
        Selector(ScriptedLLM(score_fn=score_fn, latency=0.001)),
        WorldSource(papers, search, online, seed + 100, 0.003),
        AgentConfig(
            released_behaviour=released, expand_papers=6, search_queries=4, search_papers=6, batch_wait_s=0.001
        ),
    )
    root = agent.run("user query", end_date="20240601")
    assert sum(1 for _ in root.iter_nodes()) > 5  # the world is not trivial
    assert strip(root.to_dict()) == strip(ref.to_dict())


def test_modes_differ_on_random_worlds():
    """The released and project modes give different trees on these worlds (the rows matter here)."""
    differ = 0
    for seed in range(6):
        papers, search, online, reply_fn, score_fn = make_world(seed)
        trees = []
        for released in (False, True):
            cfg = AgentConfig(released_behaviour=released, expand_papers=6, search_queries=4, search_papers=6)
            trees.append(
                reference_run(
                    ScriptedLLM(reply_fn=reply_fn),
                    ScriptedLLM(score_fn=score_fn),
                    WorldSource(papers, search, online, seed, 0.0),
                    cfg,
                    "user query",
                    end_date="20240601",
                ).to_dict()
            )
        differ += strip(trees[0]) != strip(trees[1])
    assert differ >= 5


# -- the micro-batcher -----------------------------------------------------------------------------------------
def test_batcher_full_batches_then_idle_flush():
    calls = []
    state = {"idle": False}

    async def main():
        b = MicroBatcher(
            lambda items: calls.append(list(items)) or [x * 10 for x in items],
            batch_size=3,
            max_concurrency=1,
            wait_s=60,
            idle=lambda: state["idle"],
        )
        async with b:
            asks = [asyncio.create_task(b.submit(i, key=i)) for i in (5, 1, 4, 2, 3)]  # keys order the waiting
            await asyncio.sleep(0.05)
            assert calls == [[1, 2, 3]]  # only full batches go while not idle
            state["idle"] = True  # nothing else can arrive: the rest goes now
            b.poke()
            return [await a for a in asks]

    assert asyncio.run(main()) == [50, 10, 40, 20, 30]
    assert calls == [[1, 2, 3], [4, 5]]


def test_batcher_settles_again_after_a_poke_while_settling():
    """The last tool call to end pokes the batcher while it is already settling from an earlier poke; the request
    that tool call leads to arrives a few loop passes later and must still join the waiting one."""
    from pasa.llm.batcher import SETTLE_PASSES

    calls = []
    state = {"idle": False}

    async def passes(n):
        for _ in range(n):
            await asyncio.sleep(0)

    async def main():
        b = MicroBatcher(lambda items: calls.append(list(items)) or items, wait_s=60, idle=lambda: state["idle"])
        async with b:
            first = asyncio.create_task(b.submit("first", key=0))
            await passes(SETTLE_PASSES + 4)  # submitted; the batcher settled and waits (not idle)
            b.poke()  # an earlier tool call ends: the batcher starts settling
            await passes(SETTLE_PASSES - 3)
            state["idle"] = True  # the last tool call ends, late in that settling
            b.poke()
            await passes(5)  # its result reaches a new request a few passes later
            second = asyncio.create_task(b.submit("second", key=1))
            return await first, await second

    assert asyncio.run(main()) == ("first", "second")
    assert calls == [["first", "second"]]


def test_batcher_splits_over_free_slots_for_servers_and_waits_for_deadline():
    calls = []
    lock = threading.Lock()

    def call(items):
        with lock:
            calls.append(len(items))
        return items

    async def main():
        async with MicroBatcher(call, batch_size=0, max_concurrency=4, wait_s=0.1, idle=lambda: False) as b:
            asks = [asyncio.create_task(b.submit(i, key=i)) for i in range(10)]
            await asyncio.sleep(0.03)
            assert calls == []  # not due yet, not idle
            return await asyncio.gather(*asks)

    assert asyncio.run(main()) == list(range(10))
    assert sorted(calls) == [2, 2, 3, 3]  # 10 prompts split over 4 free slots


def test_batcher_error_reaches_every_request_of_the_call():
    async def main():
        async with MicroBatcher(lambda items: 1 / 0) as b:
            return await asyncio.gather(b.submit("x"), b.submit("y"), return_exceptions=True)

    assert [type(e) for e in asyncio.run(main())] == [ZeroDivisionError, ZeroDivisionError]


def test_batcher_needs_a_running_dispatcher():
    async def main():
        await MicroBatcher(lambda items: items).submit("x")

    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(main())


def test_model_error_propagates_from_run():
    class Broken(ScriptedLLM):
        def true_prob(self, prompts):
            raise RuntimeError("selector server down")

    agent = PaperAgent(
        Crawler(ScriptedLLM(replies={"q": "[Search] a\n[StopSearch]"})),
        Selector(Broken()),
        InMemoryPaperSource([Paper("2401.00001", "The one", "x")], {"a": ["2401.00001"]}),
    )
    with pytest.raises(RuntimeError, match="selector server down"):
        agent.run("q")


# -- per-service concurrency ---------------------------------------------------------------------------------------
class Peak(InMemoryPaperSource):
    """Records the peak number of concurrent calls per method."""

    def __init__(self, *a):
        super().__init__(*a)
        self.now, self.peak, self._lock = {}, {}, threading.Lock()

    def _enter(self, m):
        with self._lock:
            self.now[m] = self.now.get(m, 0) + 1
            self.peak[m] = max(self.peak.get(m, 0), self.now[m])
        time.sleep(0.02)
        with self._lock:
            self.now[m] -= 1

    def search(self, q, k, end_date=None):
        self._enter("search")
        return super().search(q, k, end_date)

    def get_by_title(self, title):
        self._enter("get_by_title")
        return super().get_by_title(title)


def test_lookups_are_not_bound_by_threads_num():
    cited = [f"The {w} paper" for w in ("alpha beta gamma delta epsilon zeta eta theta iota kappa".split())]
    papers = [Paper("2401.00001", "The root paper", "x", {"S": cited})] + [
        Paper(f"2401.1{i:04d}", t, "x") for i, t in enumerate(cited)
    ]
    source = Peak(papers, {f"q{i}": ["2401.00001"] for i in range(4)})
    reply = "".join(f"[Search] q{i}\n" for i in range(4)) + "[StopSearch]"
    agent = PaperAgent(
        Crawler(ScriptedLLM(replies={"u": reply, "The root paper": "[Expand] S\n[StopExpand]"})),
        Selector(ScriptedLLM()),
        source,
        AgentConfig(threads_num=2, expand_layers=1),
    )
    root = agent.run("u")
    assert len(root.child["q0"][0].child["S"]) == 10
    assert source.peak["search"] == 2  # threads_num bounds search
    assert source.peak["get_by_title"] > 2  # lookups have their own, larger limit
    assert set(agent.last_spans) >= {"search", "get_by_id", "get_by_title", "crawler", "selector"}


def test_papers_stream_through_stages_without_a_layer_barrier():
    """With a crawler answering one paper per call, the first paper's citations are scored while the crawler is
    still busy with the next papers (the layer-by-layer loop would wait for every crawler reply)."""
    events = []

    class OneAtATime(ScriptedLLM):
        preferred_batch_size = 1  # like a local model with batch_size 1: one prompt per call, calls queue

        def generate(self, prompts, chat=True, sample=False):
            out = super().generate(prompts, chat, sample)
            if prompt_user_query(prompts[0]) is None:
                time.sleep(0.1)
                events.append(("crawler done", time.perf_counter()))
            return out

    class Timed(ScriptedLLM):
        def true_prob(self, prompts):
            events.append(("selector", time.perf_counter()))
            return super().true_prob(prompts)

    names = "alpha beta gamma delta".split()
    cited = {n: f"The {n} cited work" for n in names}
    papers = [Paper(f"2401.0000{i}", f"The {n} root", "x", {"S": [cited[n]]}) for i, n in enumerate(names)]
    papers += [Paper(f"2401.1000{i}", cited[n], "x") for i, n in enumerate(names)]
    replies = {"u": "[Search] s\n[StopSearch]", **{f"The {n} root": "[Expand] S\n[StopExpand]" for n in names}}
    agent = PaperAgent(
        Crawler(OneAtATime(replies=replies)),
        Selector(Timed(scores={f"The {n} root": 0.9 - i / 10 for i, n in enumerate(names)})),
        InMemoryPaperSource(papers, {"s": [p.arxiv_id for p in papers[:4]]}),
        AgentConfig(expand_layers=1, batch_wait_s=0.01),
    )
    root = agent.run("u")
    assert [len(n.child["S"]) for n in root.child["s"]] == [1, 1, 1, 1]
    last_crawler = max(t for e, t in events if e == "crawler done")
    selector_calls = [t for e, t in events if e == "selector"]
    assert len(selector_calls) >= 3  # search papers, then children in more than one call
    assert selector_calls[1] < last_crawler - 0.1  # children scored while the crawler still works


def test_loop_sleeps_while_a_model_call_is_in_flight():
    """Prompts past their deadline wait for the busy model without the loop spinning on the CPU."""

    class SlowSearch(InMemoryPaperSource):
        def search(self, query, k, end_date=None):
            if query == "late":
                time.sleep(0.1)
            return super().search(query, k, end_date)

    papers = [Paper("2401.00001", "The first", "x"), Paper("2401.00002", "The second", "x")]
    agent = PaperAgent(
        Crawler(ScriptedLLM(replies={"u": "[Search] early\n[Search] late\n[StopSearch]"})),
        Selector(ScriptedLLM(latency=0.8)),
        SlowSearch(papers, {"early": ["2401.00001"], "late": ["2401.00002"]}),
        AgentConfig(expand_layers=0, batch_wait_s=0.01),
    )
    cpu = time.thread_time()
    root = agent.run("u")
    assert [len(v) for v in root.child.values()] == [1, 1]
    assert len(agent.selector.llm.calls) == 2  # the late paper waited for the busy selector
    assert time.thread_time() - cpu < 0.2  # (a spinning loop burns up to 0.7 s here)
