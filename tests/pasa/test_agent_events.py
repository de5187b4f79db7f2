"""What a run reports beside the tree: progress events, seed papers, citation counts, where sections came from.

The world is the scripted one of test_agent.py; the expected counts are worked out by hand in each test.
"""

import asyncio
import logging
import threading
from collections import Counter

from pasa.agent import AgentConfig, AgentEvent, PaperAgent
from pasa.crawler import Crawler
from pasa.paper import CitedSections
from pasa.selector import Selector
from tests.fakes import InMemoryPaperSource, ScriptedLLM, paper
from tests.pasa.test_agent import PAPERS, REPLIES, SCORES, SEARCH, UNKNOWN, A, B, C, E, F, H, t
from tests.pasa.test_agent_released import FAIL_WORLD, Failing


def make_agent(config=None, papers=PAPERS, search=SEARCH, replies=REPLIES, source_cls=InMemoryPaperSource):
    return PaperAgent(
        Crawler(ScriptedLLM(replies=replies)),
        Selector(ScriptedLLM(scores=SCORES)),
        source_cls(papers, search),
        config or AgentConfig(expand_papers=2),
    )


def collect(agent, query="find things", **kw):
    events, threads = Counter(), set()

    def on_event(event: AgentEvent):
        threads.add(threading.get_ident())
        events[event.layer, event.kind] += event.count

    root = agent.run(query, on_event=on_event, **kw)
    return root, events, threads


# -- progress events ---------------------------------------------------------------------------------------------
def test_events_count_every_stage_per_layer():
    root, events, threads = collect(make_agent(), end_date="20240601")
    assert threads == {threading.get_ident()}  # on the caller's thread
    assert events == Counter(
        {
            # search: 3 queries written (q1 twice), 2 searched, 6 ids -> 5 distinct ids looked up (one unknown);
            # A B C D scored, A (0.9) and C (0.6) above 0.5
            (0, "queries"): 3, (0, "search"): 2, (0, "ids"): 6, (0, "lookup"): 5,
            (0, "scored"): 4, (0, "selected"): 2,
            # layer 1: B and D fetched (nothing there); crawler on A (2 sections) and C (1); 5 distinct titles
            # looked up (E, G, the missing one, F, A), 4 found; new papers E G F scored, E and F selected
            (1, "sections"): 2, (1, "crawler"): 2, (1, "chosen"): 3, (1, "lookup"): 5, (1, "found"): 4,
            (1, "scored"): 3, (1, "selected"): 2,
            # layer 2: top 2 of E G F are F and E; E fetched (nothing); F's section cites H (after the end date)
            (2, "sections"): 1, (2, "crawler"): 1, (2, "chosen"): 1, (2, "lookup"): 1, (2, "found"): 1,
        }
    )  # fmt: skip
    assert events[0, "scored"] == len(root.child["q1"]) + len(root.child["q2"])


def test_failed_calls_are_events_of_their_layer():
    world = {k: v for k, v in FAIL_WORLD.items() if k != "scores"}
    agent = make_agent(AgentConfig(expand_layers=1), source_cls=Failing, **world)
    root, events, _ = collect(agent, query="q")
    # layer 0: search "bad" and the lookup of C; layer 1: the sections of D and the title "Broken"
    assert (events[0, "failed"], events[1, "failed"]) == (2, 2)
    assert sum(root.extra["failures"].values()) - root.extra["failures"]["crawler_no_action"] == 4


def test_run_from_a_worker_thread_and_from_a_running_event_loop():
    expected = make_agent().run("find things").to_dict()
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("tree", make_agent().run("find things").to_dict()))
    worker.start()
    worker.join()
    assert out["tree"] == expected

    async def notebook():
        return make_agent().run("find things").to_dict()

    assert asyncio.run(notebook()) == expected


# -- seed papers ---------------------------------------------------------------------------------------------------
def test_seed_papers_are_queued_first_scored_and_expanded(caplog):
    agent = make_agent(AgentConfig(expand_papers=2))
    with caplog.at_level(logging.WARNING, logger="pasa.agent"):
        root = agent.run("find things", seed_papers=[f"{F}v1", A, UNKNOWN])
    assert list(root.child)[:1] == ["[Seed]"] and {"q1", "q2"} <= set(root.child)
    f, a = root.child["[Seed]"]
    assert [(n.arxiv_id, n.depth, n.select_score) for n in (f, a)] == [(F, 0, SCORES[t(F)]), (A, 0, SCORES[t(A)])]
    assert f.source.startswith("Seed ") and root.extra["touch_ids"][:3] == [F, A, UNKNOWN]
    assert f.extra["expand"] == "success" and [c.arxiv_id for c in f.child["S"]] == [H]  # H: no end date here
    assert a.extra["expand"] == "success"  # A is expanded as a seed, and searched only once
    assert [n.arxiv_id for n in root.child["q1"]] == [B, C]
    assert f"{UNKNOWN} not found" in caplog.text
    assert t(F) in root.extra["crawler_recall_papers"] and t(F) in root.extra["recall_papers"]


def test_seed_papers_without_expansion_are_scored_whatever_their_date():
    root = make_agent(AgentConfig(expand_layers=0)).run("find things", end_date="20240601", seed_papers=[E, H])
    e, h = root.child["[Seed]"]  # H is published after the end date: the user named it, it stays
    assert [(n.arxiv_id, n.select_score, n.extra) for n in (e, h)] == [(E, SCORES[t(E)], {}), (H, SCORES[t(H)], {})]


# -- citation counts and fetched sections --------------------------------------------------------------------------
class CitedSource(Failing):
    """Sections fetched as a page would give them: with the cited arXiv ids and the page they came from (and the
    title "Broken" fails to look up)."""

    def get_sections(self, arxiv_id):
        if arxiv_id == A:
            names = ["Garbled t1tle", t(C), "A paper nobody wrote", "Broken"]
            return CitedSections({"S": names}, {"S": [B, None, None, None]}, "ar5iv")
        return super().get_sections(arxiv_id)


CITED_WORLD = dict(  # A's record has no sections: they are fetched
    papers=[paper(A, t(A)), paper(B, t(B)), paper(C, t(C))],
    search={"s": [A]},
    replies={"q": "[Search] s\n[StopSearch]", t(A): "[Expand] S\n[StopExpand]"},
)


def test_citations_are_counted_by_how_they_were_resolved():
    agent = make_agent(AgentConfig(expand_layers=1), source_cls=CitedSource, **CITED_WORLD)
    root = agent.run("q")
    (a,) = root.child["s"]
    assert a.extra["sections_source"] == "ar5iv" and a.section_ids == {"S": [B, None, None, None]}
    assert [(c.arxiv_id, c.extra["resolved_by"]) for c in a.child["S"]] == [(B, "id"), (C, "title")]
    assert root.extra["citations"] == {"by_id": 1, "by_title": 1, "not_found": 1, "failed": 1}


def test_released_mode_resolves_fetched_citations_by_title_only():
    config = AgentConfig(released_behaviour=True, expand_layers=1)
    root = make_agent(config, source_cls=CitedSource, **CITED_WORLD).run("q")
    (a,) = root.child["s"]
    assert [(c.arxiv_id, c.extra["resolved_by"]) for c in a.child["S"]] == [(C, "title")]
    assert root.extra["citations"] == {"by_id": 0, "by_title": 1, "not_found": 2, "failed": 1}


def test_sections_from_a_plain_dict_have_no_source():
    root = make_agent(AgentConfig(expand_layers=1), papers=[*PAPERS[:5]]).run("find things")
    assert all("sections_source" not in n.extra for n in root.iter_nodes())
    assert root.extra["citations"] == {"by_id": 0, "by_title": 3, "not_found": 3, "failed": 0}
