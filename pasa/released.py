"""The released agent's variants of the PaSa loop, and the one table that picks them.

Each row of ``RELEASED`` is one flag of ``AgentConfig``: its value in the released ``paper_agent.py``, the step of
the loop it changes, and the two forms of that step (the project's and the released one). ``loop_rules(config)``
reads the flags once, when a ``PaperAgent`` is built, and returns the functions its loop calls; the loop itself
never looks at a flag. Each row is listed with its reason in docs/released_differences.md (Agent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pasa.paper import Paper, PaperNode, title_key
from pasa.resolve import Citation
from pasa.tools.sources import published_before

logger = logging.getLogger(__name__)


# -- the project's form of each step -------------------------------------------------------------------------------
def keep_published_by(paper: Paper, end_date: str | None) -> bool:
    """Keep a paper published on or before ``end_date`` (or with no known date)."""
    if published_before(paper, end_date):
        return True
    logger.debug("dropped %s (published %s, after end date %s)", paper.arxiv_id, paper.published, end_date)
    return False


def show_resolved_title(citation: Citation, paper: Paper) -> str:
    """The Selector scores a cited paper under its own title."""
    return paper.title


def needs_sections(node: PaperNode) -> bool:
    """Fetch sections when the record has none: missing ("" / None) or empty ({})."""
    return not node.has_sections


def title_lookup_key(cited: str) -> str:
    """One title lookup per normalised title (letters only, lower case) in a run."""
    return title_key(cited)


def citation_ids(node: PaperNode) -> dict[str, list[str | None]] | None:
    """The cited arXiv ids the paper record knows (a citation with an id is resolved by it)."""
    return node.section_ids


def keep_sections_field(node: PaperNode, fetched: Any) -> None:
    """A failed section fetch leaves the node's sections field as it was."""


@dataclass(frozen=True)
class CutQuery:
    """Cut a search query to ``max_chars`` characters (a garbage reply once made a 96 kB query)."""

    max_chars: int

    def __call__(self, query: str) -> str:
        if len(query) <= self.max_chars:
            return query
        logger.warning("search query of %d characters cut to %d: %r...", len(query), self.max_chars, query[:80])
        return query[: self.max_chars].rstrip()


# -- the released form ----------------------------------------------------------------------------------------------
def keep_any_date(paper: Paper, end_date: str | None) -> bool:
    """Released: the end date only went to the search engine; papers found by id or title were never filtered."""
    return True


def show_cited_title(citation: Citation, paper: Paper) -> str:
    """Released: the Selector saw the title as the citing paper's bibliography wrote it."""
    return citation.cited


def needs_missing_sections(node: PaperNode) -> bool:
    """Released: sections were fetched only when the record had none at all; a {} record went to the crawler."""
    return not isinstance(node.sections, dict)


def title_as_written(cited: str) -> str:
    """Released: every cited string was looked up as written."""
    return cited


def no_citation_ids(node: PaperNode) -> None:
    """Released: citations were always resolved by title."""
    return None


def store_failed_sections(node: PaperNode, fetched: Any) -> None:
    """Released: the node kept what the failed fetch returned (null or {})."""
    node.sections = fetched


def uncut_query(query: str) -> str:
    """Released: search queries went out at any length."""
    return query


# -- the table ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One flag: its released value, and the form of the step for the project's and the released value."""

    released_value: Any
    project: Any
    released: Any


# flag -> Variant. ``project`` / ``released`` are the step functions (``CutQuery`` is built with the config's
# ``max_query_chars``); for the two plain settings, the config field that limits the search queries and whether an
# empty query is kept.
RELEASED: dict[str, Variant] = {
    "filter_by_end_date": Variant(False, keep_published_by, keep_any_date),
    "selector_sees_cited_title": Variant(True, show_resolved_title, show_cited_title),
    "refetch_empty_sections": Variant(False, needs_sections, needs_missing_sections),
    "keep_empty_queries": Variant(True, False, True),
    "search_queries_from_expand_papers": Variant(True, "search_queries", "expand_papers"),
    "dedup_title_lookups": Variant(False, title_lookup_key, title_as_written),
    "resolve_citations_by_id": Variant(False, citation_ids, no_citation_ids),
    "keep_failed_sections": Variant(True, keep_sections_field, store_failed_sections),
    "max_query_chars": Variant(0, CutQuery, uncut_query),
}

# Every released value (``AgentConfig(released_behaviour=True)`` sets them all).
RELEASED_VALUES: dict[str, Any] = {flag: row.released_value for flag, row in RELEASED.items()}


@dataclass(frozen=True)
class LoopRules:
    """The steps of the loop that have a released form, as chosen for one config."""

    keep_paper: Callable[[Paper, str | None], bool]  # date filter on every paper found
    shown_title: Callable[[Citation, Paper], str]  # the title the Selector scores a cited paper under
    needs_sections: Callable[[PaperNode], bool]  # fetch sections before asking the Crawler?
    title_key: Callable[[str], str]  # one title lookup per key in a run
    citation_ids: Callable[[PaperNode], dict[str, list[str | None]] | None]  # ids to resolve citations by
    on_failed_sections: Callable[[PaperNode, Any], None]  # what a failed section fetch leaves on the node
    cap_query: Callable[[str], str]  # length cap of a search query
    query_limit: int  # search queries kept
    keep_empty_queries: bool  # keep an empty "[Search] " query


def loop_rules(config) -> LoopRules:
    """Pick each step's form from the config's flags (an ``AgentConfig``), once."""

    def pick(flag: str):
        row = RELEASED[flag]
        return row.released if getattr(config, flag) == row.released_value else row.project

    cap = pick("max_query_chars")
    return LoopRules(
        keep_paper=pick("filter_by_end_date"),
        shown_title=pick("selector_sees_cited_title"),
        needs_sections=pick("refetch_empty_sections"),
        title_key=pick("dedup_title_lookups"),
        citation_ids=pick("resolve_citations_by_id"),
        on_failed_sections=pick("keep_failed_sections"),
        cap_query=CutQuery(config.max_query_chars) if cap is CutQuery else cap,
        query_limit=getattr(config, pick("search_queries_from_expand_papers")),
        keep_empty_queries=pick("keep_empty_queries"),
    )
