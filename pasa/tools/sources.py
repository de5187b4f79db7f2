"""PaperSource: the one facade the agent and the RL environment see (DESIGN §2).

A source answers four questions: which arXiv ids a search query returns, the paper behind an id, the paper
behind a cited title, and the citable sections of a paper. Implementations never raise for a missing paper or a
failed service: they return ``None``/``[]`` and log (STYLE rule 4), so the agent loop never crashes halfway.

This module has the protocol, ``InMemoryPaperSource`` (tests, demos) and ``PaperDBSource`` (the released local
paper database). The online composite source and the offline search engine live beside it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from pasa.paper import Paper, Sections, normalize_arxiv_id, title_key

logger = logging.getLogger(__name__)


@runtime_checkable
class PaperSource(Protocol):
    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        """Up to ``k`` arXiv ids (no version) for a search query, best first; ``end_date`` is ``YYYYMMDD``."""
        ...

    def get_by_id(self, arxiv_id: str) -> Paper | None: ...

    def get_by_title(self, title: str) -> Paper | None:
        """The paper whose title matches exactly after ``title_key`` normalisation."""
        ...

    def get_sections(self, arxiv_id: str) -> Sections | None:
        """Second-level section name -> cited titles; ``None`` when the full text is unavailable."""
        ...


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def published_before(paper: Paper, end_date: str | None) -> bool:
    """True when the paper may be used under the end-date rule (unknown dates pass)."""
    return end_date is None or not paper.published or paper.published[:8] <= end_date


class InMemoryPaperSource:
    """A dict-backed source: scripted search results, else a bag-of-words search over the papers.

    Args:
        papers: the papers, any iterable of ``Paper``.
        search_results: optional query -> ordered arXiv ids (scripted search, as a fake Google).
    """

    def __init__(self, papers: Iterable[Paper], search_results: dict[str, list[str]] | None = None):
        self.papers = {normalize_arxiv_id(p.arxiv_id): p for p in papers}
        self.by_title = {title_key(p.title): p for p in self.papers.values()}
        self.search_results = dict(search_results or {})

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        if query in self.search_results:
            ids = self.search_results[query]
        else:
            words = _words(query)
            scored = [(len(words & _words(f"{p.title} {p.abstract}")), pid) for pid, p in self.papers.items()]
            ids = [pid for s, pid in sorted(scored, key=lambda x: (-x[0], x[1])) if s > 0]
        ids = [i for i in ids if i not in self.papers or published_before(self.papers[i], end_date)]
        return ids[:k]

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        return self.papers.get(normalize_arxiv_id(arxiv_id))

    def get_by_title(self, title: str) -> Paper | None:
        return self.by_title.get(title_key(title))

    def get_sections(self, arxiv_id: str) -> Sections | None:
        paper = self.get_by_id(arxiv_id)
        return paper.sections if paper is not None and paper.sections else None


class PaperDBSource:
    """The released local paper database: ``cs_paper_2nd.zip`` + ``id2paper.json`` (read-only, no search).

    ``search`` returns nothing: the released database has no search engine; pair it with the offline index
    (``pasa.tools.local_search``) or Serper.
    """

    def __init__(self, zip_path: str, id2paper_path: str):
        from pasa.tools.paper_db import PaperDB

        self.db = PaperDB(zip_path, id2paper_path)

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        return []

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        return self.db.get_by_id(arxiv_id)

    def get_by_title(self, title: str) -> Paper | None:
        return self.db.get_by_title(title)

    def get_sections(self, arxiv_id: str) -> Sections | None:
        paper = self.db.get_by_id(arxiv_id)
        return paper.sections if paper is not None and paper.sections else None


class ChainedPaperSource:
    """Ask several sources in order: the first non-empty answer wins (e.g. local DB first, then online)."""

    def __init__(self, *sources: PaperSource):
        self.sources = sources

    def _first(self, method: str, *args):
        for source in self.sources:
            try:
                result = getattr(source, method)(*args)
            except Exception as err:  # a failing service is a logged skip, never a crash in the agent
                logger.warning("%s.%s%r failed: %s", type(source).__name__, method, args, err)
                continue
            if result:
                return result
        return None

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        return self._first("search", query, k, end_date) or []

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        return self._first("get_by_id", arxiv_id)

    def get_by_title(self, title: str) -> Paper | None:
        return self._first("get_by_title", title)

    def get_sections(self, arxiv_id: str) -> Sections | None:
        return self._first("get_sections", arxiv_id)
