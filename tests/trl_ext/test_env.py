"""trl_ext.env.PaperSearchEnv on scripted sources and selectors: the paper's reward cases, placement spans,
next-round sessions, dedup, and replies with no actions, unknown sections or a cut-off end."""

from __future__ import annotations

import logging

import pytest

from pasa.llm.scripted import ScriptedLLM
from pasa.paper import Paper
from pasa.selector import Selector
from pasa.tools.sources import InMemoryPaperSource
from trl_ext.config import SessionPPOConfig
from trl_ext.env import Episode, PaperSearchEnv, parse_actions

A = Paper("0001.00001", "Answer Paper A", "about a", {"2 Related Work": ["Paper X", "Answer Paper B"]})
B = Paper("0001.00002", "Answer Paper B", "about b", {"1 Intro": ["Paper Y"]})
C = Paper("0001.00003", "Paper C", "about c", {"3 Method": ["Paper Y"]})
X = Paper("0001.00004", "Paper X", "about x", None)
Y = Paper("0001.00005", "Paper Y", "about y", {"4 Experiments": ["Answer Paper A"]})
PAPERS = [A, B, C, X, Y]
SEARCH = {"q1": [A.arxiv_id, B.arxiv_id], "q2": [A.arxiv_id], "q3": [C.arxiv_id], "many": [A.arxiv_id, B.arxiv_id]}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return SessionPPOConfig(output_dir=str(tmp_path_factory.mktemp("cfg")), use_cpu=True, report_to="none")


def make_env(cfg, scores=None, **overrides):
    config = SessionPPOConfig(**{**cfg.to_dict(), **overrides}) if overrides else cfg
    selector = Selector(ScriptedLLM(scores=scores or {})) if scores is not None else None
    return PaperSearchEnv(InMemoryPaperSource(PAPERS, SEARCH), selector, config)


def episode():
    return Episode.from_titles("find answer papers", ["Answer Paper A", "answer paper b!"])


def test_search_reply_three_queries_one_finds_two_answers(cfg):
    # q1 finds A and B (answers), q2 finds A again (a repeat in the same reply counts once), q3 finds C (no answer)
    env = make_env(cfg, use_value_bootstrap=False)
    ep = episode()
    reply = "[Search] q1\n[Search] q2\n[Search] q3\n[StopSearch]"
    (out,), _ = env.step([env.search_session(ep)], [reply])
    assert [a.argument for a in out.actions] == ["q1", "q2", "q3"]
    assert [a.n_relevant for a in out.actions] == [2, 0, 0]
    assert [len(a.new_papers) for a in out.actions] == [2, 0, 1]
    # r = α·n − c with α = 1.5, c = 0.1; the stop earns +c
    assert [a.reward for a in out.actions] == pytest.approx([2.9, -0.1, -0.1])
    assert out.stop_reward == pytest.approx(0.1)
    chars, values = out.reward_positions()
    # each action's reward sits on the `[` that ends it; the stop bonus on the `]` of [StopSearch]
    assert [reply[c] for c in chars] == ["[", "[", "[", "]"]
    assert chars[:3] == [reply.index("[Search] q2"), reply.index("[Search] q3"), reply.index("[StopSearch]")]
    assert chars[3] == len(reply) - 1
    assert values == pytest.approx([2.9, -0.1, -0.1, 0.1])
    assert out.total_reward == pytest.approx(2.8)


def test_selector_or_answers_make_a_paper_relevant(cfg):
    env = make_env(cfg, scores={"Paper C": 0.7, "Answer Paper B": 0.1}, use_value_bootstrap=False)
    (out,), _ = env.step([env.search_session(episode())], ["[Search] q1\n[Search] q3\n[StopSearch]"])
    # B stays relevant (answer) though the selector says 0.1; C becomes relevant through the selector
    assert [a.n_relevant for a in out.actions] == [2, 1]
    assert [a.reward for a in out.actions] == pytest.approx([2.9, 1.4])
    assert out.actions[0].scores == [1.0, 1.0] and out.actions[1].scores == [0.7]


def test_use_selector_false_scores_by_answers_only(cfg):
    env = make_env(cfg, scores={"Paper C": 0.9}, use_selector=False, use_value_bootstrap=False)
    (out,), _ = env.step([env.search_session(episode())], ["[Search] q3\n[StopSearch]"])
    assert out.actions[0].n_relevant == 0 and out.actions[0].reward == pytest.approx(-0.1)


def test_reward_is_clipped(cfg):
    env = make_env(cfg, alpha_search=4.0, use_value_bootstrap=False)
    (out,), _ = env.step([env.search_session(episode())], ["[Search] many\n[StopSearch]"])
    assert out.actions[0].reward == pytest.approx(5.0)  # 4·2 − 0.1 clipped to 5


def test_gamma1_value_bootstrap(cfg):
    # value_papers_max = 1: only the best new paper with sections (A, an answer) adds γ1·V
    env = make_env(cfg, value_papers_max=1)
    asked = []

    def value_fn(sessions):
        asked.extend(s.paper.title for s in sessions)
        return [3.0 if s.paper is A else 100.0 for s in sessions]

    (out,), nxt = env.step([env.search_session(episode())], ["[Search] q1\n[StopSearch]"], value_fn)
    assert asked == ["Answer Paper A"]
    assert out.actions[0].session_value == pytest.approx(3.0)
    assert out.actions[0].reward == pytest.approx(1.5 * 2 - 0.1 + 0.1 * 3.0)
    # both A and B have sections: both open sessions for the next round, ties broken by arXiv id
    assert [s.paper.title for s in nxt] == ["Answer Paper A", "Answer Paper B"]
    assert all(s.kind == "expand" and '["2 Related Work"]' in nxt[0].prompt for s in nxt)


def test_expand_reply_that_stops(cfg):
    env = make_env(cfg, use_value_bootstrap=False)
    ep = episode()
    reply = "[Expand] 2 Related Work\n[StopExpand]"
    (out,), nxt = env.step([env.expand_session(ep, A)], [reply])
    (action,) = out.actions
    assert [p.title for p in action.new_papers] == ["Paper X", "Answer Paper B"]
    assert action.n_relevant == 1 and action.reward == pytest.approx(1.4)
    assert out.stop_reward == pytest.approx(0.1) and reply[out.stop_char] == "]"
    assert [s.paper.title for s in nxt] == ["Answer Paper B"]  # X has no sections: it opens no session


def test_expand_matches_sections_by_letters_only_and_unknown_sections_cost(cfg):
    env = make_env(cfg, use_value_bootstrap=False)
    (out,), _ = env.step(
        [env.expand_session(episode(), A)], ["[Expand] 2 related work!\n[Expand] 9 Nonexistent\n[StopExpand]"]
    )
    assert [len(a.new_papers) for a in out.actions] == [2, 0]
    assert [a.reward for a in out.actions] == pytest.approx([1.4, -0.1])


@pytest.mark.parametrize(
    "reply,kind",
    [
        ("I am not sure what to search.", "search"),
        ("", "search"),
        ("[Search] a query that was cut off by the length lim", "search"),
        ("[Expand] 2 Related Wo", "expand"),
        ("[Search] q1\n[Search] q2", "expand"),  # actions of the other kind are not actions here
    ],
)
def test_replies_without_complete_actions_earn_nothing(cfg, reply, kind):
    env = make_env(cfg)
    ep = episode()
    session = env.search_session(ep) if kind == "search" else env.expand_session(ep, A)
    (out,), nxt = env.step([session], [reply], lambda s: [1.0] * len(s))
    assert out.actions == [] and out.stop_char is None and out.total_reward == 0 and nxt == []
    assert out.reward_positions() == ([], [])


def test_actions_past_max_actions_only_pay_their_cost(cfg):
    env = make_env(cfg, max_actions=1, use_value_bootstrap=False)
    (out,), _ = env.step([env.search_session(episode())], ["[Search] q3\n[Search] q1\n[StopSearch]"])
    assert [a.executed for a in out.actions] == [True, False]
    assert out.actions[1].new_papers == [] and out.actions[1].reward == pytest.approx(-0.1)


def test_dedup_across_the_episode_and_released_reply_scope(cfg):
    for scope, expected in (("episode", [2.9, -0.1]), ("reply", [2.9, 1.4])):
        env = make_env(cfg, dedup_scope=scope, use_value_bootstrap=False)
        ep = episode()
        env.step([env.search_session(ep)], ["[Search] q1\n[StopSearch]"])
        # round 2: expanding Y finds A again: not new for the episode, new under the released per-reply rule
        (out,), _ = env.step([env.expand_session(ep, Y)], ["[Expand] 4 Experiments\n[StopExpand]"])
        assert [2.9, out.actions[0].reward] == pytest.approx(expected)


def test_next_sessions_best_papers_of_the_whole_batch(cfg):
    env = make_env(cfg, scores={"Paper C": 0.8, "Paper Y": 0.3}, expand_top_k=2, use_value_bootstrap=False)
    e1, e2 = episode(), Episode.from_titles("another query", [])
    sessions = [env.search_session(e1), env.search_session(e2), env.expand_session(e2, C)]
    replies = ["[Search] q3\n[StopSearch]", "[Search] q1\n[StopSearch]", "[Expand] 3 Method\n[StopExpand]"]
    outs, nxt = env.step(sessions, replies)
    assert len(outs) == 3
    # candidates: C (0.8, e1), A and B (e2: no answers, selector 0 -> 0.0), Y (0.3, e2) -> best two: C, Y
    assert [(s.episode.user_query, s.paper.title) for s in nxt] == [
        ("find answer papers", "Paper C"),
        ("another query", "Paper Y"),
    ]


def test_failing_source_and_selector_are_logged_not_raised(cfg, caplog):
    class Broken(InMemoryPaperSource):
        def search(self, query, k, end_date=None):
            raise RuntimeError("service down")

    class BrokenLLM(ScriptedLLM):
        def true_prob(self, prompts):
            raise RuntimeError("selector down")

    env = PaperSearchEnv(Broken(PAPERS), Selector(BrokenLLM()), cfg)
    with caplog.at_level(logging.WARNING):
        (out,), _ = env.step([env.search_session(episode())], ["[Search] q1\n[StopSearch]"])
    assert out.actions[0].new_papers == [] and out.actions[0].reward == pytest.approx(-0.1)
    assert "service down" in caplog.text
    env = PaperSearchEnv(InMemoryPaperSource(PAPERS, SEARCH), Selector(BrokenLLM()), cfg)
    with caplog.at_level(logging.WARNING):
        (out,), _ = env.step([env.search_session(episode())], ["[Search] q1\n[StopSearch]"], lambda s: [0.0] * len(s))
    assert out.actions[0].n_relevant == 2 and "selector down" in caplog.text


def test_step_checks_lengths(cfg):
    env = make_env(cfg)
    with pytest.raises(ValueError, match="1 sessions but 2 replies"):
        env.step([env.search_session(episode())], ["a", "b"])


def test_parse_actions_spans():
    reply = "[Search] a [Search]  \n[Search] b\n[StopSearch]"
    acts = parse_actions(reply, "search")
    assert [a for a, _, _ in acts] == ["a", "b"]  # the empty middle action is dropped, as at inference
    for _, (start, end), end_char in acts:
        assert reply[start] == "[" and end == end_char and reply[end_char] == "["


# ---- released behaviour (trl_ext/released.py; docs/released_differences.md "PPO"): each flag in both modes ---------


def released(cfg, **overrides):
    return SessionPPOConfig(**{**cfg.to_dict(), "released_behaviour": True, **overrides})


def test_released_behaviour_sets_every_released_flag(cfg):
    from trl_ext.released import RELEASED_PPO_VALUES

    rel = released(cfg)
    for name, value in RELEASED_PPO_VALUES.items():
        assert getattr(rel, name) == value, name
        assert getattr(cfg, name) != value, name  # default off: the project's behaviour
    assert rel.value_warmup_updates == 49 and cfg.value_warmup_updates == 50


@pytest.mark.parametrize("keep", [False, True])
def test_empty_search_argument(cfg, keep):
    # released: `[Search] ` with nothing before the next `[` is an action that is searched and pays the cost
    class Recording(InMemoryPaperSource):
        asked: list = []

        def search(self, query, k, end_date=None):
            self.asked.append(query)
            return super().search(query, k, end_date)

    config = released(cfg, use_value_bootstrap=False) if keep else SessionPPOConfig(**cfg.to_dict())
    source = Recording(PAPERS, SEARCH)
    env = PaperSearchEnv(source, None, config)
    reply = "[Search] \n[Search] q3\n[StopSearch]"
    (out,), _ = env.step([env.search_session(episode())], [reply])
    if keep:
        assert [a.argument for a in out.actions] == ["", "q3"] and source.asked == ["", "q3"]
        assert [a.reward for a in out.actions] == pytest.approx([-0.1, -0.1])
        assert out.total_reward == pytest.approx(-0.1)  # −0.1 − 0.1 + the stop's 0.1
    else:
        assert [a.argument for a in out.actions] == ["q3"] and source.asked == ["q3"]
        assert out.total_reward == pytest.approx(0.0, abs=1e-6)


def test_expand_prompt_sections_ascii(cfg):
    paper = Paper("0001.00009", "Café Paper", "about", {"2 Résumé of Work": ["Paper X"]})
    ep = episode()
    project = make_env(cfg).expand_session(ep, paper).prompt
    fork = PaperSearchEnv(InMemoryPaperSource(PAPERS), None, released(cfg)).expand_session(ep, paper).prompt
    assert project.endswith('Sections: ["2 Résumé of Work"]')
    assert fork.endswith('Sections: ["2 R\\u00e9sum\\u00e9 of Work"]')  # json.dumps default: ensure_ascii
    assert "Title: Café Paper" in fork  # only the list is escaped


@pytest.mark.parametrize("fork", [False, True])
def test_reward_clip_floor(cfg, fork):
    # c_expand 0.3, c_search 0.1: an expand action that finds nothing earns −0.3; released clips it at −c_search
    overrides = {"c_expand": 0.3, "use_value_bootstrap": False}
    config = released(cfg, **overrides) if fork else SessionPPOConfig(**{**cfg.to_dict(), **overrides})
    env = PaperSearchEnv(InMemoryPaperSource(PAPERS, SEARCH), None, config)
    (out,), _ = env.step([env.expand_session(episode(), A)], ["[Expand] 9 Nonexistent\n[StopExpand]"])
    assert out.actions[0].reward == pytest.approx(-0.1 if fork else -0.3)
    assert out.stop_reward == pytest.approx(0.3)  # the stop bonus is +c of the kind in both


# Which new papers are valued: a section citing 8 papers Q1..Q8, selector scores 0.9 .. 0.55; prompt length grows
# with the abstract; Q2 has no sections.
ABSTRACT_LEN = {1: 50, 2: 10, 3: 40, 4: 20, 5: 30, 6: 0, 7: 5, 8: 1}
QS = {  # titles differ in letters (papers are keyed letters-only) and have one length: "Paper Qa" .. "Paper Qh"
    k: Paper(f"0002.0000{k}", f"Paper Q{'abcdefgh'[k - 1]}", "x" * n, None if k == 2 else {"S": []})
    for k, n in ABSTRACT_LEN.items()
}
HUB = Paper("0002.00000", "Hub Paper", "hub", {"1 Intro": [q.title for q in QS.values()]})
Q_SCORES = {q.title: 0.95 - 0.05 * k for k, q in QS.items()}
Q_NUMBER = {q.title: k for k, q in QS.items()}


@pytest.mark.parametrize("fork", [False, True])
def test_which_papers_are_valued_and_open_next_sessions(cfg, fork):
    overrides = {"alpha_expand": 0.1, "expand_top_k": 6}
    config = released(cfg, **overrides) if fork else SessionPPOConfig(**{**cfg.to_dict(), **overrides})
    env = PaperSearchEnv(InMemoryPaperSource([HUB, *QS.values()]), Selector(ScriptedLLM(scores=Q_SCORES)), config)
    valued = []

    def value_fn(sessions):  # V(S_Qk) = k
        valued.extend(Q_NUMBER[s.paper.title] for s in sessions)
        return [float(Q_NUMBER[s.paper.title]) for s in sessions]

    (out,), nxt = env.step([env.expand_session(episode(), HUB)], ["[Expand] 1 Intro\n[StopExpand]"], value_fn)
    (action,) = out.actions
    assert action.n_relevant == 8
    if fork:
        # top 7 by score: Q1..Q7; the 5 shortest prompts of those: Q6 (0), Q7 (5), Q2 (10, no sections), Q4, Q5
        assert valued == [6, 7, 2, 4, 5]
        assert action.reward == pytest.approx(0.1 * 8 - 0.1 + 0.1 * (6 + 7 + 2 + 4 + 5))  # 3.1
        # only those five are candidates, by score, repeated to fill 6 sessions
        assert [Q_NUMBER[s.paper.title] for s in nxt] == [2, 4, 5, 6, 7, 2]
    else:
        # sections required (no Q2): the 5 best by score, Q1 Q3 Q4 Q5 Q6
        assert valued == [1, 3, 4, 5, 6]
        assert action.reward == pytest.approx(0.1 * 8 - 0.1 + 0.1 * (1 + 3 + 4 + 5 + 6))  # 2.6
        # every new paper with sections is a candidate: the 6 best of Q1, Q3..Q8
        assert [Q_NUMBER[s.paper.title] for s in nxt] == [1, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("fork", [False, True])
def test_session_fill(cfg, fork):
    config = released(cfg, use_value_bootstrap=False) if fork else make_env(cfg).config
    env = PaperSearchEnv(InMemoryPaperSource(PAPERS, SEARCH), None, config)
    ep = episode()
    # q1 finds A and B (both answers, score 1): two candidates. Released order: the action's valued papers by
    # prompt length (B's is shorter), then a stable sort by score; repeated to fill 6
    _, nxt = env.step([env.search_session(ep)], ["[Search] q1\n[StopSearch]"])
    titles = [s.paper.title for s in nxt]
    assert titles == (["Answer Paper B", "Answer Paper A"] * 3 if fork else ["Answer Paper A", "Answer Paper B"])
    # nothing found: released runs this round's sessions again, repeated to fill 6; the project stops
    sessions = [env.search_session(episode()), env.search_session(Episode("other", frozenset()))]
    _, nxt = env.step(sessions, ["[Search] nothing\n[StopSearch]", "no action"])
    assert nxt == ([sessions[0], sessions[1]] * 3 if fork else [])


@pytest.mark.parametrize("fork", [False, True])
def test_query_from_reply(cfg, fork):
    config = released(cfg, use_value_bootstrap=False) if fork else make_env(cfg).config
    env = PaperSearchEnv(InMemoryPaperSource(PAPERS, SEARCH), None, config)
    # a reply that does not start with `[`: released reads an empty user query back from the decoded text
    _, nxt = env.step([env.search_session(episode())], ["Sure.\n[Search] q3\n[StopSearch]"])
    assert nxt[0].prompt.startswith("You are conducting research on `" + ("" if fork else "find answer papers") + "`.")
    _, nxt = env.step([env.search_session(episode())], ["[Search] q3\n[StopSearch]"])
    assert nxt[0].prompt.startswith("You are conducting research on `find answer papers`.")


def test_failed_calls_are_counted_and_logged_once(cfg, caplog):
    class Broken(InMemoryPaperSource):
        def search(self, query, k, end_date=None):
            if query == "down":
                raise RuntimeError("service down")
            return super().search(query, k, end_date)

        def get_by_title(self, title):
            if title == "Paper X":
                raise RuntimeError("title lookup down")
            return super().get_by_title(title)

    env = PaperSearchEnv(Broken(PAPERS, SEARCH), None, make_env(cfg).config)
    with caplog.at_level(logging.WARNING, logger="trl_ext.env"):
        (out,), _ = env.step([env.search_session(episode())], ["[Search] down\n[Search] q3\n[StopSearch]"])
    assert out.failures == {"search": 1, "lookup": 0, "title": 0, "selector": 0} and out.degraded
    assert [a.failed for a in out.actions] == [True, False]
    failed = [r for r in caplog.records if r.levelno == logging.WARNING and "failed" in r.getMessage()]
    assert len(failed) == 1 and "search('down') failed: service down" in failed[0].getMessage()
    (out,), _ = env.step([env.expand_session(episode(), A)], ["[Expand] 2 Related Work\n[StopExpand]"])
    assert out.failures["title"] == 1 and [p.title for p in out.actions[0].new_papers] == ["Answer Paper B"]
    (out,), _ = env.step([env.search_session(episode())], ["[Search] q3\n[StopSearch]"])
    assert not out.degraded and out.failures == dict.fromkeys(("search", "lookup", "title", "selector"), 0)


@pytest.mark.parametrize("fork", [False, True])
def test_cited_paper_resolved_by_id(cfg, fork):
    # the citation's string is garbled; the database linked it to C's id (Paper.section_ids, parallel to sections)
    hub = Paper("0003.00001", "Linked Hub", "hub", {"1 Intro": ["C: a paper (garbled)", "Paper X", "Paper Y"]})
    hub.section_ids = {"1 Intro": [C.arxiv_id, None, "9999.99999"]}  # an id the database lacks: by title
    config = released(cfg, use_value_bootstrap=False) if fork else make_env(cfg, use_value_bootstrap=False).config
    env = PaperSearchEnv(InMemoryPaperSource([*PAPERS, hub]), None, config)
    (out,), _ = env.step([env.expand_session(episode(), hub)], ["[Expand] 1 Intro\n[StopExpand]"])
    found = [p.title for p in out.actions[0].new_papers]
    assert found == (["Paper X", "Paper Y"] if fork else ["Paper C", "Paper X", "Paper Y"])  # released: by title


@pytest.mark.parametrize("fork", [False, True])
def test_cited_ids_carried_by_fetched_sections(cfg, fork):
    # the sections came from a fetched page (CitedSections) whose ids the paper itself does not repeat
    from pasa.paper import CitedSections

    sections = CitedSections(
        {"1 Intro": ["C: a paper (garbled)", "Paper X"]}, {"1 Intro": [C.arxiv_id, None]}, "ar5iv"
    )
    hub = Paper("0003.00002", "Fetched Hub", "hub", sections)
    assert hub.section_ids is None
    config = released(cfg, use_value_bootstrap=False) if fork else make_env(cfg, use_value_bootstrap=False).config
    env = PaperSearchEnv(InMemoryPaperSource([*PAPERS, hub]), None, config)
    (out,), _ = env.step([env.expand_session(episode(), hub)], ["[Expand] 1 Intro\n[StopExpand]"])
    found = [p.title for p in out.actions[0].new_papers]
    assert found == (["Paper X"] if fork else ["Paper C", "Paper X"])  # released: by title only
