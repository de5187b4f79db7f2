"""pasa.tools.sources: the online source over loopback Serper/arXiv/ar5iv servers (each failure one warning and a
a raise, not-found quiet), the released lookup order (local DB first), the factory's choices, and a whole agent run
against services that partly fail."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.paper import CitedSections, Paper
from pasa.selector import Selector
from pasa.tools.http import BadAnswerError, HTTPStatusError, MissingAPIKeyError, ServiceError
from pasa.tools.paper_db import build_paper_db
from pasa.tools.sources import (
    NO_SOURCE_HELP,
    ChainedPaperSource,
    CompositePaperSource,
    OnlinePaperSource,
    PaperDBSource,
    SourceFailedError,
    build_paper_source,
    default_index_dir,
)
from tests.fakes import ScriptedLLM
from tests.pasa.tools.test_http import Reply, Script, make_client, serve

BERT = "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
ELMO = "Deep contextualized word representations"
GPT = "Improving language understanding with unsupervised learning"


@pytest.fixture
def fixture_bytes(fixtures_dir):
    return lambda name: (fixtures_dir / name).read_bytes()


def services(fixture_bytes, arxiv_down: bool = False, serper_status: int = 200) -> Script:
    """Serper answers the saved payload; arXiv knows 1810.04805 by id and ELMo by title (or is down); ar5iv has
    the BERT page."""

    def arxiv(request):
        if arxiv_down:
            return Reply(503, "arXiv is down")
        query = parse_qs(request["query"])
        if query.get("id_list") == ["1810.04805"]:
            return Reply(200, fixture_bytes("arxiv_id_1810.04805.xml"))
        if "contextualized" in query.get("search_query", [""])[0].lower():
            return Reply(200, fixture_bytes("arxiv_title_search.xml"))
        return Reply(200, fixture_bytes("arxiv_empty.xml"))

    return Script(
        {
            "/search": Reply(serper_status, fixture_bytes("serper_search.json")),
            "/api/query": arxiv,
            "/html/1810.04805": Reply(200, fixture_bytes("ar5iv_1810.04805.html")),
        }
    )


def online(url: str, http) -> OnlinePaperSource:
    return OnlinePaperSource(
        http, serper_url=f"{url}/search", arxiv_url=f"{url}/api/query", ar5iv_url=f"{url}/html/{{arxiv_id}}"
    )


@pytest.fixture(autouse=True)
def serper_key(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    monkeypatch.delenv("PASA_NO_CACHE", raising=False)


def test_online_source_answers_all_four_questions(tmp_path, fixture_bytes, caplog):
    script = services(fixture_bytes)
    with serve(script) as url, make_client(tmp_path) as http:
        source = online(url, http)
        with caplog.at_level(logging.WARNING):
            assert source.search("bert", 3, "20190601") == ["1810.04805", "1802.05365", "1801.06146"]
            assert source.get_by_id("1810.04805v2").title == BERT
            assert source.get_by_title("deep contextualized word-representations").arxiv_id == "1802.05365"
            sections = source.get_sections("1810.04805")
    assert "1 Introduction" in sections and ELMO in sections["1 Introduction"]
    assert isinstance(sections, CitedSections) and sections.source == "ar5iv"
    assert caplog.records == []


def test_not_found_is_quiet_none(tmp_path, fixture_bytes, caplog):
    with serve(services(fixture_bytes)) as url, make_client(tmp_path) as http:
        source = online(url, http)
        with caplog.at_level(logging.WARNING):
            assert source.get_by_id("2401.99999") is None
            assert source.get_by_title("A title nobody wrote") is None
            assert source.get_sections("2401.99999") is None  # ar5iv 404
    assert caplog.records == []


def test_failed_calls_raise_typed_errors_without_the_key(tmp_path, fixture_bytes, caplog, monkeypatch):
    """A failed call raises (the agent logs and counts it); nothing is logged at WARNING here."""
    script = services(fixture_bytes, arxiv_down=True, serper_status=500)
    with serve(script) as url, make_client(tmp_path, max_retries=1) as http:
        source = online(url, http)
        with caplog.at_level(logging.WARNING, logger="pasa.tools"):
            with pytest.raises(HTTPStatusError, match="500") as search_err:
                source.search("bert", 5)
            with pytest.raises(HTTPStatusError, match="503"):
                source.get_by_id("1810.04805")
            with pytest.raises(HTTPStatusError, match="503"):
                source.get_by_title(ELMO)
            monkeypatch.delenv("SERPER_API_KEY")
            with pytest.raises(MissingAPIKeyError, match="SERPER_API_KEY"):
                source.search("bert", 5)
    assert "test-key" not in str(search_err.value) and "test-key" not in caplog.text
    assert caplog.records == []
    assert script.count("/search") == 2 and script.count("/api/query") == 4  # one retry each, then the raise


class _Failing:
    def __init__(self, err):
        self.err = err

    def get_by_id(self, arxiv_id):
        raise self.err


class _Answers:
    def __init__(self, paper):
        self.paper = paper

    def get_by_id(self, arxiv_id):
        return self.paper


def test_chain_falls_through_failures_and_raises_only_without_an_answer():
    paper = Paper("1802.05365", ELMO)
    down = ServiceError("arXiv down")
    assert ChainedPaperSource(_Failing(down), _Answers(paper)).get_by_id("x") is paper  # next source answered
    assert ChainedPaperSource(_Answers(None), _Answers(None)).get_by_id("x") is None  # not found anywhere
    with pytest.raises(ServiceError, match="arXiv down"):  # DB: not found, arXiv: failed -> unknown, raise
        ChainedPaperSource(_Answers(None), _Failing(down)).get_by_id("x")
    with pytest.raises(SourceFailedError, match="every source failed") as info:
        ChainedPaperSource(_Failing(down), _Failing(TimeoutError("slow"))).get_by_id("x")
    assert len(info.value.errors) == 2


def test_local_db_is_consulted_first(tmp_path, fixture_bytes):
    elmo = Paper("1802.05365", ELMO, "ELMo abstract.", {"1 Intro": ["Some cited title"]}, published="20180215")
    zip_path, id2paper = tmp_path / "db" / "papers.zip", tmp_path / "db" / "id2paper.json"
    build_paper_db([elmo], str(zip_path), str(id2paper))
    script = services(fixture_bytes)
    with serve(script) as url, make_client(tmp_path) as http:
        remote = online(url, http)
        source = CompositePaperSource(remote, [PaperDBSource(str(zip_path), str(id2paper)), remote])
        assert source.get_by_id("1802.05365").source == "SearchFrom:local_paper_db"
        assert source.get_by_title(ELMO).abstract == "ELMo abstract."
        assert source.get_sections("1802.05365") == {"1 Intro": ["Some cited title"]}
        assert script.count() == 0  # answered locally: no request at all
        assert source.get_by_id("1810.04805").source == "SearchFrom:arxiv"  # not local: arXiv
        assert script.count("/api/query") == 1


def test_agent_run_survives_failing_services(tmp_path, fixture_bytes, caplog):
    """Search through Serper; 1810.04805 resolves on arXiv, the other ids fail (503 -> warnings, skipped); its
    ar5iv sections are expanded; of the cited titles, GPT is in the local DB, ELMo was already touched by the
    search, the others are not on arXiv."""
    elmo = Paper("1802.05365", ELMO, "ELMo abstract.", published="20180215")
    gpt = Paper("1806.00001", GPT, "GPT abstract.", published="20180611")
    zip_path, id2paper = tmp_path / "db" / "papers.zip", tmp_path / "db" / "id2paper.json"
    build_paper_db([elmo, gpt], str(zip_path), str(id2paper))

    def arxiv(request):
        query = parse_qs(request["query"])
        if query.get("id_list") == ["1810.04805"]:
            return Reply(200, fixture_bytes("arxiv_id_1810.04805.xml"))
        if "id_list" in query:
            return Reply(503, "busy")
        return Reply(200, fixture_bytes("arxiv_empty.xml"))

    script = Script(
        {
            "/search": Reply(200, fixture_bytes("serper_search.json")),
            "/api/query": arxiv,
            "/html/1810.04805": Reply(200, fixture_bytes("ar5iv_1810.04805.html")),
        }
    )
    crawler = ScriptedLLM(
        replies={
            "bert pre-training": "[Search] bidirectional transformers\n[StopSearch]",
            BERT: "[Expand] 1 Introduction\n[StopExpand]",
        }
    )
    selector = ScriptedLLM(scores={BERT: 0.9, ELMO: 0.8, GPT: 0.7})
    with serve(script) as url, make_client(tmp_path, max_retries=0) as http:
        remote = online(url, http)
        source = CompositePaperSource(remote, [PaperDBSource(str(zip_path), str(id2paper)), remote])
        agent = PaperAgent(Crawler(crawler), Selector(selector), source, AgentConfig(expand_layers=1, threads_num=4))
        with caplog.at_level(logging.WARNING):
            root = agent.run("bert pre-training")
    (query,) = root.child
    found = {n.arxiv_id: n for n in root.child[query]}
    assert set(found) == {"1810.04805", "1802.05365"}  # the ids arXiv failed on were skipped
    assert found["1802.05365"].source.endswith("SearchFrom:local_paper_db")  # searched id resolved locally first
    bert = found["1810.04805"]
    assert bert.source.endswith("SearchFrom:arxiv")
    assert list(bert.child) == ["1 Introduction"]
    assert [(n.title, n.arxiv_id) for n in bert.child["1 Introduction"]] == [(GPT, "1806.00001")]
    failed = [r for r in caplog.records if "get_by_id" in r.getMessage()]
    assert len(failed) == 5  # 1801.06146, 1706.03762, 1511.01432, hep-th/9901001, 1905.05950
    assert all(r.levelno == logging.WARNING and "503" in r.getMessage() for r in failed)
    assert root.extra["failures"]["lookup"] == 5  # counted by the agent: the tree is marked degraded


# -- factory -------------------------------------------------------------------------------------------------------
def test_factory_online_when_key_is_set(tmp_path):
    with make_client(tmp_path) as http:
        source = build_paper_source(http=http)
    assert isinstance(source, CompositePaperSource) and isinstance(source.searcher, OnlinePaperSource)
    assert source.searcher.http is http


def test_factory_online_requested_without_key(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY")
    with pytest.raises(ValueError, match="SERPER_API_KEY"):
        build_paper_source(online=True)


def test_factory_with_nothing_says_what_to_pass(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY")
    with pytest.raises(ValueError) as info:
        build_paper_source()
    assert str(info.value) == NO_SOURCE_HELP
    assert "--search_index" in NO_SOURCE_HELP and "--paper_db" in NO_SOURCE_HELP and "SERPER_API_KEY" in NO_SOURCE_HELP


def test_factory_paper_db_needs_id2paper():
    with pytest.raises(ValueError, match="go together"):
        build_paper_source(paper_db="x.zip")


def test_factory_offline_builds_then_reuses_the_index(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("SERPER_API_KEY")
    papers = [
        Paper("2401.00001", "Graph neural networks for molecules", "Message passing on molecular graphs."),
        Paper("2401.00002", "Sparse attention for long documents", "Efficient transformers.", published="20240102"),
    ]
    zip_path, id2paper = tmp_path / "db" / "papers.zip", tmp_path / "db" / "id2paper.json"
    build_paper_db(papers, str(zip_path), str(id2paper))
    with caplog.at_level(logging.INFO, logger="pasa.tools.sources"):
        source = build_paper_source(paper_db=str(zip_path), id2paper=str(id2paper))
    assert "offline index" in caplog.text  # which source was chosen is logged
    assert source.search("graph neural molecules", 5) == ["2401.00001"]
    assert source.get_by_title("SPARSE attention for long documents!").arxiv_id == "2401.00002"
    index_dir = default_index_dir(str(zip_path))
    assert index_dir == str(tmp_path / "db" / "search_index")
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "db" / "search_index").iterdir()}
    again = build_paper_source(paper_db=str(zip_path), id2paper=str(id2paper), online=False)
    assert again.search("sparse attention", 5) == ["2401.00002"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "db" / "search_index").iterdir()} == stamp
    # the persisted index alone is a complete offline source
    alone = build_paper_source(index=index_dir, online=False)
    assert alone.search("sparse attention", 5) == ["2401.00002"] and alone.get_by_id("2401.00001") is not None


def test_factory_service_settings_and_released_switch(tmp_path, fixture_bytes):
    from pasa.tools.http import ServiceArgs

    script = services(fixture_bytes)
    with serve(script) as url:
        service = ServiceArgs(
            serper_url=f"{url}/search", arxiv_url=f"{url}/api/query", ar5iv_url=f"{url}/html", arxiv_interval=0.0
        )
        with make_client(tmp_path) as http:
            source = build_paper_source(http=http, service=service)
            remote = source.searcher
            assert not (remote.released_serper or remote.released_cite_split or remote.released_title_match)
            assert source.search("bert", 3) == ["1810.04805", "1802.05365", "1801.06146"]  # Google's order
            assert source.get_sections("1810.04805")  # ar5iv base URL + "/{arxiv_id}"
            released = build_paper_source(http=http, service=service, released_behaviour=True).searcher
            assert released.released_serper and released.released_cite_split and released.released_title_match
            assert sorted(released.search("bert", 10)) == sorted(i for i in SEARCH_IDS_NEW_STYLE)
        # no http passed: one is built from the service settings
        built = build_paper_source(service=service)
        assert built.searcher.http.config.min_interval["127.0.0.1"] == 0.0


SEARCH_IDS_NEW_STYLE = ["1810.04805", "1802.05365", "1801.06146", "1706.03762", "1511.01432", "1905.05950"]


def test_factory_title_index_answers_before_the_arxiv_api(tmp_path, fixture_bytes):
    from pasa.tools.title_index import MetadataRecord, build_title_index

    build_title_index(
        [MetadataRecord("1802.05365", ELMO, "ELMo from the snapshot.", "20180215", "cs.CL")], str(tmp_path / "ti")
    )
    script = services(fixture_bytes)
    with serve(script) as url, make_client(tmp_path) as http:
        source = build_paper_source(http=http, title_index=str(tmp_path / "ti"))
        source.searcher.arxiv_url = f"{url}/api/query"
        assert source.get_by_title(ELMO.upper()).abstract == "ELMo from the snapshot."
        assert script.count() == 0  # answered by the title index
        assert source.get_by_id("1810.04805").title == BERT  # not in the index: arXiv
        assert script.count("/api/query") == 1


def test_garbled_answers_then_good_ones_through_the_source(tmp_path, fixture_bytes):
    """Each service first answers 200 with garbage: the call raises (BadAnswerError), nothing bad is cached, and
    the same calls after the fault is gone get the good answers."""
    script = Script(
        {
            "/search": Reply(200, "{not json"),
            "/api/query": Reply(200, "<html>rate limited</html>"),
            "/html/1810.04805": Reply(200, ""),
        }
    )
    with serve(script) as url:
        with make_client(tmp_path, max_retries=0) as http:
            source = online(url, http)
            for call, arg in (
                ("search", ("bert", 3)),
                ("get_by_id", ("1810.04805",)),
                ("get_sections", ("1810.04805",)),
            ):
                with pytest.raises(BadAnswerError):
                    getattr(source, call)(*arg)
        good = services(fixture_bytes)
        script.routes = good.routes
        with make_client(tmp_path, max_retries=0) as http:  # same cache file
            source = online(url, http)
            assert source.search("bert", 3) == ["1810.04805", "1802.05365", "1801.06146"]
            assert source.get_by_id("1810.04805").title == BERT
            assert "1 Introduction" in source.get_sections("1810.04805")


# -- full text: ar5iv, then arxiv.org/html ------------------------------------------------------------------------
def full_text_source(url: str, http) -> OnlinePaperSource:
    return OnlinePaperSource(
        http,
        arxiv_url=f"{url}/api/query",
        ar5iv_url=f"{url}/ar5iv/{{arxiv_id}}",
        arxiv_html_url=f"{url}/arxiv_html/{{arxiv_id}}",
    )


def test_recent_paper_sections_from_arxiv_html(tmp_path, fixture_bytes, fixtures_dir):
    """ar5iv has no page (redirect to the abstract, or 404): arXiv's own HTML answers, and the sections say so."""
    abs_page = (fixtures_dir / "ar5iv_not_latexml.html").read_text()
    script = Script(
        {
            "/ar5iv/2401.00001": Reply(302, "", {"Location": "/abs/2401.00001"}),
            "/abs/2401.00001": Reply(200, abs_page),
            "/ar5iv/2401.00002": Reply(404, "no such page"),
            "/arxiv_html/2401.00001": Reply(200, fixture_bytes("ar5iv_1810.04805.html")),
            "/arxiv_html/2401.00002": Reply(200, fixture_bytes("ar5iv_1810.04805.html")),
            "/ar5iv/1810.04805": Reply(200, fixture_bytes("ar5iv_1810.04805.html")),
        }
    )
    with serve(script) as url, make_client(tmp_path) as http:
        source = full_text_source(url, http)
        recent, recent_404, old = (source.get_sections(i) for i in ("2401.00001", "2401.00002", "1810.04805"))
        assert source.get_sections("2401.00003") is None  # neither page has it: not found
    assert recent.source == recent_404.source == "arxiv_html" and old.source == "ar5iv"
    assert recent == old and ELMO in recent["1 Introduction"]
    assert script.count("/arxiv_html/1810.04805") == 0  # ar5iv had it


def test_full_text_failure_is_raised_only_when_no_page_answers(tmp_path, fixture_bytes):
    script = Script(
        {
            "/ar5iv/2401.00001": Reply(503, "busy"),
            "/arxiv_html/2401.00001": Reply(200, fixture_bytes("ar5iv_1810.04805.html")),
            "/ar5iv/2401.00002": Reply(503, "busy"),
        }
    )
    with serve(script) as url, make_client(tmp_path, max_retries=0) as http:
        source = full_text_source(url, http)
        assert source.get_sections("2401.00001").source == "arxiv_html"  # ar5iv failed, arXiv answered
        with pytest.raises(HTTPStatusError, match="503"):
            source.get_sections("2401.00002")  # ar5iv failed, arXiv has no page: unknown, not "not found"


def test_page_whose_bibliography_cannot_be_read_is_a_failure(tmp_path, fixtures_dir):
    from pasa.tools.ar5iv import UnparsedBibliographyError

    html = (fixtures_dir / "ar5iv_1810.04805.html").read_text(encoding="utf-8")
    start, end = html.index('<section class="ltx_bibliography"'), html.index('<section class="ltx_appendix"')
    script = Script(
        {
            "/ar5iv/2401.00001": Reply(200, html[:start] + html[end:]),
            "/ar5iv/2101.00001": Reply(200, (fixtures_dir / "ar5iv_no_sections.html").read_text()),
        }
    )
    with serve(script) as url, make_client(tmp_path) as http:
        source = online(url.replace("/html", ""), http)
        source.ar5iv_url = f"{url}/ar5iv/{{arxiv_id}}"
        with pytest.raises(UnparsedBibliographyError, match="cites 1[0-9] references"):
            source.get_sections("2401.00001")
        assert source.get_sections("2101.00001") is None  # nothing cited at all: no sections, not a failure


def test_released_sections_have_no_ids_and_no_arxiv_html(tmp_path, fixture_bytes):
    from pasa.tools.http import ServiceArgs

    script = Script({"/ar5iv/1810.04805": Reply(200, fixture_bytes("ar5iv_1810.04805.html"))})
    with serve(script) as url, make_client(tmp_path) as http:
        service = ServiceArgs(arxiv_url=f"{url}/api/query", ar5iv_url=f"{url}/ar5iv", arxiv_interval=0.0)
        default = build_paper_source(http=http, service=service, search_engine="arxiv")
        released = build_paper_source(http=http, service=service, search_engine="arxiv", released_behaviour=True)
        assert default.searcher.arxiv_html_url is None  # an ar5iv test server: never arxiv.org
        assert released.searcher.arxiv_html_url is None and released.searcher.released_titles
        sections = released.get_sections("1810.04805")
    assert sections.section_ids is None and sections["1 Introduction"] == [
        "Semi-supervised sequence learning.",
        GPT + ".",
    ]


def test_arxiv_html_address(monkeypatch):
    from pasa.tools.ar5iv import AR5IV_URL, ARXIV_HTML_URL
    from pasa.tools.sources import arxiv_html_address

    class Service:
        ar5iv_url = AR5IV_URL

    monkeypatch.delenv("PASA_ARXIV_HTML_URL", raising=False)
    assert arxiv_html_address(Service()) == ARXIV_HTML_URL
    Service.ar5iv_url = "http://mirror.example/html/{arxiv_id}"
    assert arxiv_html_address(Service()) is None
    monkeypatch.setenv("PASA_ARXIV_HTML_URL", "http://mirror.example/arxiv_html")
    assert arxiv_html_address(Service()) == "http://mirror.example/arxiv_html/{arxiv_id}"


# -- search engines --------------------------------------------------------------------------------------------------
def test_factory_search_engine_choice(tmp_path, monkeypatch):
    from pasa.tools.sources import choose_search_engine

    assert choose_search_engine(None, None, offline=True) == "serper"  # the key is set (autouse fixture)
    assert choose_search_engine(None, False, offline=True) == "local"
    assert choose_search_engine("arxiv", None, offline=False) == "arxiv"
    with pytest.raises(ValueError, match="one of serper, arxiv, local, got 'google'"):
        choose_search_engine("google", None, offline=False)
    with pytest.raises(ValueError, match="searches online; drop --online false"):
        choose_search_engine("arxiv", False, offline=True)
    with pytest.raises(ValueError, match="--search_engine local needs an offline index"):
        choose_search_engine("local", None, offline=False)
    monkeypatch.delenv("SERPER_API_KEY")
    assert choose_search_engine(None, None, offline=True) == "local"
    with pytest.raises(ValueError, match="serper needs the SERPER_API_KEY"):
        choose_search_engine("serper", None, offline=True)
    with pytest.raises(ValueError) as info:
        choose_search_engine(None, None, offline=False)
    assert "serper|arxiv|local" in str(info.value)


def test_factory_arxiv_engine_searches_without_a_key(tmp_path, fixtures_dir, monkeypatch):
    from pasa.tools.http import ServiceArgs

    monkeypatch.delenv("SERPER_API_KEY")
    script = Script({"/api/query": Reply(200, (fixtures_dir / "arxiv_search_gnn.xml").read_bytes())})
    with serve(script) as url, make_client(tmp_path) as http:
        service = ServiceArgs(arxiv_url=f"{url}/api/query", ar5iv_url=f"{url}/ar5iv", arxiv_interval=0.0)
        source = build_paper_source(http=http, service=service, search_engine="arxiv")
        assert source.search("graph neural networks for molecules", 3, "20230105") == ["1704.01212", "1802.04364"]
    assert "submittedDate" in script.requests[0]["query"]


def test_cited_string_that_writes_an_id_is_looked_up_by_id(tmp_path, fixture_bytes):
    cited = "J. Devlin, M.-W. Chang, K. Lee and K. Toutanova, arXiv:1810.04805 (2018)."
    script = services(fixture_bytes)
    with serve(script) as url, make_client(tmp_path) as http:
        assert online(url, http).get_by_title(cited).title == BERT
        assert script.requests[-1]["query"].startswith("search_query=&id_list=1810.04805")
        released = online(url, http)
        released.released_titles = True
        assert released.get_by_title(cited) is None  # released: a title search, no exact match
