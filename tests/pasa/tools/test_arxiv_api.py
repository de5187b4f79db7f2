"""pasa.tools.arxiv_api: Atom parsing on saved answers (new, versioned and old-style ids, API errors), exact
letters-only title matching, and the requests sent through the HTTP layer."""

import re
from urllib.parse import parse_qs

import pytest

from pasa.paper import Paper
from pasa.tools.arxiv_api import (
    fetch_arxiv_id_by_title,
    fetch_paper_by_id,
    fetch_paper_by_title,
    match_title,
    parse_atom_feed,
    title_search_query,
)
from pasa.tools.http import PaperNotFoundError, ServiceError
from tests.pasa.tools.test_http import Reply, Script, make_client, serve


def test_parse_entry_by_id(fixtures_dir):
    (paper,) = parse_atom_feed((fixtures_dir / "arxiv_id_1810.04805.xml").read_bytes())
    assert paper.arxiv_id == "1810.04805"  # version dropped
    assert paper.title == "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
    assert paper.abstract.startswith("We introduce a new language representation model called BERT, which stands")
    assert "\n" not in paper.abstract and "  " not in paper.abstract
    assert paper.published == "20181011" and paper.source == "SearchFrom:arxiv" and paper.sections is None


def test_parse_old_style_id(fixtures_dir):
    (paper,) = parse_atom_feed((fixtures_dir / "arxiv_id_old_style.xml").read_bytes())
    assert paper.arxiv_id == "hep-th/9901001" and paper.published == "19990104"


def test_parse_empty_feed(fixtures_dir):
    assert parse_atom_feed((fixtures_dir / "arxiv_empty.xml").read_bytes()) == []


def test_api_error_entry_raises(fixtures_dir):
    with pytest.raises(ServiceError, match="incorrect id format"):
        parse_atom_feed((fixtures_dir / "arxiv_error.xml").read_bytes())


@pytest.mark.parametrize("body", [b"<html>rate limited</html", b"<rss></rss>", b""])
def test_non_atom_answer_raises(body):
    with pytest.raises(ServiceError):
        parse_atom_feed(body)


@pytest.mark.parametrize(
    "wanted, expected",
    [
        ("Deep contextualized word representations", "1802.05365"),
        ("DEEP Contextualized Word-Representations.", "1802.05365"),  # letters only, case-insensitive
        ("Deep contextualized word representation", None),  # a near miss is not a match
        ("!!!", None),
    ],
)
def test_match_title_is_exact_letters_only(fixtures_dir, wanted, expected):
    papers = parse_atom_feed((fixtures_dir / "arxiv_title_search.xml").read_bytes())
    found = match_title(papers, wanted)
    assert (found.arxiv_id if found else None) == expected


def test_match_title_prefers_first_exact_hit():
    papers = [Paper("1", "Other"), Paper("2", "Same Title"), Paper("3", "same title")]
    assert match_title(papers, "same-title").arxiv_id == "2"


def test_title_search_query_strips_query_syntax():
    assert title_search_query('Glove: Global vectors (for) "word" representation') == (
        'ti:"Glove Global vectors for word representation"'
    )


def test_fetch_by_id_sends_bare_id_and_returns_paper(tmp_path, fixtures_dir):
    script = Script({"/api/query": Reply(200, (fixtures_dir / "arxiv_id_1810.04805.xml").read_bytes())})
    with serve(script) as url, make_client(tmp_path) as http:
        paper = fetch_paper_by_id(http, "arXiv:1810.04805v2", url=f"{url}/api/query")
    assert paper.arxiv_id == "1810.04805"
    query = parse_qs(script.requests[0]["query"])  # built by the arxiv package
    assert query["id_list"] == ["1810.04805"] and query["max_results"] == ["1"]


def test_fetch_by_id_old_style(tmp_path, fixtures_dir):
    script = Script({"/api/query": Reply(200, (fixtures_dir / "arxiv_id_old_style.xml").read_bytes())})
    with serve(script) as url, make_client(tmp_path) as http:
        assert fetch_paper_by_id(http, "hep-th/9901001v3", url=f"{url}/api/query").arxiv_id == "hep-th/9901001"
    assert parse_qs(script.requests[0]["query"])["id_list"] == ["hep-th/9901001"]


def test_fetch_by_id_not_found(tmp_path, fixtures_dir):
    script = Script({"/api/query": Reply(200, (fixtures_dir / "arxiv_empty.xml").read_bytes())})
    with serve(script) as url, make_client(tmp_path) as http, pytest.raises(PaperNotFoundError):
        fetch_paper_by_id(http, "2401.99999", url=f"{url}/api/query")


def test_fetch_by_title(tmp_path, fixtures_dir):
    script = Script({"/api/query": Reply(200, (fixtures_dir / "arxiv_title_search.xml").read_bytes())})
    with serve(script) as url, make_client(tmp_path) as http:
        paper = fetch_paper_by_title(http, "Deep Contextualized Word Representations.", url=f"{url}/api/query")
        arxiv_id = fetch_arxiv_id_by_title(http, "Deep Contextualized Word Representations.", url=f"{url}/api/query")
        with pytest.raises(PaperNotFoundError):
            fetch_paper_by_title(http, "Deep contextualized word", url=f"{url}/api/query")
    assert paper.arxiv_id == arxiv_id == "1802.05365" and paper.published == "20180215"
    query = parse_qs(script.requests[0]["query"])
    assert query["search_query"] == ['ti:"Deep Contextualized Word Representations"']
    assert script.count() == 2  # the second identical title search was a cache hit


def test_one_page_only_even_when_the_total_says_more(tmp_path, fixtures_dir):
    # arXiv sometimes returns fewer entries than its totalResults; the arxiv package would then ask for page 2
    feed = (fixtures_dir / "arxiv_title_search.xml").read_text()
    feed = re.sub(r"<opensearch:totalResults([^>]*)>\d+<", r"<opensearch:totalResults\1>500<", feed)
    script = Script({"/api/query": Reply(200, feed)})
    with serve(script) as url, make_client(tmp_path) as http:
        paper = fetch_paper_by_title(http, "Deep Contextualized Word Representations", url=f"{url}/api/query")
    assert paper.arxiv_id == "1802.05365" and script.count() == 1


def test_requests_go_through_our_http_layer(tmp_path, fixtures_dir):
    script = Script(
        {
            "/api/query": [
                Reply(503, "busy"),
                Reply(200, "<feed"),
                Reply(200, (fixtures_dir / "arxiv_id_1810.04805.xml").read_bytes()),
            ]
        }
    )
    with serve(script) as url, make_client(tmp_path, max_retries=2) as http:
        assert fetch_paper_by_id(http, "1810.04805", url=f"{url}/api/query").title.startswith("BERT")
        assert fetch_paper_by_id(http, "1810.04805", url=f"{url}/api/query").title.startswith("BERT")  # cached
        assert http.network_requests == 3
    assert script.count() == 3  # a 503 and a garbled 200 retried by our client, then one good answer kept
