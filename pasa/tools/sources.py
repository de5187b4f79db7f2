"""PaperSource: the one facade the agent and the RL environment see (DESIGN §2).

A source answers four questions: which arXiv ids a search query returns, the paper behind an id, the paper
behind a cited title, and the citable sections of a paper.

Failure contract: a source returns ``None``/``[]`` when the thing does not exist
(arXiv has no such id, no exact-title match, no HTML version), and RAISES when the call failed (``ServiceError``
after the HTTP layer's retries, a missing key, a bad answer). A failed call is never turned into "not found" here:
the caller (the agent, the PPO environment) logs one warning naming the service, the argument and the cause, and
counts it, so a degraded result is marked instead of silently missing papers. ``ChainedPaperSource`` tries the
next source when one fails; it raises only when no source answered and at least one failed.

This module has the protocol, ``InMemoryPaperSource`` (tests, demos), ``PaperDBSource`` (the released local paper
database), ``OnlinePaperSource`` (Serper or arXiv search, arXiv lookups, ar5iv / arxiv.org/html full text), the
composites, and ``build_paper_source``, the factory the runner and the PPO script use. The offline search engine is
``pasa.tools.local_search``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from pasa.paper import CitedSections, Paper, Sections, normalize_arxiv_id, title_key

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
        """Second-level section name -> cited titles; ``None`` when the full text is unavailable. Fetched pages
        answer a ``pasa.paper.CitedSections`` (cited arXiv ids in ``section_ids``, the page in ``source``)."""
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


class SourceFailedError(RuntimeError):
    """Every source that could answer failed (the first failure is the ``__cause__``; all are in ``errors``)."""

    def __init__(self, message: str, errors: list[BaseException]):
        super().__init__(message)
        self.errors = errors


class ChainedPaperSource:
    """Ask several sources in order: the first non-empty answer wins (e.g. local DB first, then online).

    A source that raises is skipped (one INFO line) and the next one asked. When no source answered and at least
    one failed, the failure is raised (the only failure as it is, several as ``SourceFailedError``): "not found"
    from the local DB and a timeout from arXiv is an unknown answer, not a missing paper.
    """

    def __init__(self, *sources: PaperSource):
        self.sources = sources

    def _first(self, method: str, *args):
        errors: list[BaseException] = []
        for source in self.sources:
            try:
                result = getattr(source, method)(*args)
            except Exception as err:  # try the next source; raised below if none answers
                logger.info("%s.%s%r failed, trying the next source: %s", type(source).__name__, method, args, err)
                errors.append(err)
                continue
            if result:
                if errors:
                    logger.info("%s%r answered by %s after %d failure(s)", method, args, type(source).__name__,
                                len(errors))  # fmt: skip
                return result
        if len(errors) == 1:
            raise errors[0]
        if errors:
            causes = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            raise SourceFailedError(f"{method}{args!r}: every source failed: {causes}", errors) from errors[0]
        return None

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        return self._first("search", query, k, end_date) or []

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        return self._first("get_by_id", arxiv_id)

    def get_by_title(self, title: str) -> Paper | None:
        return self._first("get_by_title", title)

    def get_sections(self, arxiv_id: str) -> Sections | None:
        return self._first("get_sections", arxiv_id)


class CompositePaperSource:
    """Search with one source, resolve with several (first non-empty answer wins).

    This is the released arrangement: Google (or the offline index) finds ids; a paper is looked up in the local
    paper DB first, then online; sections come from the DB, else ar5iv. A failed search raises (the caller logs
    and counts it).
    """

    def __init__(self, searcher: PaperSource, lookups: list[PaperSource]):
        self.searcher = searcher
        self.lookups = ChainedPaperSource(*lookups)

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        return self.searcher.search(query, k, end_date) or []

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        return self.lookups.get_by_id(arxiv_id)

    def get_by_title(self, title: str) -> Paper | None:
        return self.lookups.get_by_title(title)

    def get_sections(self, arxiv_id: str) -> Sections | None:
        return self.lookups.get_sections(arxiv_id)


class TitleLookupSource:
    """A metadata lookup (``pasa.tools.title_index.TitleIndex``) as a ``PaperSource``: searches nothing, has no
    sections, answers ``get_by_title`` (and ``get_by_id`` when the index has it)."""

    def __init__(self, index):
        self.index = index

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        return []

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        get = getattr(self.index, "get_by_id", None)
        return get(arxiv_id) if get is not None else None

    def get_by_title(self, title: str) -> Paper | None:
        return self.index.get_by_title(title)

    def get_sections(self, arxiv_id: str) -> Sections | None:
        return None


class OnlinePaperSource:
    """Online search (Google through Serper, or the arXiv API), the arXiv API for lookups, and the full text from
    ar5iv, then arXiv's own HTML when ar5iv has no page; every request through one ``HttpClient``.

    A connector's ``PaperNotFoundError`` (no such paper, no exact title match, no HTML version) is ``None`` with a
    debug line; every other error (``ServiceError`` after the HTTP layer's retries, a missing key, a bad answer, a
    bibliography that could not be read) propagates to the caller, which logs and counts it (module docstring).

    Args:
        http: the shared ``HttpClient`` (default: a new one with the on-disk cache).
        serper_url, arxiv_url, ar5iv_url: service addresses (``ServiceArgs``; tests point them at loopback).
        arxiv_html_url: arXiv's LaTeXML pages (``{arxiv_id}`` template), asked when ar5iv has no page or fails;
            None: ar5iv only.
        search_engine: ``"serper"`` (Google, the paper's setting; needs ``SERPER_API_KEY``) or ``"arxiv"`` (the
            arXiv API's search, no key; ``pasa.tools.arxiv_search``).
        released_serper: the released Serper id extraction (new-style ids only, ``list(set(ids))`` order).
        released_cite_split: the released multi-reference ``<cite>`` split (only the first reference counts).
        released_titles: the released bibliography title split, no cited arXiv ids.
        released_title_match: the released title lookup pick (the hit titled like the last hit).
        title_extractor: ``pasa.tools.title_llm.LLMTitleExtractor`` for the titles the rules cannot read (not with
            ``released_titles``); None: rules only.
    """

    def __init__(
        self,
        http=None,
        serper_url: str | None = None,
        arxiv_url: str | None = None,
        ar5iv_url: str | None = None,
        arxiv_html_url: str | None = None,
        search_engine: str = "serper",
        released_serper: bool = False,
        released_cite_split: bool = False,
        released_titles: bool = False,
        released_title_match: bool = False,
        title_extractor=None,
    ):
        from pasa.tools import ar5iv, arxiv_api, serper
        from pasa.tools.http import HttpClient

        if search_engine not in ONLINE_ENGINES:
            raise ValueError(f"search_engine must be one of {', '.join(ONLINE_ENGINES)}, got {search_engine!r}")
        self.http = http if http is not None else HttpClient()
        self.serper_url = serper_url or serper.SERPER_URL
        self.arxiv_url = arxiv_url or arxiv_api.ARXIV_API_URL
        self.ar5iv_url = ar5iv_url or ar5iv.AR5IV_URL
        self.arxiv_html_url = arxiv_html_url
        self.search_engine = search_engine
        self.released_serper = released_serper
        self.released_cite_split = released_cite_split
        self.released_titles = released_titles
        self.released_title_match = released_title_match
        self.title_extractor = None if released_titles else title_extractor
        self._search = self._search_serper if search_engine == "serper" else self._search_arxiv

    @staticmethod
    def _not_found_is_none(what: str, arg: str, fn):
        from pasa.tools.http import PaperNotFoundError

        try:
            return fn()
        except PaperNotFoundError as err:
            logger.debug("%s %r: %s", what, arg, err)
            return None

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        return self._search(query, k, end_date)

    def _search_serper(self, query: str, k: int, end_date: str | None) -> list[str]:
        from pasa.tools import serper

        return serper.search_arxiv_ids(
            self.http, query, k, end_date, url=self.serper_url, released=self.released_serper
        )

    def _search_arxiv(self, query: str, k: int, end_date: str | None) -> list[str]:
        from pasa.tools import arxiv_search

        return arxiv_search.search_arxiv_ids(self.http, query, k, end_date, url=self.arxiv_url)

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        from pasa.tools import arxiv_api

        return self._not_found_is_none(
            "arXiv lookup of id", arxiv_id, lambda: arxiv_api.fetch_paper_by_id(self.http, arxiv_id, self.arxiv_url)
        )

    def get_by_title(self, title: str) -> Paper | None:
        """The arXiv paper titled ``title``. A cited string that writes an arXiv id (a reference with an id and no
        title is cited as its text, ``pasa.tools.ar5iv.cited_titles``) is looked up by that id (not with
        ``released_titles``)."""
        from pasa.tools import arxiv_api
        from pasa.tools.ar5iv import find_arxiv_id

        if not self.released_titles and (written := find_arxiv_id(title)):
            return self.get_by_id(written)
        return self._not_found_is_none(
            "arXiv lookup of title",
            title,
            lambda: arxiv_api.fetch_paper_by_title(
                self.http, title, self.arxiv_url, released_title_match=self.released_title_match
            ),
        )

    def get_sections(self, arxiv_id: str) -> CitedSections | None:
        """The cited sections of the first page that has the paper: ar5iv, then arxiv.org/html. A page that failed
        is skipped for the next; when none has the paper and one failed, that failure is raised."""
        from pasa.tools import ar5iv
        from pasa.tools.http import PaperNotFoundError

        pages = [("ar5iv", self.ar5iv_url)] + ([("arxiv_html", self.arxiv_html_url)] if self.arxiv_html_url else [])
        errors: list[Exception] = []
        for name, url in pages:
            try:
                sections = ar5iv.fetch_section_citations(
                    self.http,
                    arxiv_id,
                    url,
                    self.released_cite_split,
                    self.released_titles,
                    source=name,
                    title_extractor=self.title_extractor,
                )
            except PaperNotFoundError as err:
                logger.debug("%s sections of %r: %s", name, arxiv_id, err)
                continue
            except Exception as err:  # the next page may have it; raised below if none does
                logger.info("%s sections of %r failed, trying the next page: %s", name, arxiv_id, err)
                errors.append(err)
                continue
            return sections or None
        if errors:
            raise errors[0]
        return None


SERPER_KEY_ENV = "SERPER_API_KEY"
SEARCH_ENGINES = ("serper", "arxiv", "local")
ONLINE_ENGINES = ("serper", "arxiv")
NO_SOURCE_HELP = (
    "no paper source: pick a search engine with --search_engine serper|arxiv|local: serper is Google (set "
    "SERPER_API_KEY, a serper.dev key; the paper's setting), arxiv is the arXiv API's search (no key), local is an "
    "offline index (--search_index DIR, built with `pasa index`) or the released paper database (--paper_db "
    "cs_paper_2nd.zip --id2paper id2paper.json)"
)


def choose_search_engine(search_engine: str | None, online: bool | None, offline: bool) -> str:
    """The search engine of a run: the one asked for, else ``serper`` when ``SERPER_API_KEY`` is set (unless
    ``online`` is False), else ``local`` when an offline index or paper DB is given. Raises ``ValueError`` with one
    line saying what to pass.

    >>> choose_search_engine("arxiv", None, offline=False)
    'arxiv'
    """
    has_key = bool(os.environ.get(SERPER_KEY_ENV, "").strip())
    if search_engine is not None:
        if search_engine not in SEARCH_ENGINES:
            raise ValueError(f"--search_engine must be one of {', '.join(SEARCH_ENGINES)}, got {search_engine!r}")
        if search_engine in ONLINE_ENGINES and online is False:
            raise ValueError(f"--search_engine {search_engine} searches online; drop --online false (or use "
                             "--search_engine local)")  # fmt: skip
        if search_engine == "serper" and not has_key:
            raise ValueError(f"--search_engine serper needs the {SERPER_KEY_ENV} environment variable (a serper.dev "
                             "key); --search_engine arxiv searches without a key")  # fmt: skip
        if search_engine == "local" and not offline:
            raise ValueError("--search_engine local needs an offline index (--search_index DIR) or the paper "
                             "database (--paper_db ZIP --id2paper JSON)")  # fmt: skip
        return search_engine
    if online and not has_key:
        raise ValueError(f"online search needs the {SERPER_KEY_ENV} environment variable (a serper.dev key), or "
                         "--search_engine arxiv for the arXiv API's search (no key)")  # fmt: skip
    if has_key and online is not False:
        return "serper"
    if offline:
        return "local"
    raise ValueError(NO_SOURCE_HELP)


def default_index_dir(paper_db: str) -> str:
    """Where the offline index of a paper DB is cached: ``search_index/`` beside the zip, or, when that folder is
    read-only, ``<cache dir>/search_index-<zip name>`` (``$PASA_CACHE_DIR``, default ``~/.cache/pasa``)."""
    folder = os.path.dirname(os.path.abspath(paper_db))
    if os.access(folder, os.W_OK):
        return os.path.join(folder, "search_index")
    from pasa.tools.http import default_cache_dir

    name = os.path.splitext(os.path.basename(paper_db))[0]
    return os.path.join(default_cache_dir(), f"search_index-{name}")


def build_paper_source(
    paper_db: str | None = None,
    id2paper: str | None = None,
    index: str | None = None,
    online: bool | None = None,
    http=None,
    service=None,
    title_index: str | None = None,
    released_behaviour: bool = False,
    released_serper: bool = False,
    released_cite_split: bool = False,
    released_title_match: bool = False,
    search_engine: str | None = None,
    released_titles: bool = False,
    title_llm=None,
) -> PaperSource:
    """The source the runner and the PPO script use.

    Args:
        paper_db, id2paper: the released local paper database (consulted first for lookups, as released).
        index: a persisted offline search index (``pasa index``). A missing or damaged folder raises
            ``pasa.tools.local_search.SearchIndexError`` with a one-line message.
        online: resolve papers and fetch full text online (arXiv API, ar5iv, arxiv.org/html). ``None``: online when
            the search engine is ``serper`` or ``arxiv``. ``False`` with no engine named: search the offline index.
            Offline with a paper DB but no index: the index is built once (or loaded) beside the zip.
        http: the ``HttpClient`` for online services (default: one built from ``service``).
        service: ``pasa.tools.http.ServiceArgs`` (service URLs, timeouts, retries); default from the environment.
        title_index: a ``pasa.tools.title_index.TitleIndex`` folder, asked for titles before the arXiv API.
        released_behaviour: set every tools-layer released flag below, and take full text from ar5iv only.
        released_serper, released_cite_split, released_titles, released_title_match: see ``OnlinePaperSource``.
        search_engine: ``serper``, ``arxiv`` or ``local``; None: ``choose_search_engine``.
        title_llm: a ``pasa.llm`` backend that rereads the cited titles the rules cannot read (one call per fetched
            page, ``pasa.tools.title_llm``); None: rules only.
    """
    if released_behaviour:
        released_serper = released_cite_split = released_titles = released_title_match = True
    if (paper_db is None) != (id2paper is None):
        raise ValueError("--paper_db and --id2paper go together (the zip and its id2paper.json)")
    engine = choose_search_engine(search_engine, online, offline=paper_db is not None or index is not None)
    online = engine in ONLINE_ENGINES or bool(online)

    lookups: list[PaperSource] = []
    if paper_db is not None:
        lookups.append(PaperDBSource(paper_db, id2paper))
    local_index = None
    if index is not None or (paper_db is not None and engine == "local"):
        from pasa.tools.local_search import LocalSearchIndex

        if paper_db is None:
            local_index = LocalSearchIndex.load(index)
        else:  # reuses a cached index that matches the DB, else builds it
            local_index = LocalSearchIndex.from_paper_db(paper_db, id2paper, index or default_index_dir(paper_db))
        lookups.append(local_index)
    if title_index is not None:
        from pasa.tools.title_index import TitleIndex

        lookups.append(TitleLookupSource(TitleIndex(title_index)))

    if online:
        from pasa.tools.http import HttpClient, ServiceArgs
        from pasa.tools.title_llm import LLMTitleExtractor

        service = service if service is not None else ServiceArgs()
        if http is None:
            http = HttpClient(service.http_config())
        remote = OnlinePaperSource(
            http,
            serper_url=service.serper_url,
            arxiv_url=service.arxiv_url,
            ar5iv_url=service.ar5iv_url,
            arxiv_html_url=None if released_behaviour else arxiv_html_address(service),
            search_engine=engine if engine in ONLINE_ENGINES else "serper",
            released_serper=released_serper,
            released_cite_split=released_cite_split,
            released_titles=released_titles,
            released_title_match=released_title_match,
            title_extractor=None if title_llm is None else LLMTitleExtractor(title_llm),
        )
        lookups.append(remote)
    if engine == "local":
        logger.info("paper source: offline index (%d papers); lookups %s", len(local_index), _names(lookups))
        return CompositePaperSource(local_index, lookups)
    name = "Google (Serper)" if engine == "serper" else "the arXiv API (not the paper's Google search)"
    logger.info("paper source: %s search; lookups %s", name, _names(lookups))
    return CompositePaperSource(remote, lookups)


def use_title_llm(source, llm) -> int:
    """Give every online source inside ``source`` an ``LLMTitleExtractor`` over ``llm`` (for a model loaded after the
    source was built, e.g. the crawler); returns how many took it (0: no online full text to read titles from;
    released sources never take it)."""
    from pasa.tools.title_llm import LLMTitleExtractor

    found = 0
    stack = [source]
    while stack:
        node = stack.pop()
        if isinstance(node, OnlinePaperSource):
            if not node.released_titles and node.title_extractor is None:
                node.title_extractor = LLMTitleExtractor(llm)
                found += 1
            continue
        stack.extend(getattr(node, "sources", ()))
        stack.extend(s for s in (getattr(node, "searcher", None), getattr(node, "lookups", None)) if s is not None)
    return found


ARXIV_HTML_URL_ENV = "PASA_ARXIV_HTML_URL"


def arxiv_html_address(service) -> str | None:
    """Where arXiv's own LaTeXML pages are asked when ar5iv has no page: the settings' ``arxiv_html_url``, else
    ``$PASA_ARXIV_HTML_URL``, else arxiv.org/html when ar5iv is the real one. An ar5iv mirror or test server with no
    arxiv.org/html address named gets no fallback, so a run pointed at local servers never reaches arxiv.org."""
    from pasa.tools import ar5iv

    url = getattr(service, "arxiv_html_url", None) or os.environ.get(ARXIV_HTML_URL_ENV, "").strip()
    if not url:
        return ar5iv.ARXIV_HTML_URL if service.ar5iv_url == ar5iv.AR5IV_URL else None
    return url if "{arxiv_id}" in url else url.rstrip("/") + "/{arxiv_id}"


def _names(sources: list) -> str:
    return " -> ".join(type(s).__name__ for s in sources)
