"""pasa.tools.serper: the released query format, id extraction from a saved payload, the key from the environment,
and the POST through the HTTP layer (loopback server, cached, key never cached)."""

import json

import pytest

from pasa.tools.http import MissingAPIKeyError, ServiceError
from pasa.tools.serper import MAX_QUERY_CHARS, build_serper_query, parse_serper_response, search_arxiv_ids
from tests.pasa.tools.test_http import Reply, Script, make_client, serve

SEARCH_IDS = ["1810.04805", "1802.05365", "1801.06146", "1706.03762", "1511.01432", "hep-th/9901001", "1905.05950"]


@pytest.mark.parametrize(
    "query, end_date, expected",
    [
        ("graph neural networks", None, "graph neural networks site:arxiv.org"),
        ("graph neural networks", "20230105", "graph neural networks before:2023-01-05 site:arxiv.org"),
        ("x", "2023-01-05", "x site:arxiv.org"),  # not YYYYMMDD: ignored (released behaviour)
        ("x", "", "x site:arxiv.org"),
    ],
)
def test_build_serper_query(query, end_date, expected):
    assert build_serper_query(query, end_date) == expected


def test_parse_saved_payload_keeps_order_drops_versions_and_duplicates(fixtures_dir):
    payload = json.loads((fixtures_dir / "serper_search.json").read_text())
    assert parse_serper_response(payload) == SEARCH_IDS


def test_parse_matches_released_id_set_on_new_style_ids(fixtures_dir):
    # released: list(set(ids)) over r'arxiv\.org/(?:abs|pdf|html)/(\d{4}\.\d+)' -- same ids, order aside;
    # old-style ids are the one addition
    payload = json.loads((fixtures_dir / "serper_search.json").read_text())
    new_style = [i for i in parse_serper_response(payload) if "/" not in i]
    assert set(new_style) == set(SEARCH_IDS) - {"hep-th/9901001"}


@pytest.mark.parametrize(
    "payload",
    [{"organic": []}, {"organic": [{"title": "no link"}]}, {"organic": [{"link": None}, "junk"]}],
)
def test_parse_tolerates_results_without_links(payload):
    assert parse_serper_response(payload) == []


def test_parse_no_results_payload(fixtures_dir):
    assert parse_serper_response(json.loads((fixtures_dir / "serper_no_results.json").read_text())) == []


@pytest.mark.parametrize("payload", [["not", "an", "object"], {}, {"message": "Unauthorized"}, {"organic": "x"}])
def test_parse_rejects_what_is_not_a_serper_answer(payload):
    with pytest.raises(ServiceError):
        parse_serper_response(payload)


def test_released_parse_keeps_new_style_ids_as_a_set(fixtures_dir):
    payload = json.loads((fixtures_dir / "serper_search.json").read_text())
    ids = parse_serper_response(payload, released=True)
    assert sorted(ids) == sorted(i for i in SEARCH_IDS if "/" not in i)


def test_long_query_is_capped_at_the_connector(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SERPER_API_KEY", "k")
    script = Script({"/search": Reply(200, {"organic": []})})
    with serve(script) as url, make_client(tmp_path) as http:
        search_arxiv_ids(http, "word " * 30_000, url=f"{url}/search")
    sent = json.loads(script.requests[0]["body"])["q"]
    assert len(sent) <= MAX_QUERY_CHARS + len(" site:arxiv.org") and sent.endswith("word site:arxiv.org")
    assert "cut to" in caplog.text


def test_missing_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with make_client(tmp_path) as http, pytest.raises(MissingAPIKeyError, match="SERPER_API_KEY"):
        search_arxiv_ids(http, "q", url="http://127.0.0.1:9/unused")


def test_search_posts_released_body_and_reads_key_at_call_time(tmp_path, monkeypatch, fixtures_dir):
    payload = json.loads((fixtures_dir / "serper_search.json").read_text())
    script = Script({"/search": Reply(200, payload)})
    with serve(script) as url, make_client(tmp_path) as http:
        monkeypatch.setenv("SERPER_API_KEY", "key-at-call-time")
        ids = search_arxiv_ids(
            http, "pre-training deep bidirectional transformers", 5, "20190601", url=f"{url}/search"
        )
        again = search_arxiv_ids(
            http, "pre-training deep bidirectional transformers", 5, "20190601", url=f"{url}/search"
        )
    assert ids == again == SEARCH_IDS[:5]
    assert script.count() == 1  # the repeat came from the cache
    request = script.requests[0]
    assert request["method"] == "POST" and request["headers"]["X-API-KEY"] == "key-at-call-time"
    assert json.loads(request["body"]) == {
        "q": "pre-training deep bidirectional transformers before:2019-06-01 site:arxiv.org",
        "num": 5,
        "page": 1,
    }


def test_non_json_answer_is_a_service_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "k")
    script = Script({"/search": Reply(200, "<html>captcha</html>")})
    with serve(script) as url, make_client(tmp_path) as http, pytest.raises(ServiceError, match="not JSON"):
        search_arxiv_ids(http, "q", url=f"{url}/search")
