"""The paper-search environment of the session-level Crawler PPO: crawler replies in, rewards and next sessions out.

One user query is an *episode*; each crawler reply to a search prompt or to one paper's expand prompt is a
*session* (DESIGN §1.3). ``PaperSearchEnv.step`` parses the actions of a batch of replies with the released
regexes (``pasa.prompts``), runs them against a ``PaperSource``, scores the new papers (answer set ∪ Selector),
prices every action with ``trl_ext.rewards.action_rewards`` (value bootstrap through an injected ``value_fn``) and
returns the per-action outcomes with the character spans the trainer maps to tokens, plus the next round's expand
sessions. No model, tokenizer or network of its own: the source, the selector and ``value_fn`` are injected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from pasa.paper import SESSION_FAILURE_KINDS, Paper, title_key
from pasa.prompts import EXPAND_RE, SEARCH_RE, SELECT_SECTION, render_search_prompt
from pasa.resolve import chosen_citations, lookup_plan
from trl_ext import released
from trl_ext.rewards import action_rewards

logger = logging.getLogger(__name__)

# The stop tags of the released prompts' outputs; each earns +c (released response_handler).
STOP_TAGS = {"search": "[StopSearch]", "expand": "[StopExpand]"}
ACTION_RES = {"search": SEARCH_RE, "expand": EXPAND_RE}


@dataclass
class Episode:
    """One user query of the rollout and the papers it has found so far."""

    user_query: str
    answers: frozenset[str] = frozenset()  # title_key of each answer paper
    end_date: str | None = None  # YYYYMMDD; searches see only older papers when set
    seen: set[str] = field(default_factory=set)  # title_key of every paper found in this episode

    @classmethod
    def from_titles(cls, user_query: str, answer_titles: Iterable[str], end_date: str | None = None) -> Episode:
        return cls(user_query, frozenset(title_key(t) for t in answer_titles if title_key(t)), end_date)


@dataclass
class Session:
    """A crawler session: the search prompt of an episode, or the expand prompt of one paper."""

    kind: str  # "search" | "expand"
    episode: Episode
    prompt: str  # the user turn (the trainer applies the chat template)
    paper: Paper | None = None  # the paper being expanded


@dataclass
class ActionOutcome:
    """One ``[Search] q`` / ``[Expand] s`` action of a reply and what it brought."""

    kind: str
    argument: str
    span: tuple[int, int]  # characters of the action in the reply, its tag included, up to the `[` that ends it
    end_char: int  # position of that `[`: the action's reward goes on the token holding it
    executed: bool = False  # False past max_actions: the action only pays its cost
    new_papers: list[Paper] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # max(answer ? 1 : 0, selector score) per new paper
    n_relevant: int = 0
    session_value: float = 0.0  # Σ V over the sessions it opens (value_papers_max best new papers)
    reward: float = 0.0
    failed: bool = False  # a source call of this action failed (counted in SessionOutcome.failures)


@dataclass
class SessionOutcome:
    """The parsed and priced reply of one session."""

    session: Session
    reply: str
    actions: list[ActionOutcome]
    stop_char: int | None  # the `]` of the stop tag, None when the reply does not stop
    stop_reward: float = 0.0
    # failed source/selector calls of this session by kind (SESSION_FAILURE_KINDS, all present); a failed search is an
    # action that found nothing because of the service, not because of the query
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SESSION_FAILURE_KINDS, 0))

    @property
    def degraded(self) -> bool:
        """True when any source or selector call of this session failed (the agent's ``is_degraded`` rule)."""
        return any(self.failures.values())

    def reward_positions(self) -> tuple[list[int], list[float]]:
        """Character positions in the reply and the rewards placed there (actions, then the stop)."""
        chars = [a.end_char for a in self.actions]
        values = [a.reward for a in self.actions]
        if self.stop_char is not None:
            chars.append(self.stop_char)
            values.append(self.stop_reward)
        return chars, values

    @property
    def total_reward(self) -> float:
        return sum(a.reward for a in self.actions) + self.stop_reward


def parse_actions(reply: str, kind: str, keep_empty: bool = False) -> list[tuple[str, tuple[int, int], int]]:
    """Actions of a reply as ``(argument, (start, end), end_char)``, with the released regexes.

    An action's argument runs from its tag to the next ``[`` (``pasa.prompts.SEARCH_RE``/``EXPAND_RE``), so an
    action cut off by the response length (no closing ``[``) is not an action; empty arguments are dropped, as the
    inference parser does, unless ``keep_empty`` (released trainer: an empty argument is an action).

    >>> parse_actions("[Search] a\\n[Search] b\\n[StopSearch]", "search")
    [('a', (0, 11), 11), ('b', (11, 22), 22)]
    >>> parse_actions("[Search] cut off", "search")
    []
    """
    out = []
    for m in ACTION_RES[kind].finditer(reply):
        argument = m.group(1).strip()
        if not argument and not keep_empty:
            continue
        start = m.start() - 1 if m.start() > 0 and reply[m.start() - 1] == "[" else m.start()
        end_char = m.end() - 1
        out.append((argument, (start, end_char), end_char))
    return out


def find_stop(reply: str, kind: str) -> int | None:
    """Position of the ``]`` closing the first stop tag of the session's kind, or None.

    >>> find_stop("[Search] a\\n[StopSearch]", "search")
    22
    """
    tag = STOP_TAGS[kind]
    i = reply.find(tag)
    return None if i < 0 else i + len(tag) - 1


ValueFn = Callable[[list[Session]], Sequence[float]]
OpenedSessions = tuple[list[tuple[ActionOutcome, list[Session]]], list[Session]]


def sections_list_json(names: list[str]) -> str:
    """The expand prompt's Sections list: JSON with the characters kept (the RL prompt format, DESIGN §1.1).

    >>> sections_list_json(["2 Résumé"])
    '["2 Résumé"]'
    """
    return json.dumps(names, ensure_ascii=False)


def clip_floor_of_kind(kind: str, c_search: float, c_expand: float) -> float:
    """Lower clip of an action's reward: −c of the action's kind (paper §3.2)."""
    return -(c_search if kind == "search" else c_expand)


def section_ids_of(paper: Paper) -> dict[str, list[str | None]] | None:
    """The cited arXiv ids parallel to a paper's sections: ``Paper.section_ids``, else those its fetched
    ``CitedSections`` carry; None when the source gave none."""
    return paper.section_ids or getattr(paper.sections, "section_ids", None)


def no_section_ids(paper: Paper) -> None:
    """Released: every citation is resolved by its title."""
    return None


def episode_query(outcome: SessionOutcome) -> None:
    """The sessions a reply opens are written with the episode's own user query (None: no replacement)."""
    return None


def open_best_sessions(
    outcomes: list[SessionOutcome], value_papers_max: int, open_session: Callable[[SessionOutcome, Paper], Session]
) -> OpenedSessions:
    """Per action, the expand sessions whose values its reward adds; and the next round's candidates, best first.

    An action values its ``value_papers_max`` best new papers with sections (score desc, then arXiv id); the
    candidates are every new paper with sections, once per episode, by (score desc, arXiv id).
    """
    per_action: list[tuple[ActionOutcome, list[Session]]] = []
    opened_by_key: dict[tuple[int, str], tuple[float, str, Session]] = {}
    for outcome in outcomes:
        episode = outcome.session.episode
        for action in outcome.actions:
            ranked = sorted(
                ((s, p) for s, p in zip(action.scores, action.new_papers, strict=True) if p.sections),
                key=lambda sp: (-sp[0], sp[1].arxiv_id),
            )
            opens = []
            for score, paper in ranked:
                key = (id(episode), title_key(paper.title))
                if key not in opened_by_key:
                    opened_by_key[key] = (score, paper.arxiv_id, open_session(outcome, paper))
                opens.append(opened_by_key[key][2])
            per_action.append((action, opens[:value_papers_max]))
    ranked_next = sorted(opened_by_key.values(), key=lambda t: (-t[0], t[1]))
    return per_action, [session for _, _, session in ranked_next]


def first_sessions(chosen: list[Session], this_round: Sequence[Session], expand_top_k: int) -> list[Session]:
    """The next round's sessions: the ``expand_top_k`` best candidates (fewer when fewer papers were found)."""
    return chosen[:expand_top_k]


def episode_seen(episode: Episode) -> set[str]:
    """Papers already found for this user query: a paper is new once per episode (paper: "new papers")."""
    return episode.seen


def nothing_seen(episode: Episode) -> frozenset[str]:
    """Released ``dedup_scope="reply"``: repeats are removed within one reply only."""
    return frozenset()


OPEN_SESSIONS = {"best": open_best_sessions, "shortest_of_top": released.open_shortest_of_top}
SEEN_BEFORE = {"episode": episode_seen, "reply": nothing_seen}


class PaperSearchEnv:
    """Runs crawler actions against a paper source and prices them (DESIGN §1.3).

    Args:
        source: a ``pasa.tools.sources.PaperSource`` (offline local search over the paper DB by default).
        selector: a ``pasa.selector.Selector`` or None (answers only).
        config: a ``SessionPPOConfig`` (reads the reward, action and session knobs).

    The released variants a config asks for (``trl_ext.released``) are chosen here, once.
    """

    def __init__(self, source, selector, config):
        self.source = source
        self.selector = selector
        self.config = cfg = config
        if cfg.use_selector and selector is None:
            logger.warning("use_selector is set but no selector was given: papers are relevant by the answers only")
        self.parse_actions = partial(parse_actions, keep_empty=cfg.keep_empty_actions)
        self.seen_before = SEEN_BEFORE[cfg.dedup_scope]
        self.sections_list = released.sections_list_ascii if cfg.sections_ascii else sections_list_json
        self.section_ids = section_ids_of if cfg.resolve_citations_by_id else no_section_ids
        self.query_of_opened = released.query_read_back if cfg.query_from_reply else episode_query
        self.open_sessions = OPEN_SESSIONS[cfg.value_papers_rule]
        self.clip_floor = released.clip_floor_search_cost if cfg.clip_floor_search_cost else clip_floor_of_kind
        self.next_sessions = released.fill_sessions if cfg.fill_sessions else first_sessions

    # -- sessions -------------------------------------------------------------------------------------------------
    def search_session(self, episode: Episode) -> Session:
        return Session("search", episode, render_search_prompt(episode.user_query))

    def expand_session(self, episode: Episode, paper: Paper, user_query: str | None = None) -> Session:
        """The expand session of a paper; the RL code formats Sections as a JSON list (DESIGN §1.1 quirk).

        ``user_query`` replaces the episode's query in the prompt (the query read back from a reply, released).
        """
        query = episode.user_query if user_query is None else user_query
        names = self.sections_list(list(paper.sections or {}))
        prompt = SELECT_SECTION.format(user_query=query, title=paper.title, abstract=paper.abstract, sections=names)
        return Session("expand", episode, prompt.strip(), paper)

    def _open_session(self, outcome: SessionOutcome, paper: Paper) -> Session:
        """The expand session a new paper of this reply opens."""
        return self.expand_session(outcome.session.episode, paper, self.query_of_opened(outcome))

    # -- actions --------------------------------------------------------------------------------------------------
    def _search(self, query: str, end_date: str | None, failures: dict[str, int]) -> list[Paper]:
        cfg = self.config
        try:
            ids = self.source.search(query, cfg.search_results_k, end_date if cfg.use_end_date else None)
        except Exception as err:  # a failing source is counted and logged, never a crash mid-update
            failures["search"] += 1
            logger.warning("search(%r) failed: %s", query, err)
            return []
        papers = []
        for arxiv_id in ids:
            paper = self._safe(self.source.get_by_id, arxiv_id, failures, "lookup")
            if paper is not None:
                papers.append(paper)
            if len(papers) >= cfg.search_papers_kept:
                break
        return papers

    def _expand(self, paper: Paper | None, section: str, failures: dict[str, int]) -> list[Paper]:
        """Every cited paper of the chosen section that the source finds (released ``get_expand_papers``: sections
        match by a letters-only key), each looked up as ``pasa.resolve.lookup_plan`` says: by its arXiv id when the
        paper's sections carry one, else (or when the id is unknown) by title."""
        if paper is None or not paper.sections:
            return []
        chosen = [name for name in paper.sections if title_key(name) == title_key(section)]
        lookups = {"id": (self.source.get_by_id, "lookup"), "title": (self.source.get_by_title, "title")}
        papers = []
        for citation in chosen_citations(paper.sections, self.section_ids(paper), chosen):
            for how, value in lookup_plan(citation):
                fn, kind = lookups[how]
                cited = self._safe(fn, value, failures, kind)
                if cited is not None:
                    papers.append(cited)
                    break
        return papers

    @staticmethod
    def _safe(fn, arg, failures: dict[str, int], kind: str):
        try:
            return fn(arg)
        except Exception as err:
            failures[kind] += 1
            logger.warning("%s(%r) failed: %s", getattr(fn, "__name__", fn), arg, err)
            return None

    def _score(self, episode: Episode, papers: list[Paper], failures: dict[str, int]) -> list[float]:
        """max(1 if in the answers else 0, selector score) per paper (released response_handler)."""
        scores = [1.0 if title_key(p.title) in episode.answers else 0.0 for p in papers]
        if self.config.use_selector and self.selector is not None and papers:
            try:
                selected = self.selector.score(episode.user_query, [(p.title, p.abstract) for p in papers])
                scores = [max(a, float(s)) for a, s in zip(scores, selected, strict=True)]
            except Exception as err:
                failures["selector"] += 1
                logger.warning("selector failed for %r; scoring by the answers only: %s", episode.user_query, err)
        return scores

    def _run_reply(self, session: Session, reply: str) -> SessionOutcome:
        """Parse a reply's actions and run the first ``max_actions``; each keeps the papers new to it."""
        cfg = self.config
        outcome = SessionOutcome(session, reply, [], find_stop(reply, session.kind))
        outcome.stop_reward = cfg.cost(session.kind) if outcome.stop_char is not None else 0.0
        found_in_reply: set[str] = set()
        for i, (argument, span, end_char) in enumerate(self.parse_actions(reply, session.kind)):
            action = ActionOutcome(session.kind, argument, span, end_char, executed=i < cfg.max_actions)
            outcome.actions.append(action)
            if not action.executed:
                continue
            before = sum(outcome.failures.values())
            if session.kind == "search":
                papers = self._search(argument, session.episode.end_date, outcome.failures)
            else:
                papers = self._expand(session.paper, argument, outcome.failures)
            action.failed = sum(outcome.failures.values()) > before
            seen = self.seen_before(session.episode)
            for paper in papers:  # repeats in one reply (and, by default, in the episode) count once
                key = title_key(paper.title)
                if key and key not in found_in_reply and key not in seen:
                    action.new_papers.append(paper)
                found_in_reply.add(key)
            session.episode.seen.update(title_key(p.title) for p in action.new_papers)
        return outcome

    # -- one round ------------------------------------------------------------------------------------------------
    def step(
        self, sessions: Sequence[Session], replies: Sequence[str], value_fn: ValueFn | None = None
    ) -> tuple[list[SessionOutcome], list[Session]]:
        """Run one round: price every reply's actions and pick the next round's expand sessions.

        Returns one ``SessionOutcome`` per session (same order) and the next round's expand sessions: by default up
        to ``expand_top_k`` sessions of the best new papers (by score, then arXiv id) of the whole batch that have
        sections, each paper once per episode (``open_best_sessions``; the released rule and filling are in
        ``trl_ext.released``).
        """
        if len(sessions) != len(replies):
            raise ValueError(f"{len(sessions)} sessions but {len(replies)} replies")
        cfg = self.config
        outcomes = [self._run_reply(session, reply) for session, reply in zip(sessions, replies, strict=True)]

        # scores: one selector call per session's new papers
        for outcome in outcomes:
            papers = [p for a in outcome.actions for p in a.new_papers]
            scores = iter(self._score(outcome.session.episode, papers, outcome.failures))
            for action in outcome.actions:
                action.scores = [next(scores) for _ in action.new_papers]
                action.n_relevant = sum(s > cfg.select_threshold for s in action.scores)

        # the sessions each action opens (valued through γ1·ΣV) and the next round's candidates
        per_action, candidates = self.open_sessions(outcomes, cfg.value_papers_max, self._open_session)
        if value_fn is not None and cfg.use_value_bootstrap:
            opened = [s for _, opens in per_action for s in opens]
            values = iter([float(v) for v in value_fn(opened)] if opened else [])
            for action, opens in per_action:
                action.session_value = sum(next(values) for _ in opens)

        # rewards: clip(α·n − c + γ1·ΣV, floor, clip_max) per action
        all_actions = [a for o in outcomes for a in o.actions]
        if all_actions:
            rewards = action_rewards(
                [a.n_relevant for a in all_actions],
                alpha=[cfg.alpha(a.kind) for a in all_actions],
                cost=[cfg.cost(a.kind) for a in all_actions],
                session_values=[a.session_value for a in all_actions],
                gamma1=cfg.gamma1 if cfg.use_value_bootstrap else 0.0,
                clip_min=[self.clip_floor(a.kind, cfg.c_search, cfg.c_expand) for a in all_actions],
                clip_max=cfg.reward_clip_max,
            )
            for action, r in zip(all_actions, rewards.tolist(), strict=True):
                action.reward = r
        return outcomes, self.next_sessions(candidates, sessions, cfg.expand_top_k)
