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
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pasa.paper import Paper, title_key
from pasa.prompts import EXPAND_RE, SEARCH_RE, SELECT_SECTION, render_expand_prompt, render_search_prompt

logger = logging.getLogger(__name__)

# The stop tags of the released prompts' outputs; each earns +c (released response_handler).
STOP_TAGS = {"search": "[StopSearch]", "expand": "[StopExpand]"}
ACTION_RES = {"search": SEARCH_RE, "expand": EXPAND_RE}
# Kinds of failed calls counted per session (the agent's root.extra["failures"] keys, COORD contract 2).
FAILURE_KINDS = ("search", "lookup", "title", "selector")
# Released custom_agent/utils.py read the user query back from the decoded search text with this regex; the
# decoded chat ends "...User Query: <q>\nassistant\n" + reply, so it matches only when the reply starts with `[`.
RELEASED_QUERY_RE = re.compile(r"User Query:(.*?)assistant\n\[", flags=re.DOTALL)


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
    # failed source/selector calls of this session by kind (FAILURE_KINDS, all present); a failed search is an
    # action that found nothing because of the service, not because of the query
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_KINDS, 0))

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


class PaperSearchEnv:
    """Runs crawler actions against a paper source and prices them (DESIGN §1.3).

    Args:
        source: a ``pasa.tools.sources.PaperSource`` (offline local search over the paper DB by default).
        selector: a ``pasa.selector.Selector`` or None (answers only).
        config: a ``SessionPPOConfig`` (reads the reward, action and session knobs).
    """

    def __init__(self, source, selector, config):
        self.source = source
        self.selector = selector
        self.config = config
        if config.use_selector and selector is None:
            logger.warning("use_selector is set but no selector was given: papers are relevant by the answers only")

    # -- sessions -------------------------------------------------------------------------------------------------
    def search_session(self, episode: Episode) -> Session:
        return Session("search", episode, render_search_prompt(episode.user_query))

    def expand_session(self, episode: Episode, paper: Paper, user_query: str | None = None) -> Session:
        """The expand session of a paper; the RL code formats Sections as a JSON list (DESIGN §1.1 quirk).

        ``user_query`` replaces the episode's query in the prompt (released ``query_from_reply``). With
        ``sections_ascii`` the list is ``json.dumps`` with its default ``ensure_ascii`` (released ``utils.py``).
        """
        query = episode.user_query if user_query is None else user_query
        names = list(paper.sections or {})
        if self.config.sections_ascii:
            prompt = SELECT_SECTION.format(
                user_query=query, title=paper.title, abstract=paper.abstract, sections=json.dumps(names)
            ).strip()
        else:
            prompt = render_expand_prompt(query, paper.title, paper.abstract, names, sections_style="json")
        return Session("expand", episode, prompt, paper)

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
            if len(papers) >= cfg.search_papers:
                break
        return papers

    def _expand(self, paper: Paper | None, section: str, failures: dict[str, int]) -> list[Paper]:
        # Released get_expand_papers: sections match by letters-only key; every cited title found is a paper.
        # A citation the database links to an arXiv id (Paper.section_ids, parallel to sections) is resolved by
        # that id (an unknown id falls back to the title); released (resolve_citations_by_id false) and unlinked
        # citations by title.
        if paper is None or not paper.sections:
            return []
        key = title_key(section)
        section_ids = getattr(paper, "section_ids", None) if self.config.resolve_citations_by_id else None
        papers = []
        for name, titles in paper.sections.items():
            if title_key(name) != key:
                continue
            ids = list((section_ids or {}).get(name) or [])
            ids += [None] * (len(titles) - len(ids))
            for title, cited_id in zip(titles, ids, strict=False):
                cited = self._safe(self.source.get_by_id, cited_id, failures, "lookup") if cited_id else None
                if cited is None:
                    cited = self._safe(self.source.get_by_title, title, failures, "title")
                if cited is not None:
                    papers.append(cited)
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

    def _prompt_query(self, outcome: SessionOutcome) -> str | None:
        """The user query the sessions opened by this reply are written with; None = the episode's.

        Released (``query_from_reply``): read back from the decoded search chat text, so a search reply that does
        not start with `[` opens sessions with an empty query; expand prompts keep theirs (``research on `q`.``).
        """
        if not self.config.query_from_reply or outcome.session.kind != "search":
            return None
        m = RELEASED_QUERY_RE.search(f"User Query: {outcome.session.episode.user_query}\nassistant\n{outcome.reply}")
        return m.group(1).strip() if m else ""

    # -- one round ------------------------------------------------------------------------------------------------
    def step(
        self, sessions: Sequence[Session], replies: Sequence[str], value_fn: ValueFn | None = None
    ) -> tuple[list[SessionOutcome], list[Session]]:
        """Run one round: price every reply's actions and pick the next round's expand sessions.

        Returns one ``SessionOutcome`` per session (same order) and the next round's expand sessions. Default
        (``value_papers_rule="best"``): up to ``expand_top_k`` sessions of the best new papers (by score, then
        arXiv id) of the whole batch that have sections, each paper once per episode. Released
        (``"shortest_of_top"``): the candidates are the papers each action valued, by score (stable, in session
        order; the released threads appended them in completion order), repeats across sessions kept; with
        ``fill_sessions`` the list is repeated to ``expand_top_k``, and when it is empty this round's sessions are
        run again (repeated to ``expand_top_k``), as the released trainer did.
        """
        from trl_ext.rewards import action_rewards

        if len(sessions) != len(replies):
            raise ValueError(f"{len(sessions)} sessions but {len(replies)} replies")
        cfg = self.config
        outcomes: list[SessionOutcome] = []
        for session, reply in zip(sessions, replies, strict=True):
            outcome = SessionOutcome(session, reply, [], find_stop(reply, session.kind))
            outcome.stop_reward = cfg.cost(session.kind) if outcome.stop_char is not None else 0.0
            found_in_reply: set[str] = set()
            parsed = parse_actions(reply, session.kind, keep_empty=cfg.keep_empty_actions)
            for i, (argument, span, end_char) in enumerate(parsed):
                action = ActionOutcome(session.kind, argument, span, end_char, executed=i < cfg.max_actions)
                if action.executed:
                    before = sum(outcome.failures.values())
                    if session.kind == "search":
                        papers = self._search(argument, session.episode.end_date, outcome.failures)
                    else:
                        papers = self._expand(session.paper, argument, outcome.failures)
                    action.failed = sum(outcome.failures.values()) > before
                    for paper in papers:  # repeats in one reply (and, by default, in the episode) count once
                        key = title_key(paper.title)
                        if not key or key in found_in_reply:
                            continue
                        found_in_reply.add(key)
                        if cfg.dedup_scope == "episode" and key in session.episode.seen:
                            continue
                        action.new_papers.append(paper)
                    session.episode.seen.update(title_key(p.title) for p in action.new_papers)
                outcome.actions.append(action)
            outcomes.append(outcome)

        # scores: one selector call per session's new papers
        for outcome in outcomes:
            papers = [p for a in outcome.actions for p in a.new_papers]
            scores = iter(self._score(outcome.session.episode, papers, outcome.failures))
            for action in outcome.actions:
                action.scores = [next(scores) for _ in action.new_papers]
                action.n_relevant = sum(s > cfg.select_threshold for s in action.scores)

        # the sessions each action opens (valued through γ1·ΣV) and the next round's candidates
        per_action, candidates = self._opened_sessions(outcomes)
        if value_fn is not None and cfg.use_value_bootstrap:
            queries = [s for _, opens in per_action for s in opens]
            values = iter([float(v) for v in value_fn(queries)] if queries else [])
            for action, opens in per_action:
                action.session_value = sum(next(values) for _ in opens)

        # rewards
        all_actions = [a for o in outcomes for a in o.actions]
        if all_actions:
            rewards = action_rewards(
                [a.n_relevant for a in all_actions],
                alpha=[cfg.alpha(a.kind) for a in all_actions],
                cost=[cfg.cost(a.kind) for a in all_actions],
                session_values=[a.session_value for a in all_actions],
                gamma1=cfg.gamma1 if cfg.use_value_bootstrap else 0.0,
                clip_min=[cfg.clip_floor(a.kind) for a in all_actions],
                clip_max=cfg.reward_clip_max,
            )
            for action, r in zip(all_actions, rewards.tolist(), strict=True):
                action.reward = r

        nxt = candidates[: cfg.expand_top_k]
        if cfg.fill_sessions and cfg.expand_top_k > 0:
            pool = nxt or list(sessions)  # released: nothing found -> this round's prompts again
            nxt = [pool[i % len(pool)] for i in range(cfg.expand_top_k)] if pool else []
        return outcomes, nxt

    def _opened_sessions(
        self, outcomes: list[SessionOutcome]
    ) -> tuple[list[tuple[ActionOutcome, list[Session]]], list[Session]]:
        """Per action, the expand sessions whose values it adds; and the next round's candidates, best first.

        ``best``: the ``value_papers_max`` best new papers with sections (score desc, then arXiv id); candidates =
        every new paper with sections, once per episode, by (score desc, arXiv id). ``shortest_of_top`` (released
        ``response_handler``): the ``value_papers_max + 2`` best by score (stable), of those the
        ``value_papers_max`` with the shortest expand prompt (characters, stable), sections not required; only
        those are candidates, by score (stable), repeats kept.
        """
        cfg = self.config
        per_action: list[tuple[ActionOutcome, list[Session]]] = []
        if cfg.value_papers_rule == "shortest_of_top":
            candidates: list[tuple[float, Session]] = []
            for outcome in outcomes:
                query = self._prompt_query(outcome)
                for action in outcome.actions:
                    pairs = list(zip(action.scores, action.new_papers, strict=True))
                    top = sorted(pairs, key=lambda sp: -sp[0])[: cfg.value_papers_max + 2]
                    opened = [(s, self.expand_session(outcome.session.episode, p, query)) for s, p in top]
                    opened = sorted(opened, key=lambda ss: len(ss[1].prompt))[: cfg.value_papers_max]
                    per_action.append((action, [sess for _, sess in opened]))
                    candidates += opened
            return per_action, [sess for _, sess in sorted(candidates, key=lambda ss: -ss[0])]

        opened_by_key: dict[tuple[int, str], tuple[float, str, Session]] = {}
        for outcome in outcomes:
            episode = outcome.session.episode
            query = self._prompt_query(outcome)
            for action in outcome.actions:
                ranked = sorted(
                    ((s, p) for s, p in zip(action.scores, action.new_papers, strict=True) if p.sections),
                    key=lambda sp: (-sp[0], sp[1].arxiv_id),
                )
                opens = []
                for s, p in ranked:
                    k = (id(episode), title_key(p.title))
                    if k not in opened_by_key:
                        opened_by_key[k] = (s, p.arxiv_id, self.expand_session(episode, p, query))
                    opens.append(opened_by_key[k][2])
                per_action.append((action, opens[: cfg.value_papers_max]))
        ranked_next = sorted(opened_by_key.values(), key=lambda t: (-t[0], t[1]))
        return per_action, [s for _, _, s in ranked_next]
