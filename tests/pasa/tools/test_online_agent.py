"""The online path end to end over loopback services: keyless arXiv search, a seed paper whose full text only
arXiv's own HTML has, its citations followed by the arXiv id the reference writes (else by title), in the default
and the released mode."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.paper import Paper
from pasa.selector import Selector
from pasa.tools.http import ServiceArgs
from pasa.tools.sources import build_paper_source
from tests.fakes import ScriptedLLM
from tests.pasa.tools.test_ar5iv_quality import load_bench
from tests.pasa.tools.test_http import Reply, Script, make_client, serve

SEED = Paper("2401.00001", "A recent paper on sequence models", "It cites two papers.", published="20240102")
ATTENTION = Paper("1706.03762", "Attention Is All You Need", "The Transformer.", published="20170612")
ELMO = Paper("1802.05365", "Deep contextualized word representations", "ELMo.", published="20180215")
FOUND = Paper("2301.00002", "A searched paper", "Found by the arXiv search.", published="20230105")
PAPERS = {p.arxiv_id: p for p in (SEED, ATTENTION, ELMO, FOUND)}
REFERENCES = [
    # the first writes its arXiv id (followed by id), the second does not (followed by title)
    "A. Vaswani, N. Shazeer, N. Parmar et al. Attention is all you need. arXiv:1706.03762, 2017.",
    "M. E. Peters, M. Neumann, M. Iyyer et al. 2018. Deep contextualized word representations. In NAACL.",
]


def atom(papers: list[Paper]) -> str:
    def stamp(p: Paper) -> str:
        return f"{p.published[:4]}-{p.published[4:6]}-{p.published[6:]}T00:00:00Z"

    entries = "".join(
        f"<entry><id>http://arxiv.org/abs/{p.arxiv_id}v1</id><updated>{day}</updated><published>{day}</published>"
        f"<title>{p.title}</title><summary>{p.abstract}</summary></entry>"
        for p, day in ((p, stamp(p)) for p in papers)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">{entries}</feed>'


def arxiv_api(request):
    query = parse_qs(request["query"])
    if query.get("id_list", [""])[0]:
        return Reply(200, atom([PAPERS[i] for i in query["id_list"][0].split(",") if i in PAPERS]))
    search = query.get("search_query", [""])[0]
    if search.startswith('ti:"'):  # title lookup
        words = search[4:-1].lower()
        return Reply(200, atom([p for p in PAPERS.values() if p.title.lower().replace(":", "") == words]))
    return Reply(200, atom([FOUND]))  # the keyless search


@pytest.mark.parametrize("released", [False, True])
def test_seed_paper_with_arxiv_html_full_text_and_citations_by_id(tmp_path, monkeypatch, released):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    page = load_bench().latexml_page([[r] for r in REFERENCES])
    script = Script(
        {
            "/api/query": arxiv_api,
            "/ar5iv/2401.00001": Reply(404, "no page"),
            "/arxiv_html/2401.00001": Reply(200, page),
        }
    )
    crawler = ScriptedLLM(
        replies={"find papers": "[Search] sequence models\n[StopSearch]", SEED.title: "[Expand] 1 Cited\n[StopExpand]"}
    )
    selector = ScriptedLLM(default_score=0.9)
    with serve(script) as url, make_client(tmp_path) as http:
        monkeypatch.setenv("PASA_ARXIV_HTML_URL", f"{url}/arxiv_html")
        service = ServiceArgs(arxiv_url=f"{url}/api/query", ar5iv_url=f"{url}/ar5iv", arxiv_interval=0.0)
        source = build_paper_source(http=http, service=service, search_engine="arxiv", released_behaviour=released)
        config = AgentConfig(expand_layers=1, released_behaviour=released)
        root = PaperAgent(Crawler(crawler), Selector(selector), source, config).run(
            "find papers", end_date="20240601", seed_papers=["2401.00001v2"]
        )
    (seed,) = root.child["[Seed]"]
    assert seed.arxiv_id == SEED.arxiv_id and seed.depth == 0
    assert [n.arxiv_id for n in root.child["sequence models"]] == [FOUND.arxiv_id]
    if released:  # ar5iv only: no full text for the recent paper, nothing expanded
        assert seed.child == {} and script.count("/arxiv_html/2401.00001") == 0
        return
    assert seed.extra["sections_source"] == "arxiv_html"
    cited = {n.arxiv_id: n.extra["resolved_by"] for n in seed.child["1 Cited"]}
    assert cited == {ATTENTION.arxiv_id: "id", ELMO.arxiv_id: "title"}
    assert root.extra["citations"] == {"by_id": 1, "by_title": 1, "not_found": 0, "failed": 0}
