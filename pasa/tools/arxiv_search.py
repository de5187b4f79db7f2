"""Keyless online search: the arXiv API's own search engine (https://info.arxiv.org/help/api/user-manual.html).

Not the paper's setting: PaSa searched Google (Serper) restricted to arxiv.org, and its numbers were measured that
way. This engine needs no key. It ranks by arXiv's relevance over title, abstract and authors, so it finds fewer of
the papers a Google query would; use it when no Serper key is available.

``build_arxiv_query`` [pure] turns a crawler query into an arXiv query: every content word must appear (``all:w1
AND all:w2 ...``; arXiv's query parser reads bare words as separate clauses), and an end date becomes a
``submittedDate`` range (``[190001010000 TO YYYYMMDD2359]``). ``search_arxiv_ids`` runs it through the ``arxiv``
package over the shared ``HttpClient`` (``pasa.tools.arxiv_api.search_papers``), so requests wait arXiv's published
rate limit (one request every 3 s per host, ``HttpConfig.min_interval``), are cached, retried and validated as
Atom like every arXiv call. Results are arXiv ids without version, deduplicated, best first.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from pasa.paper import normalize_arxiv_id
from pasa.tools.arxiv_api import ARXIV_API_URL, search_papers
from pasa.tools.http import HttpClient

logger = logging.getLogger(__name__)

MAX_QUERY_WORDS = 8  # every word is required: a long crawler query would match nothing
DATE_FLOOR = "190001010000"
STOP_WORDS = frozenset(
    "a an and are as at be by for from how in into is it of on or that the their this to using via what which with"
    " without".split()
)
WORD_RE = re.compile(r"[^\W_]+")


def build_arxiv_query(query: str, end_date: str | None = None) -> str:
    """[pure] The arXiv API ``search_query`` for a search query: its content words, all required, and the end date
    (``YYYYMMDD``, inclusive) as a ``submittedDate`` range; ``""`` when the query has no content word. An end date
    that is not ``YYYYMMDD`` is ignored with a warning (as the Serper engine does).

    >>> build_arxiv_query("Graph neural networks for molecule generation", "20230105")
    '(all:graph AND all:neural AND all:networks AND all:molecule AND all:generation) AND submittedDate:[190001010000 TO 202301052359]'
    >>> build_arxiv_query("pre-training of the BERT")
    'all:pre AND all:training AND all:bert'
    """
    words = [w for w in WORD_RE.findall(query.lower()) if w not in STOP_WORDS]
    words = list(dict.fromkeys(words))[:MAX_QUERY_WORDS]
    if not words:
        return ""
    terms = " AND ".join(f"all:{w}" for w in words)
    if end_date:
        try:
            datetime.strptime(end_date, "%Y%m%d")
        except ValueError:
            logger.warning("end date %r is not YYYYMMDD; searching without it", end_date)
        else:
            return f"({terms}) AND submittedDate:[{DATE_FLOOR} TO {end_date}2359]"
    return terms


def search_arxiv_ids(
    http: HttpClient, query: str, k: int = 10, end_date: str | None = None, url: str = ARXIV_API_URL
) -> list[str]:
    """Up to ``k`` arXiv ids the arXiv API finds for ``query`` (relevance order, no versions, no duplicates).

    Raises:
        ServiceError: HTTP failure after retries, or an answer that is not Atom (``BadAnswerError``).
    """
    import arxiv

    search_query = build_arxiv_query(query, end_date)
    if not search_query:
        logger.info("search query %r has no content word; nothing to ask arXiv", query)
        return []
    search = arxiv.Search(query=search_query, max_results=k, sort_by=arxiv.SortCriterion.Relevance)
    ids: list[str] = []
    for paper in search_papers(http, search, url):
        arxiv_id = normalize_arxiv_id(paper.arxiv_id)
        if arxiv_id not in ids:
            ids.append(arxiv_id)
    return ids[:k]
