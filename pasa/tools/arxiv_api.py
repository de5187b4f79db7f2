"""arXiv: paper by id and id by title, through the Atom API (https://info.arxiv.org/help/api/) and ``HttpClient``.

``parse_atom_feed`` and ``match_title`` are pure. ``fetch_paper_by_id`` asks ``id_list=<id>``;
``fetch_paper_by_title`` asks a title phrase search (``ti:"..."``) and keeps the entry whose title matches exactly
after ``title_key`` (letters only, lower case), so a near miss is never taken for the cited paper.

Differences from the released ``utils.py``: the released title lookup scraped the arxiv.org/search HTML page and,
through a reused loop variable (``title`` overwritten by each result's title), compared every result with the
*last* result's title, so it returned the last hit whatever its title; here the match is against the requested
title. Old-style ids (``hep-th/9901001``) work (the released ``entry_id.split('v')[0]`` broke ids containing a
``v``, e.g. ``solv-int/...``), and the arXiv client goes through the shared cache, retries and the 3 s rate limit.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET

from pasa.paper import Paper, normalize_arxiv_id, title_key
from pasa.tools.http import HttpClient, PaperNotFoundError, ServiceError

logger = logging.getLogger(__name__)

ARXIV_API_URL = "https://export.arxiv.org/api/query"
SOURCE_NAME = "SearchFrom:arxiv"  # released source tag
TITLE_SEARCH_RESULTS = 20  # candidates fetched for an exact-title match
ATOM_NS = {"atom": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}
ABS_URL_RE = re.compile(r"arxiv\.org/abs/(?P<id>.+?)/?$")


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_atom_feed(xml_text: str | bytes) -> list[Paper]:
    """[pure] The entries of an arXiv Atom answer as papers (``published`` as ``YYYYMMDD``, ids without version).

    Raises ``ServiceError`` for a body that is not Atom XML, or for the API's error entry (e.g. a malformed id).

    >>> feed = ('<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/1706.03762v7</id>'
    ...         '<published>2017-06-12T17:57:34Z</published><title>Attention Is All\\n  You Need</title>'
    ...         '<summary> The dominant sequence transduction models ...</summary></entry></feed>')
    >>> parse_atom_feed(feed)[0]
    Paper(arxiv_id='1706.03762', title='Attention Is All You Need', abstract='The dominant sequence transduction models ...', sections=None, source='SearchFrom:arxiv', published='20170612')
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


def fetch_paper_by_id(http: HttpClient, arxiv_id: str, url: str = ARXIV_API_URL) -> Paper:
    """Title, abstract and publication date of one arXiv paper (any version given; the id comes back bare).

    Raises:
        PaperNotFoundError: arXiv has no such id.
        ServiceError: HTTP failure after retries, or an unreadable answer.
    """
    wanted = normalize_arxiv_id(arxiv_id)
    resp = http.get(url, params={"id_list": wanted, "max_results": 1})
    for paper in parse_atom_feed(resp.content):
        if paper.arxiv_id == wanted:
            return paper
    raise PaperNotFoundError(f"arXiv has no paper {wanted!r}")


def fetch_paper_by_title(http: HttpClient, title: str, url: str = ARXIV_API_URL) -> Paper:
    """The arXiv paper whose title matches ``title`` exactly (letters only, case-insensitive).

    Raises:
        PaperNotFoundError: no exact match among the search results.
        ServiceError: HTTP failure after retries, or an unreadable answer.
    """
    if not title_key(title):
        raise PaperNotFoundError(f"title {title!r} has no letters to search for")
    params = {"search_query": title_search_query(title), "start": 0, "max_results": TITLE_SEARCH_RESULTS}
    resp = http.get(url, params=params)
    paper = match_title(parse_atom_feed(resp.content), title)
    if paper is None:
        raise PaperNotFoundError(f"no arXiv paper titled {title!r}")
    return paper


def fetch_arxiv_id_by_title(http: HttpClient, title: str, url: str = ARXIV_API_URL) -> str:
    """The arXiv id of the paper titled ``title`` (released ``search_arxiv_id_by_title``, exact match)."""
    return fetch_paper_by_title(http, title, url).arxiv_id
