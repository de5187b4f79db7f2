"""Scripted-agent tests: the exact tree for canned crawler/selector replies (DESIGN §1.1)."""

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.paper import PaperNode
from pasa.selector import Selector
from tests.fakes import InMemoryPaperSource, ScriptedLLM, paper

A, B, C, D, E, F, G, H = (f"2401.0000{i}" for i in range(1, 9))
UNKNOWN = "2401.99999"


NAMES = dict(zip((A, B, C, D, E, F, G, H), "alpha beta gamma delta epsilon zeta eta theta".split()))


def t(i: str) -> str:
    """Titles differ in their letters: the released title match keeps letters only."""
    return f"The {NAMES[i]} paper"


PAPERS = [
    paper(A, t(A), sections={"1 Intro": [t(E), t(G)], "2 Related": [t(E), "A Paper That Does Not Exist"]}),
    paper(B, t(B)),  # no sections anywhere: "get full paper error"
    paper(C, t(C), sections={"3 Method": [t(F).upper() + "!", t(A)]}),  # cited title matches after normalisation
    paper(D, t(D)),
    paper(E, t(E)),
    paper(F, t(F), sections={"S": [t(H)]}),
    paper(G, t(G)),
    paper(H, t(H), published="20250101"),  # after the end date
]
SEARCH = {"q1": [A, B, C], "q2": [f"{B}v2", D, UNKNOWN]}
SCORES = {t(A): 0.9, t(B): 0.2, t(C): 0.6, t(D): 0.4, t(E): 0.7, t(F): 0.8, t(G): 0.5, t(H): 0.95}
REPLIES = {
    "find things": "[Search] q1\n[Search] q2\n[Search] q1\n[StopSearch]",
    t(A): "[Expand] 1 Intro\n[Expand] 9 Missing Section\n[Expand] 2 Related\n[StopExpand]",
    t(C): "[Expand] 3 Method\n[StopExpand]",
    t(F): "[Expand] S\n[StopExpand]",
}


def run(config=None, replies=REPLIES, end_date="20240601"):
    crawler_llm, selector_llm = ScriptedLLM(replies=replies), ScriptedLLM(scores=SCORES)
    agent = PaperAgent(
        Crawler(crawler_llm),
        Selector(selector_llm),
        InMemoryPaperSource(PAPERS, SEARCH),
        config or AgentConfig(expand_papers=2),
    )
    return agent.run("find things", end_date=end_date, answer=[t(A), t(H)]), crawler_llm, selector_llm


def shape(node: PaperNode):
    """(arxiv_id, depth, source, score, expand status, {key: children}) recursively."""
    return (
        node.arxiv_id,
        node.depth,
        node.source,
        node.select_score,
        node.extra.get("expand"),
        {k: [shape(c) for c in v] for k, v in node.child.items()},
    )


def test_exact_tree():
    root, _, _ = run()
    S, X = "Search SearchFrom:test", "Expand SearchFrom:test"
    assert root.title == "find things" and root.depth == -1 and root.source == "Root"
    assert {k: [shape(c) for c in v] for k, v in root.child.items()} == {
        "q1": [
            (
                A,
                0,
                S,
                0.9,
                "success",
                {"1 Intro": [(E, 1, X, 0.7, "get full paper error", {}), (G, 1, X, 0.5, None, {})]},
            ),
            (B, 0, S, 0.2, "get full paper error", {}),
            (C, 0, S, 0.6, "success", {"3 Method": [(F, 1, X, 0.8, "not expand", {})]}),
        ],
        "q2": [(D, 0, S, 0.4, "get full paper error", {})],
    }
    # dedup across queries (B, B v2), unknown ids and the dropped post-end-date H are still touched
    assert root.extra["touch_ids"] == [A, B, C, D, UNKNOWN, E, G, F, H]
    assert root.extra["crawler_recall_papers"] == [t(A), t(B), t(C), t(D), t(E), t(G), t(F)]
    assert root.extra["recall_papers"] == [t(A), t(C), t(E), t(F)]  # 0.5 is not > 0.5
    assert root.extra["answer"] == [t(A), t(H)]


def test_sections_fetched_are_kept_on_the_node():
    root, _, _ = run()
    a = root.child["q1"][0]
    assert a.sections == PAPERS[0].sections
    assert root.child["q1"][1].sections == ""  # B: nothing fetched


def test_model_calls_are_batched_per_step():
    # only the idle rule decides the calls: no request is sent early because a loaded machine kept it waiting
    _, crawler_llm, selector_llm = run(AgentConfig(expand_papers=2, batch_wait_s=600))
    assert [len(prompts) for _, prompts in crawler_llm.calls] == [1, 2, 1]  # search; layer 0 (A, C); layer 1 (F)
    assert [len(prompts) for _, prompts in selector_llm.calls] == [4, 3]  # search (A-D); layer 0 (E, G, F)
    # layer 1 expands the top expand_papers=2 of {E, G, F} by score: F (0.8), E (0.7); E has no sections
    assert f"Title: {t(F)}" in crawler_llm.calls[2][1][0]
    # the expand prompt lists the sections as released (str of dict_keys)
    assert "Sections: dict_keys(['1 Intro', '2 Related'])" in crawler_llm.calls[1][1][0]


def test_end_date_rule_released_flag():
    root, _, _ = run(AgentConfig(expand_papers=2, filter_by_end_date=False))
    f = root.child["q1"][2].child["3 Method"][0]
    assert [(c.arxiv_id, c.depth) for c in f.child["S"]] == [(H, 2)]
    assert t(H) in root.extra["recall_papers"]


def test_no_end_date_keeps_everything():
    root, _, _ = run(end_date=None)
    assert H in [n.arxiv_id for n in root.iter_nodes()]


def test_search_queries_limit_and_expand_layers():
    root, crawler_llm, _ = run(AgentConfig(search_queries=1, expand_layers=1))
    assert list(root.child) == ["q1"]
    assert max(n.depth for n in root.iter_nodes()) == 1
    assert len(crawler_llm.calls) == 2


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "[Search", "Search] no closing bracket"])
def test_replies_without_actions(reply):
    root, crawler_llm, selector_llm = run(replies={"find things": reply})
    assert root.child == {} and root.extra["touch_ids"] == [] and root.extra["crawler_recall_papers"] == []
    assert len(crawler_llm.calls) == 1 and selector_llm.calls == []


def test_failing_source_calls_are_skipped(caplog):
    class Flaky(InMemoryPaperSource):
        def get_by_id(self, arxiv_id):
            if arxiv_id == C:
                raise ConnectionError("arXiv is down")
            return super().get_by_id(arxiv_id)

        def search(self, query, k, end_date=None):
            if query == "q2":
                raise TimeoutError("serper timed out")
            return super().search(query, k, end_date)

    agent = PaperAgent(
        Crawler(ScriptedLLM(replies=REPLIES)),
        Selector(ScriptedLLM(scores=SCORES)),
        Flaky(PAPERS, SEARCH),
        AgentConfig(),
    )
    root = agent.run("find things", end_date="20240601")
    assert [n.arxiv_id for n in root.child["q1"]] == [A, B]
    assert root.child["q2"] == []
    assert "arXiv is down" in caplog.text and "serper timed out" in caplog.text


def test_tree_json_round_trip():
    root, _, _ = run()
    assert PaperNode.from_dict(root.to_dict()).to_dict() == root.to_dict()


@pytest.mark.parametrize("sample", [False, True])
def test_crawler_sampling_flag_reaches_the_backend(sample):
    seen = []

    class Spy(ScriptedLLM):
        def generate(self, prompts, chat=True, sample=False):
            seen.append((chat, sample))
            return super().generate(prompts, chat, sample)

    agent = PaperAgent(
        Crawler(Spy(replies=REPLIES), sample=sample),
        Selector(ScriptedLLM(scores=SCORES)),
        InMemoryPaperSource(PAPERS, SEARCH),
    )
    agent.run("find things")
    assert seen and all(s == (True, sample) for s in seen)
