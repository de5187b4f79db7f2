"""Released-behaviour rows of the agent, failed tool calls, and citations resolved by their arXiv id.

Each row runs one scripted world in both modes: the project's default and the released one (the individual flag,
and ``released_behaviour=True`` which must set it). The world is built so that the two modes give different trees.
"""

import logging
from dataclasses import fields

import pytest

from pasa.agent import RELEASED_VALUES, AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.paper import FAILURE_KINDS, PaperNode, is_degraded
from pasa.released import RELEASED, LoopRules, loop_rules
from pasa.selector import Selector
from tests.fakes import InMemoryPaperSource, ScriptedLLM
from tests.fakes import paper as _paper
from tests.pasa.test_agent import PAPERS, REPLIES, SCORES, SEARCH, F, H, run, t

A, B, C, D, E = (f"2402.0000{i}" for i in range(1, 6))
NAME = dict(zip((A, B, C, D, E), "one two three four five".split()))


def paper(arxiv_id, title=None, **kw):
    """Titles differ in their letters (the title lookup keeps letters only)."""
    return _paper(arxiv_id, title or f"Paper {NAME[arxiv_id]}", **kw)


def T(arxiv_id):
    return f"Paper {NAME[arxiv_id]}"


def released(**kw) -> list[AgentConfig]:
    """The released form of a row twice: through its individual flag(s) and through the one switch."""
    return [AgentConfig(**kw), AgentConfig(released_behaviour=True, **{k: v for k, v in kw.items() if k in _KNOBS})]


_KNOBS = {"expand_layers", "search_queries", "search_papers", "expand_papers", "threads_num"}


def agent_run(papers, search, replies, scores, config, source_cls=InMemoryPaperSource, end_date=None, query="q"):
    crawler_llm, selector_llm = ScriptedLLM(replies=replies), ScriptedLLM(scores=scores)
    source = source_cls(papers, search)
    agent = PaperAgent(Crawler(crawler_llm), Selector(selector_llm), source, config)
    return agent.run(query, end_date=end_date), crawler_llm, selector_llm, source


def ids(node: PaperNode) -> dict:
    return {k: [(c.arxiv_id, c.select_score, ids(c)) for c in v] for k, v in node.child.items()}


# -- the switch -----------------------------------------------------------------------------------------------------
def test_switch_sets_every_released_flag_and_default_is_the_project():
    on, off = AgentConfig(released_behaviour=True), AgentConfig()
    for name, value in RELEASED_VALUES.items():
        assert getattr(on, name) == value, name
        assert getattr(off, name) != value, name
    # individual flags stay usable without the switch
    assert AgentConfig(keep_empty_queries=True).selector_sees_cited_title is False


def test_each_flag_picks_its_own_step():
    """``loop_rules`` gives every step its released form under the switch, the project's form by default, and one
    flag changes one step only."""
    project, released_rules = loop_rules(AgentConfig()), loop_rules(AgentConfig(released_behaviour=True))
    steps = [f.name for f in fields(LoopRules)]
    assert all(getattr(project, s) != getattr(released_rules, s) for s in steps)
    assert len(RELEASED) == len(steps) == len(RELEASED_VALUES)
    for flag, value in RELEASED_VALUES.items():
        one = loop_rules(AgentConfig(**{flag: value}))
        assert sum(getattr(one, s) != getattr(project, s) for s in steps) == 1, flag


# -- row 1: the selector sees the cited string ----------------------------------------------------------------------
def test_selector_input_for_a_cited_paper_both_modes():
    # C cites F as "THE ZETA PAPER!" (matches F after normalisation); only F's own title has a score
    default, _, sel_default = run()
    f = default.child["q1"][2].child["3 Method"][0]
    assert (f.arxiv_id, f.title, f.select_score) == (F, t(F), 0.8)
    # layer 1 expands the top 2 of {E 0.7, G 0.5, F 0.8}: F is asked (its citation H is after the end date)
    assert f.extra["expand"] == "not expand"
    for config in released(selector_sees_cited_title=True, filter_by_end_date=False, expand_papers=2):
        root, _, sel = run(config)
        f = root.child["q1"][2].child["3 Method"][0]
        # the node keeps the resolved title; the score is the cited string's (unknown to the scripted selector: 0)
        assert (f.arxiv_id, f.title, f.select_score) == (F, t(F), 0.0)
        prompts = [p for _, batch in sel.calls for p in batch]
        cited = [p for p in prompts if "THE ZETA PAPER!" in p]
        assert len(cited) == 1 and "Abstract: Abstract of 2401.00006." in cited[0]
        # F is no longer in the top 2 of layer 1 (E 0.7, G 0.5): not expanded, H never found
        assert f.extra.get("expand") is None and H not in root.extra["touch_ids"]
        assert ids(root) != ids(default)
    assert not any("THE ZETA PAPER!" in p for _, batch in sel_default.calls for p in batch)


# -- row 2: a database paper whose sections are {} ------------------------------------------------------------------
class SectionsOnline(InMemoryPaperSource):
    """The record of A has sections {} (paper DB) but ar5iv has its full text."""

    def get_sections(self, arxiv_id):
        return {"2 Related": [T(B)]} if arxiv_id == A else super().get_sections(arxiv_id)


EMPTY_WORLD = dict(
    papers=[paper(A, sections={}), paper(B)],
    search={"s": [A]},
    replies={"q": "[Search] s\n[StopSearch]", T(A): "[Expand] 2 Related\n[StopExpand]"},
    scores={T(A): 0.9, T(B): 0.7},
)


def test_empty_sections_record_both_modes():
    root, crawler, _, _ = agent_run(**EMPTY_WORLD, config=AgentConfig(expand_layers=1), source_cls=SectionsOnline)
    a = root.child["s"][0]
    assert a.extra["expand"] == "success" and [c.arxiv_id for c in a.child["2 Related"]] == [B]
    assert a.sections == {"2 Related": [T(B)]}
    for config in released(refetch_empty_sections=False, expand_layers=1):
        root, crawler, _, _ = agent_run(**EMPTY_WORLD, config=config, source_cls=SectionsOnline)
        a = root.child["s"][0]
        assert a.extra["expand"] == "not expand" and a.child == {} and a.sections == {}
        # the crawler is still asked, with no sections
        assert "Sections: dict_keys([])" in crawler.calls[1][1][0]


# -- row 3: an empty [Search] query ---------------------------------------------------------------------------------
class RecordingSource(InMemoryPaperSource):
    def __init__(self, *a):
        super().__init__(*a)
        self.searched = []

    def search(self, query, k, end_date=None):
        self.searched.append(query)
        return super().search(query, k, end_date)


EMPTY_QUERY_WORLD = dict(
    papers=[paper(A), paper(B)],
    search={"a": [A], "b": [B], "": []},
    replies={"q": "[Search] \n[Search] a\n[Search] b\n[StopSearch]"},
    scores={},
)


def test_empty_search_query_both_modes():
    root, _, _, source = agent_run(
        **EMPTY_QUERY_WORLD, config=AgentConfig(search_queries=2), source_cls=RecordingSource
    )
    assert list(root.child) == ["a", "b"] and source.searched == ["a", "b"]
    # (the switch also sets the released limit slip: the limit is expand_papers there)
    for config in released(keep_empty_queries=True, search_queries=2, expand_papers=2):
        root, _, _, source = agent_run(**EMPTY_QUERY_WORLD, config=config, source_cls=RecordingSource)
        # kept, counted against the limit (b is cut) and searched
        assert list(root.child) == ["", "a"] and source.searched == ["", "a"]
        assert B not in root.extra["touch_ids"]


# -- the end-date rule: papers found by search are dropped too ------------------------------------------------------
class UndatedSearch(InMemoryPaperSource):
    """A search engine that ignores the end date (e.g. Google's before: misses a paper's date)."""

    def search(self, query, k, end_date=None):
        return super().search(query, k, None)


def test_end_date_filter_drops_search_results_too():
    world = dict(
        papers=[paper(A), paper(B, published="20250101")],
        search={"s": [A, B]},
        replies={"q": "[Search] s\n[StopSearch]"},
        scores={},
        source_cls=UndatedSearch,
    )
    root, *_ = agent_run(**world, config=AgentConfig(expand_layers=0), end_date="20240601")
    assert [n.arxiv_id for n in root.child["s"]] == [A]
    for config in released(filter_by_end_date=False, expand_layers=0):
        root, *_ = agent_run(**world, config=config, end_date="20240601")
        assert [n.arxiv_id for n in root.child["s"]] == [A, B]


# -- the released script's slip: expand_papers passed as search_queries ---------------------------------------------
def test_search_query_limit_slip_both_modes():
    world = dict(
        papers=[paper(A), paper(B)],
        search={"a": [A], "b": [B]},
        replies={"q": "[Search] a\n[Search] b\n[Search] c\n[StopSearch]"},
        scores={},
    )
    root, *_ = agent_run(**world, config=AgentConfig(search_queries=1, expand_papers=2, expand_layers=0))
    assert list(root.child) == ["a"]
    for config in released(search_queries_from_expand_papers=True, search_queries=1, expand_papers=2, expand_layers=0):
        root, *_ = agent_run(**world, config=config)
        assert list(root.child) == ["a", "b"]


# -- cited strings looked up as written (released) or once per normalised title -------------------------------------
class ExactTitles(InMemoryPaperSource):
    """A title service that matches the string exactly (as some title searches do)."""

    def get_by_title(self, title):
        self.asked = getattr(self, "asked", []) + [title]
        return next((p for p in self.papers.values() if p.title == title), None)


def test_title_lookup_dedup_both_modes():
    world = dict(
        papers=[paper(A, sections={"S": ["the beta paper.", "The beta paper"]}), paper(B, "The beta paper")],
        search={"s": [A]},
        replies={"q": "[Search] s\n[StopSearch]", T(A): "[Expand] S\n[StopExpand]"},
        scores={},
    )
    root, _, _, source = agent_run(**world, config=AgentConfig(expand_layers=1), source_cls=ExactTitles)
    assert root.child["s"][0].child == {} and source.asked == ["the beta paper."]
    for config in released(dedup_title_lookups=False, expand_layers=1):
        root, _, _, source = agent_run(**world, config=config, source_cls=ExactTitles)
        assert [c.arxiv_id for c in root.child["s"][0].child["S"]] == [B]
        assert source.asked == ["the beta paper.", "The beta paper"]


# -- sections of a failed fetch on the node -------------------------------------------------------------------------
def test_failed_section_fetch_on_the_node_both_modes():
    root, *_ = run()
    assert root.child["q1"][1].sections == ""  # B: nothing fetched
    for config in released(keep_failed_sections=True, expand_papers=2):
        root, *_ = run(config)
        b = root.child["q1"][1]
        assert b.sections is None and b.extra["expand"] == "get full paper error"
        assert b.to_dict()["sections"] is None


# -- search query length cap ----------------------------------------------------------------------------------------
def test_long_search_query_is_cut(caplog):
    long_q = "graph " * 200
    world = dict(papers=[paper(A)], search={}, replies={"q": f"[Search] {long_q}\n[StopSearch]"}, scores={})
    with caplog.at_level(logging.WARNING):
        root, _, _, source = agent_run(**world, config=AgentConfig(expand_layers=0), source_cls=RecordingSource)
    assert [len(q) for q in source.searched] == [len(long_q.strip()[:512].rstrip())] and len(root.child) == 1
    assert "cut to 512" in caplog.text
    for config in released(max_query_chars=0, expand_layers=0):
        root, _, _, source = agent_run(**world, config=config, source_cls=RecordingSource)
        assert source.searched == [long_q.strip()]


# -- failed tool calls ----------------------------------------------------------------------------------------------
class Failing(InMemoryPaperSource):
    def search(self, query, k, end_date=None):
        if query == "bad":
            raise TimeoutError("serper timed out")
        return super().search(query, k, end_date)

    def get_by_id(self, arxiv_id):
        if arxiv_id == C:
            raise ConnectionError("arXiv is down")
        return super().get_by_id(arxiv_id)

    def get_by_title(self, title):
        if title == "Broken":
            raise ConnectionError("title service down")
        return super().get_by_title(title)

    def get_sections(self, arxiv_id):
        if arxiv_id == D:
            raise ConnectionError("ar5iv 503")
        return super().get_sections(arxiv_id)


FAIL_WORLD = dict(
    papers=[paper(A, sections={"S": ["Broken", T(E)]}), paper(B), paper(C), paper(D), paper(E)],
    search={"s": [A, B, C, D]},
    replies={"q": "[Search] s\n[Search] bad\n[StopSearch]", T(A): "[Expand] S\n[StopExpand]", T(B): "I have no idea"},
    scores={},
)


def test_failures_are_counted_logged_and_kept(caplog):
    source_b = paper(B, sections={"X": ["nothing"]})
    world = dict(FAIL_WORLD, papers=[source_b if p.arxiv_id == B else p for p in FAIL_WORLD["papers"]])
    with caplog.at_level(logging.WARNING, logger="pasa.agent"):
        root, *_ = agent_run(**world, config=AgentConfig(expand_layers=1), source_cls=Failing)
    assert root.extra["failures"] == {"search": 1, "lookup": 1, "title": 1, "sections": 1, "crawler_no_action": 1}
    assert root.extra["crawler_raw_replies"] == [{"session": B, "reply": "I have no idea"}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5
    assert any("search('bad')" in w and "serper timed out" in w for w in warnings)
    assert any(f"get_by_id('{C}')" in w and "arXiv is down" in w for w in warnings)
    assert any("get_by_title('Broken')" in w for w in warnings)
    assert any(f"get_sections('{D}')" in w and "ar5iv 503" in w for w in warnings)
    assert any("no action" in w and B in w and "'q'" in w for w in warnings)
    assert is_degraded(root.to_dict())
    # the rest of the tree is there
    assert [c.arxiv_id for c in root.child["s"][0].child["S"]] == [E]


def test_fault_free_run_has_all_failure_keys_at_zero():
    root, *_ = run()
    assert root.extra["failures"] == dict.fromkeys(FAILURE_KINDS, 0)
    assert root.extra["crawler_raw_replies"] == [] and not is_degraded(root.to_dict())


@pytest.mark.parametrize("reply", ["", "garbage", "[Search] truncated"])
def test_search_reply_without_action_is_a_failure(reply, caplog):
    root, *_ = run(replies={"find things": reply})
    assert root.extra["failures"]["crawler_no_action"] == 1
    assert root.extra["crawler_raw_replies"] == [{"session": "search", "reply": reply}]
    assert "find things" in caplog.text


def test_is_degraded_on_released_and_old_trees():
    assert not is_degraded({"title": "q", "extra": {"touch_ids": []}})
    assert not is_degraded({"title": "q"})
    assert is_degraded({"extra": {"failures": {"crawler_no_action": 1}}})


# -- citations resolved by arXiv id ---------------------------------------------------------------------------------
def test_citations_resolved_by_id_when_known():
    cited = paper(A, sections={"S": ["Garbled t1tle from a bibliography", T(C), T(D)]})
    cited.section_ids = {"S": [B, None, "2402.99999"]}  # B by id; C by title; an unknown id falls back to title
    world = dict(
        papers=[cited, paper(B), paper(C), paper(D)],
        search={"s": [A]},
        replies={"q": "[Search] s\n[StopSearch]", T(A): "[Expand] S\n[StopExpand]"},
        scores={},
    )
    root, *_ = agent_run(**world, config=AgentConfig(expand_layers=1))
    children = root.child["s"][0].child["S"]
    assert [(c.arxiv_id, c.extra["resolved_by"]) for c in children] == [(B, "id"), (C, "title"), (D, "title")]
    # the node JSON keeps the released keys only
    assert "section_ids" not in root.child["s"][0].to_dict()
    for config in released(resolve_citations_by_id=False, expand_layers=1):
        root, *_ = agent_run(**world, config=config)
        children = root.child["s"][0].child["S"]
        assert [(c.arxiv_id, c.extra["resolved_by"]) for c in children] == [(C, "title"), (D, "title")]


def test_fixed_world_released_mode_tree():
    """The scripted world of test_agent.py in released mode: F scored on the cited string, H kept (no date rule)."""
    root, _, _ = run(AgentConfig(released_behaviour=True, expand_papers=2))
    a, b, c = root.child["q1"]
    assert [n.arxiv_id for n in root.child["q2"]] == ["2401.00004"]
    assert (b.sections, b.extra["expand"]) == (None, "get full paper error")
    assert c.child["3 Method"][0].select_score == 0.0
    assert root.extra["recall_papers"] == [t(x) for x in ("2401.00001", "2401.00003", "2401.00005")]
    assert SCORES and PAPERS and SEARCH and REPLIES  # the shared world is unchanged
