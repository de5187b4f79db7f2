"""arXiv: paper by id and id by title, through the Atom API (https://info.arxiv.org/help/api/) and ``HttpClient``.

``parse_atom_feed`` and ``match_title`` are pure. ``fetch_paper_by_id`` asks ``id_list=<id>``;
``fetch_paper_by_title`` asks a title phrase search (``ti:"..."``) and keeps the entry whose title matches exactly
after ``title_key`` (letters only, lower case), so a near miss is never taken for the cited paper.

Differences from the released ``utils.py``: the released title lookup scraped the arxiv.org/search HTML page and,
through a reused loop variable (``title`` overwritten by each result's title), compared every result with the
*last* result's title, so it returned the last hit whatever its title; here the match is against the requested
title. Old-style ids (``hep-th/9901001``) work (the released ``entry_id.split('v')[0]`` broke ids containing a
``v``, e.g. ``solv-int/...``), and the arXiv client goes through the shared cache, retries and the 3 s rate limit.

Requests are built and answers turned into results by the ``arxiv`` package (the ecosystem's client, which the
released code used for id lookups); its HTTP goes through our ``HttpClient`` (``search_papers``), which validates
every answer as Atom before it may stay in the cache.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET

from pasa.paper import ARXIV_ID_RE, Paper, normalize_arxiv_id, title_key
from pasa.tools.http import HttpClient, PaperNotFoundError, ServiceError

logger = logging.getLogger(__name__)

ARXIV_API_URL = "https://export.arxiv.org/api/query"
SOURCE_NAME = "SearchFrom:arxiv"  # released source tag
TITLE_SEARCH_RESULTS = 20  # candidates fetched for an exact-title match
ATOM_NS = {"atom": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}
ABS_URL_RE = re.compile(r"arxiv\.org/abs/(?P<id>.+?)/?$")


def parse_arxiv_ids(text: str) -> list[str]:
    """[pure] The arXiv ids of a comma-separated list (``--seed_papers``), without versions, first occurrence kept.
    Raises ``ValueError`` naming the first entry that is not an arXiv id.

    >>> parse_arxiv_ids("2301.00001v2, hep-th/9901001,arXiv:1706.03762, 2301.00001")
    ['2301.00001', 'hep-th/9901001', '1706.03762']
    >>> parse_arxiv_ids("2301.00001,BERT")
    Traceback (most recent call last):
    ...
    ValueError: 'BERT' is not an arXiv id (expected e.g. 2301.00001 or hep-th/9901001)
    """
    ids: list[str] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        arxiv_id = normalize_arxiv_id(entry)
        if not ARXIV_ID_RE.match(arxiv_id):
            raise ValueError(f"{entry!r} is not an arXiv id (expected e.g. 2301.00001 or hep-th/9901001)")
        if arxiv_id not in ids:
            ids.append(arxiv_id)
    return ids


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_atom_feed(xml_text: str | bytes) -> list[Paper]:
    """[pure] The entries of an arXiv Atom answer as papers (``published`` as ``YYYYMMDD``, ids without version).

    Raises ``ServiceError`` for a body that is not Atom XML, or for the API's error entry (e.g. a malformed id).

    >>> feed = ('<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/1706.03762v7</id>'
    ...         '<published>2017-06-12T17:57:34Z</published><title>Attention Is All\\n  You Need</title>'
    ...         '<summary> The dominant sequence transduction models ...</summary></entry></feed>')
    >>> paper = parse_atom_feed(feed)[0]
    >>> paper.arxiv_id, paper.title, paper.published, paper.source
    ('1706.03762', 'Attention Is All You Need', '20170612', 'SearchFrom:arxiv')
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise ServiceError(f"arXiv answer is not XML: {err}") from err
    if root.tag != f"{{{ATOM_NS['atom']}}}feed":
        raise ServiceError(f"arXiv answer is not an Atom feed (root {root.tag!r})")
    papers = []
    for entry in root.findall("atom:entry", ATOM_NS):
        entry_url = _clean(entry.findtext("atom:id", "", ATOM_NS))
        title = _clean(entry.findtext("atom:title", "", ATOM_NS))
        summary = _clean(entry.findtext("atom:summary", "", ATOM_NS))
        if "/api/errors" in entry_url:  # the API reports a bad query as a single entry titled "Error"
            raise ServiceError(f"arXiv API error: {summary or title}")
        match = ABS_URL_RE.search(entry_url)
        if not match or not title:
            logger.debug("skipping Atom entry without id or title: %r", entry_url)
            continue
        published = _clean(entry.findtext("atom:published", "", ATOM_NS))
        papers.append(
            Paper(
                arxiv_id=normalize_arxiv_id(match.group("id")),
                title=title,
                abstract=summary,
                sections=None,
                source=SOURCE_NAME,
                published=published[:10].replace("-", "") or None,
            )
        )
    return papers


def match_title(papers: list[Paper], title: str) -> Paper | None:
    """[pure] The first paper whose title equals ``title`` letters-only, case-insensitively.

    >>> match_title([Paper("1", "Deep Residual Learning"), Paper("2", "Attention is all you need.")],
    ...             "Attention Is All You Need").arxiv_id
    '2'
    """
    key = title_key(title)
    if not key:
        return None
    return next((p for p in papers if title_key(p.title) == key), None)


def title_search_query(title: str) -> str:
    """[pure] An arXiv API title-phrase query; punctuation (which the query syntax would read) becomes spaces.

    >>> title_search_query('BERT: Pre-training of "Deep" Bidirectional Transformers')
    'ti:"BERT Pre training of Deep Bidirectional Transformers"'
    """
    words = re.sub(r"[^\w\s]", " ", title).split()
    return f'ti:"{" ".join(words)}"'


def check_atom_answer(resp) -> object:
    """The HTTP layer's validator for arXiv answers: the body must be an Atom feed (``ServiceError`` otherwise, so
    a garbled or empty 200 is evicted from the cache and retried). An API error entry (e.g. "incorrect id format")
    is arXiv's answer that no such paper exists: ``PaperNotFoundError``, cached like any answer."""
    try:
        parse_atom_feed(resp.content)
    except ServiceError as err:
        if str(err).startswith("arXiv API error"):
            raise PaperNotFoundError(str(err)) from err
        raise
    return resp


class _FirstPageOnly(Exception):
    """Internal: ``arxiv.Client`` asked for a second page; one page is all a lookup needs."""


class _ArxivSession:
    """What ``arxiv.Client`` needs of a ``requests.Session`` (``get(url, headers=)``), served by our ``HttpClient``
    so the ``arxiv`` package's requests get our cache, retries, rate limit, validation and redaction. Only one
    page is fetched: the package asks for the next one when arXiv returns fewer entries than its total (a known
    API quirk), which would cost 3 s and could fail on an empty page."""

    def __init__(self, http: HttpClient):
        self.http = http
        self.requests = 0

    def get(self, url: str, headers: dict | None = None, **kwargs):
        self.requests += 1
        if self.requests > 1:
            raise _FirstPageOnly
        return self.http.get_parsed(url, check_atom_answer, headers=headers)


def paper_from_result(result) -> Paper:
    """[pure] An ``arxiv.Result`` as a ``Paper`` (id without version, whitespace folded, ``published`` YYYYMMDD)."""
    return Paper(
        arxiv_id=normalize_arxiv_id(result.get_short_id()),
        title=_clean(result.title),
        abstract=_clean(result.summary),
        sections=None,
        source=SOURCE_NAME,
        published=result.published.strftime("%Y%m%d") if result.published else None,
    )


def search_papers(http: HttpClient, search, url: str = ARXIV_API_URL) -> list[Paper]:
    """Run an ``arxiv.Search`` with the ``arxiv`` package's client over our HTTP layer.

    ``arxiv.Client`` keeps its ``requests.Session`` in ``_session`` and its endpoint in ``query_url_format``; we
    replace both (the package has no public hook for a session), and turn off its own sleep and retries since the
    HTTP layer does both (3 s per arXiv host, retries with backoff, and never caching a bad answer).
    """
    import arxiv

    client = arxiv.Client(page_size=max(1, search.max_results or 1), delay_seconds=0.0, num_retries=0)
    client._session = _ArxivSession(http)
    client.query_url_format = f"{url}?{{}}"
    papers: list[Paper] = []
    try:
        for result in client.results(search):
            papers.append(paper_from_result(result))
    except _FirstPageOnly:
        pass
    return papers


def fetch_paper_by_id(http: HttpClient, arxiv_id: str, url: str = ARXIV_API_URL) -> Paper:
    """Title, abstract and publication date of one arXiv paper (any version given; the id comes back bare).

    Raises:
        PaperNotFoundError: arXiv has no such id.
        ServiceError: HTTP failure after retries, or an unreadable answer (``BadAnswerError``).
    """
    import arxiv

    wanted = normalize_arxiv_id(arxiv_id)
    for paper in search_papers(http, arxiv.Search(id_list=[wanted], max_results=1), url):
        if paper.arxiv_id == wanted:
            return paper
    raise PaperNotFoundError(f"arXiv has no paper {wanted!r}")


def match_title_released(papers: list[Paper]) -> Paper | None:
    """[pure] The released title lookup's pick: a reused loop variable made it compare every hit with the *last*
    hit's title (lower case, spaces and outer dots removed), so it returned the first hit titled like the last one.

    >>> match_title_released([Paper("1", "Wanted"), Paper("2", "Other"), Paper("3", "other.")]).arxiv_id
    '2'
    """
    if not papers:
        return None

    def key(title: str) -> str:
        return title.lower().strip(".").replace(" ", "").replace("\n", "")

    last = key(papers[-1].title)
    return next(p for p in papers if key(p.title) == last)


def fetch_paper_by_title(
    http: HttpClient, title: str, url: str = ARXIV_API_URL, released_title_match: bool = False
) -> Paper:
    """The arXiv paper whose title matches ``title`` exactly (letters only, case-insensitive).

    Args:
        released_title_match: pick as the released code did (``match_title_released``), not by the title.

    Raises:
        PaperNotFoundError: no exact match among the search results.
        ServiceError: HTTP failure after retries, or an unreadable answer.
    """
    import arxiv

    if not title_key(title):
        raise PaperNotFoundError(f"title {title!r} has no letters to search for")
    search = arxiv.Search(query=title_search_query(title), max_results=TITLE_SEARCH_RESULTS)
    papers = search_papers(http, search, url)
    paper = match_title_released(papers) if released_title_match else match_title(papers, title)
    if paper is None:
        raise PaperNotFoundError(f"no arXiv paper titled {title!r}")
    return paper


def fetch_arxiv_id_by_title(http: HttpClient, title: str, url: str = ARXIV_API_URL) -> str:
    """The arXiv id of the paper titled ``title`` (released ``search_arxiv_id_by_title``, exact match)."""
    return fetch_paper_by_title(http, title, url).arxiv_id
