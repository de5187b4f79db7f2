"""pasa.tools.arxiv_search: the query it builds (content words, end date as a submittedDate range), and a search over
a loopback arXiv API answering a saved Atom feed (ids deduplicated to base ids, rate limit, cache, bad answers)."""

from __future__ import annotations

import doctest
from urllib.parse import parse_qs

import pytest

from pasa.tools import arxiv_search
from pasa.tools.arxiv_search import build_arxiv_query, search_arxiv_ids
from pasa.tools.http import BadAnswerError
from tests.pasa.tools.test_http import Reply, Script, make_client, serve


def test_doctests():
    assert doctest.testmod(arxiv_search).failed == 0


@pytest.mark.parametrize(
    "query, end_date, expected",
    [
        ("graph neural network", None, "all:graph AND all:neural AND all:network"),
        ("Graph neural network", "20230105", "(all:graph AND all:neural AND all:network) AND "
                                             "submittedDate:[190001010000 TO 202301052359]"),
        ("the of and", "20230105", ""),
        ("graph graph GRAPH", None, "all:graph"),
        ("a b c d e f g h i j k", None, " AND ".join(f"all:{w}" for w in "bcdefghi")),  # 8 words at most
        ("query:with (syntax) \"quotes\"", None, "all:query AND all:syntax AND all:quotes"),  # no query syntax
        ("graph network", "2023-01-05", "all:graph AND all:network"),  # not YYYYMMDD: ignored
    ],
)  # fmt: skip
def test_build_arxiv_query(query, end_date, expected):
    assert build_arxiv_query(query, end_date) == expected


def _api(fixtures_dir, seen):
    def answer(request):
        seen.append(parse_qs(request["query"]))
        return Reply(200, (fixtures_dir / "arxiv_search_gnn.xml").read_bytes())

    return answer


def test_search_over_loopback_api(tmp_path, fixtures_dir):
    seen: list[dict] = []
    script = Script({"/api/query": _api(fixtures_dir, seen)})
    with serve(script) as url, make_client(tmp_path) as http:
        ids = search_arxiv_ids(http, "graph neural networks for molecules", 3, "20230105", url=f"{url}/api/query")
        again = search_arxiv_ids(http, "graph neural networks for molecules", 3, "20230105", url=f"{url}/api/query")
    assert ids == again == ["1704.01212", "1802.04364"]  # versions dropped, the repeated paper once
    assert script.count() == 1  # the second search is served by the cache
    (query,) = seen
    assert query["search_query"] == [
        "(all:graph AND all:neural AND all:networks AND all:molecules) AND submittedDate:[190001010000 TO 202301052359]"
    ]
    assert query["max_results"] == ["3"] and query["sortBy"] == ["relevance"]


def test_search_waits_arxivs_rate_limit(tmp_path, fixtures_dir):
    waits: list[float] = []
    script = Script({"/api/query": _api(fixtures_dir, [])})
    with serve(script) as url, make_client(tmp_path, min_interval={"127.0.0.1": 3.0}, sleep=waits.append) as http:
        search_arxiv_ids(http, "graph neural", 3, url=f"{url}/api/query")
        search_arxiv_ids(http, "molecule graph", 3, url=f"{url}/api/query")
    assert script.count() == 2 and len(waits) == 1 and 2.0 < waits[0] <= 3.0


def test_query_without_content_words_asks_nothing(tmp_path):
    with make_client(tmp_path) as http:
        assert search_arxiv_ids(http, "the of", 3, url="http://127.0.0.1:9/api/query") == []


def test_garbled_answer_is_a_bad_answer(tmp_path):
    script = Script({"/api/query": Reply(200, "<html>busy</html>")})
    with serve(script) as url, make_client(tmp_path, max_retries=0) as http, pytest.raises(BadAnswerError):
        search_arxiv_ids(http, "graph neural", 3, url=f"{url}/api/query")
