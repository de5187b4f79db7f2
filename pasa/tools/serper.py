"""Google search through Serper (https://serper.dev) -> arXiv ids (DESIGN §1.1 step 1).

``build_serper_query`` and ``parse_serper_response`` are pure; ``search_arxiv_ids`` does the POST through the shared
``HttpClient``. The key is read from ``SERPER_API_KEY`` when a search runs (never stored, logged or cached: the
HTTP layer keeps ``X-API-KEY`` out of cache keys and cached records).

Differences from the released ``utils.google_search_arxiv_id``: ids keep Google's order (the released code returned
``list(set(ids))``, an arbitrary order that changes between runs), old-style ids (``cs/0101001``) are recognised
too, and HTTP errors raise ``ServiceError`` (after the HTTP layer's retries) instead of a bare ``except``.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime
from typing import Any

from pasa.tools.http import HttpClient, MissingAPIKeyError, ServiceError

logger = logging.getLogger(__name__)

SERPER_URL = "https://google.serper.dev/search"
SERPER_KEY_ENV = "SERPER_API_KEY"
# Google reads at most 32 words; Serper rejects very long queries. A garbage crawler reply can hold a 96 kB "query":
# it is cut at a word boundary here, whatever the agent did before.
MAX_QUERY_CHARS = 512  # the agent's default max_query_chars too, so a query is cut (and warned about) once
# Released pattern (new-style ids; the version suffix is outside the group) plus old-style ids.
RELEASED_LINK_RE = re.compile(r"arxiv\.org/(?:abs|pdf|html)/(\d{4}\.\d+)")
ARXIV_LINK_RE = re.compile(r"arxiv\.org/(?:abs|pdf|html)/((?:\d{4}\.\d+)|(?:[a-z\-]+(?:\.[A-Z]{2})?/\d{7}))")


def cap_query(query: str, limit: int = MAX_QUERY_CHARS) -> str:
    """[pure] ``query`` unchanged when it fits, else whitespace folded and cut to ``limit`` characters at a word
    boundary.

    >>> cap_query("graph  neural networks", 30)
    'graph  neural networks'
    >>> cap_query("graph  neural\\nnetworks", 12)
    'graph neural'
    """
    if len(query) <= limit:
        return query
    folded = " ".join(query.split())
    head = folded[: limit + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else folded[:limit]
    return cut[:limit]


def build_serper_query(query: str, end_date: str | None = None) -> str:
    """[pure] The released Google query: ``"<q> site:arxiv.org"``, with ``before:YYYY-MM-DD`` for an end date.

    An end date that is not ``YYYYMMDD`` is ignored with a warning, as released.

    >>> build_serper_query("graph neural networks")
    'graph neural networks site:arxiv.org'
    >>> build_serper_query("graph neural networks", "20230105")
    'graph neural networks before:2023-01-05 site:arxiv.org'
    """
    if end_date:
        try:
            day = datetime.strptime(end_date, "%Y%m%d").strftime("%Y-%m-%d")
        except ValueError:
            logger.warning("end date %r is not YYYYMMDD; searching without it", end_date)
        else:
            return f"{query} before:{day} site:arxiv.org"
    return f"{query} site:arxiv.org"


def parse_serper_response(payload: dict[str, Any], released: bool = False) -> list[str]:
    """[pure] arXiv ids from the ``organic`` results' links, in result order, versions dropped, no duplicates.

    ``released=True``: the released extraction, new-style ids only and ``list(set(ids))`` (an order that changes
    between processes). A payload that is not a Serper answer (not an object, or neither ``organic`` nor
    ``searchParameters``, or ``organic`` not a list) raises ``ServiceError``.

    >>> parse_serper_response({"organic": [
    ...     {"link": "https://arxiv.org/abs/2307.00235v2"}, {"link": "https://example.com/x"},
    ...     {"link": "https://arxiv.org/pdf/1706.03762"}, {"link": "https://arxiv.org/html/2307.00235"}]})
    ['2307.00235', '1706.03762']
    """
    if not isinstance(payload, dict):
        raise ServiceError(f"Serper answered {type(payload).__name__}, expected a JSON object")
    if "organic" not in payload and "searchParameters" not in payload:
        raise ServiceError(f"Serper answer has no 'organic' results (keys {sorted(payload)[:5]})")
    organic = payload.get("organic") or []
    if not isinstance(organic, list):
        raise ServiceError(f"Serper 'organic' is {type(organic).__name__}, expected a list")
    link_re = RELEASED_LINK_RE if released else ARXIV_LINK_RE
    ids: list[str] = []
    seen: set[str] = set()
    for result in organic:
        link = result.get("link", "") if isinstance(result, dict) else ""
        match = link_re.search(link if isinstance(link, str) else "")
        if match and match.group(1) not in seen:
            seen.add(match.group(1))
            ids.append(match.group(1))
    return list(set(ids)) if released else ids


def serper_api_key() -> str:
    """The key from the environment, read at call time; a clear error naming the variable when missing."""
    key = os.environ.get(SERPER_KEY_ENV, "").strip()
    if not key:
        raise MissingAPIKeyError(
            f"Google search needs a Serper key: set the {SERPER_KEY_ENV} environment variable "
            "(https://serper.dev), or run offline with a local index"
        )
    return key


def search_arxiv_ids(
    http: HttpClient,
    query: str,
    k: int = 10,
    end_date: str | None = None,
    url: str = SERPER_URL,
    released: bool = False,
) -> list[str]:
    """Up to ``k`` arXiv ids Google finds for ``query`` (released: ``num=k``, ``page=1``).

    A query longer than ``MAX_QUERY_CHARS`` is cut (one warning). The answer is parsed inside the HTTP layer, so
    a 200 that is not a Serper answer is evicted from the cache and retried, never replayed.

    Raises:
        MissingAPIKeyError: ``SERPER_API_KEY`` is not set.
        ServiceError: HTTP failure after retries, or a payload that never parsed (``BadAnswerError``).
    """
    capped = cap_query(query)
    if capped is not query:
        logger.warning("Google search query of %d characters cut to %d: %r", len(query), len(capped), capped[:80])
    headers = {"X-API-KEY": serper_api_key(), "Content-Type": "application/json"}
    body = {"q": build_serper_query(capped, end_date), "num": k, "page": 1}

    def parse(resp) -> list[str]:
        try:
            payload = resp.json()
        except ValueError as err:
            raise ServiceError(f"Serper answer is not JSON: {err}", url=url) from err
        return parse_serper_response(payload, released=released)

    return http.post_parsed(url, parse, json=body, headers=headers)[:k]
