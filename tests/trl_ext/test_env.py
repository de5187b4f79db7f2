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
