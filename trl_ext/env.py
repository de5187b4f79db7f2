"""The paper-search environment of the session-level Crawler PPO: crawler replies in, rewards and next sessions out.

One user query is an *episode*; each crawler reply to a search prompt or to one paper's expand prompt is a
*session* (DESIGN §1.3). ``PaperSearchEnv.step`` parses the actions of a batch of replies with the released
regexes (``pasa.prompts``), runs them against a ``PaperSource``, scores the new papers (answer set ∪ Selector),
prices every action with ``trl_ext.rewards.action_rewards`` (value bootstrap through an injected ``value_fn``) and
returns the per-action outcomes with the character spans the trainer maps to tokens, plus the next round's expand
sessions. No model, tokenizer or network of its own: the source, the selector and ``value_fn`` are injected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pasa.paper import Paper, title_key
from pasa.prompts import EXPAND_RE, SEARCH_RE, render_expand_prompt, render_search_prompt

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


@dataclass
class SessionOutcome:
    """The parsed and priced reply of one session."""

    session: Session
    reply: str
    actions: list[ActionOutcome]
    stop_char: int | None  # the `]` of the stop tag, None when the reply does not stop
    stop_reward: float = 0.0

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


def parse_actions(reply: str, kind: str) -> list[tuple[str, tuple[int, int], int]]:
    """Actions of a reply as ``(argument, (start, end), end_char)``, with the released regexes.

    An action's argument runs from its tag to the next ``[`` (``pasa.prompts.SEARCH_RE``/``EXPAND_RE``), so an
    action cut off by the response length (no closing ``[``) is not an action; empty arguments are dropped, as the
    inference parser does.

    >>> parse_actions("[Search] a\\n[Search] b\\n[StopSearch]", "search")
    [('a', (0, 11), 11), ('b', (11, 22), 22)]
    >>> parse_actions("[Search] cut off", "search")
    []
    """
    out = []
    for m in ACTION_RES[kind].finditer(reply):
        argument = m.group(1).strip()
        if not argument:
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

    def expand_session(self, episode: Episode, paper: Paper) -> Session:
        """The expand session of a paper; the RL code formats Sections as a JSON list (DESIGN §1.1 quirk)."""
        prompt = render_expand_prompt(
            episode.user_query, paper.title, paper.abstract, list(paper.sections or {}), sections_style="json"
        )
        return Session("expand", episode, prompt, paper)

    # -- actions --------------------------------------------------------------------------------------------------
    def _search(self, query: str, end_date: str | None) -> list[Paper]:
        cfg = self.config
        try:
            ids = self.source.search(query, cfg.search_results_k, end_date if cfg.use_end_date else None)
        except Exception as err:  # a failing source is a logged empty result, never a crash mid-update
            logger.warning("search %r failed: %s", query, err)
            return []
        papers = []
        for arxiv_id in ids:
            paper = self._safe(self.source.get_by_id, arxiv_id)
            if paper is not None:
                papers.append(paper)
            if len(papers) >= cfg.search_papers:
                break
        return papers

    def _expand(self, paper: Paper | None, section: str) -> list[Paper]:
        # Released get_expand_papers: sections match by letters-only key; every cited title found is a paper.
        if paper is None or not paper.sections:
            return []
        key = title_key(section)
        papers = []
        for name, titles in paper.sections.items():
            if title_key(name) != key:
                continue
            for title in titles:
                cited = self._safe(self.source.get_by_title, title)
                if cited is not None:
                    papers.append(cited)
        return papers

    @staticmethod
    def _safe(fn, arg):
        try:
            return fn(arg)
        except Exception as err:
            logger.warning("%s(%r) failed: %s", getattr(fn, "__name__", fn), arg, err)
            return None

    def _score(self, episode: Episode, papers: list[Paper]) -> list[float]:
        """max(1 if in the answers else 0, selector score) per paper (released response_handler)."""
        scores = [1.0 if title_key(p.title) in episode.answers else 0.0 for p in papers]
        if self.config.use_selector and self.selector is not None and papers:
            try:
                selected = self.selector.score(episode.user_query, [(p.title, p.abstract) for p in papers])
                scores = [max(a, float(s)) for a, s in zip(scores, selected, strict=True)]
            except Exception as err:
                logger.warning("selector failed for %r; scoring by the answers only: %s", episode.user_query, err)
        return scores

    # -- one round ------------------------------------------------------------------------------------------------
    def step(
        self, sessions: Sequence[Session], replies: Sequence[str], value_fn: ValueFn | None = None
    ) -> tuple[list[SessionOutcome], list[Session]]:
        """Run one round: price every reply's actions and pick the next round's expand sessions.

        Returns one ``SessionOutcome`` per session (same order) and up to ``expand_top_k`` expand sessions of the
        best new papers (by score, then arXiv id) of the whole batch that have sections to expand.
        """
        from trl_ext.rewards import action_rewards

        if len(sessions) != len(replies):
            raise ValueError(f"{len(sessions)} sessions but {len(replies)} replies")
        cfg = self.config
        outcomes: list[SessionOutcome] = []
        for session, reply in zip(sessions, replies, strict=True):
            actions = []
            found_in_reply: set[str] = set()
            for i, (argument, span, end_char) in enumerate(parse_actions(reply, session.kind)):
                action = ActionOutcome(session.kind, argument, span, end_char, executed=i < cfg.max_actions)
                if action.executed:
                    if session.kind == "search":
                        papers = self._search(argument, session.episode.end_date)
                    else:
                        papers = self._expand(session.paper, argument)
                    for paper in papers:  # repeats in one reply (and, by default, in the episode) count once
                        key = title_key(paper.title)
                        if not key or key in found_in_reply:
                            continue
                        found_in_reply.add(key)
                        if cfg.dedup_scope == "episode" and key in session.episode.seen:
                            continue
                        action.new_papers.append(paper)
                    session.episode.seen.update(title_key(p.title) for p in action.new_papers)
                actions.append(action)
            stop_char = find_stop(reply, session.kind)
            outcomes.append(
                SessionOutcome(
                    session, reply, actions, stop_char, cfg.cost(session.kind) if stop_char is not None else 0
                )
            )

        # scores: one selector call per session's new papers
        for outcome in outcomes:
            papers = [p for a in outcome.actions for p in a.new_papers]
            scores = iter(self._score(outcome.session.episode, papers))
            for action in outcome.actions:
                action.scores = [next(scores) for _ in action.new_papers]
                action.n_relevant = sum(s > cfg.select_threshold for s in action.scores)

        # value bootstrap: V of the expand sessions opened by each action's best new papers, in one batch
        opened: dict[tuple[int, str], tuple[float, str, Session]] = {}
        per_action: list[tuple[ActionOutcome, list[Session]]] = []
        for outcome in outcomes:
            episode = outcome.session.episode
            for action in outcome.actions:
                ranked = sorted(
                    ((s, p) for s, p in zip(action.scores, action.new_papers, strict=True) if p.sections),
                    key=lambda sp: (-sp[0], sp[1].arxiv_id),
                )
                opens = []
                for s, p in ranked:
                    k = (id(episode), title_key(p.title))
                    if k not in opened:
                        opened[k] = (s, p.arxiv_id, self.expand_session(episode, p))
                    opens.append(opened[k][2])
                per_action.append((action, opens[: cfg.value_papers_max]))
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
                clip_max=cfg.reward_clip_max,
            )
            for action, r in zip(all_actions, rewards.tolist(), strict=True):
                action.reward = r

        ranked_next = sorted(opened.values(), key=lambda t: (-t[0], t[1]))
        return outcomes, [s for _, _, s in ranked_next[: cfg.expand_top_k]]
