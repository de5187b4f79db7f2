"""pasa.tools.title_llm: one batched call per page for the unread references, cached; a reply that is not a title
list is counted and the rule titles kept; a title that is not in its reference is dropped; through the source."""

from __future__ import annotations

import doctest
import json

import pytest

from pasa.llm.scripted import ScriptedLLM
from pasa.tools import title_llm
from pasa.tools.ar5iv import parse_ar5iv_html
from pasa.tools.sources import OnlinePaperSource
from pasa.tools.title_llm import LLMTitleExtractor, needs_llm, parse_titles
from tests.pasa.tools.test_ar5iv_quality import load_bench
from tests.pasa.tools.test_http import Reply, Script, make_client, serve

NO_TITLE = "Y. Cao, V. Fatemi and P. Jarillo-Herrero, Nature 556, 43 (2018)."
UNREAD = "Griffiths D 2018 Introduction to quantum mechanics (Cambridge: Cambridge University Press)"  # IOP style


@pytest.fixture(scope="module")
def bench():
    return load_bench()


def page(bench, refs: list[str]) -> str:
    return bench.latexml_page([[r] for r in refs])


def test_doctests():
    assert doctest.testmod(title_llm).failed == 0


def test_one_call_per_page_and_cached(bench):
    llm = ScriptedLLM(reply_fn=lambda prompt: json.dumps(["", "Introduction to quantum mechanics"]))
    extractor = LLMTitleExtractor(llm)
    refs = parse_ar5iv_html(page(bench, [NO_TITLE, UNREAD, "A. Vaswani and N. Shazeer. Attention is all you "
                                                           "need. In NeurIPS, 2017."])).references  # fmt: skip
    assert [r.title for r in refs.values()] == ["", "", "Attention is all you need"]
    assert extractor.refine(refs.values()) == 1
    assert [r.title for r in refs.values()] == ["", "Introduction to quantum mechanics", "Attention is all you need"]
    ((method, prompts),) = llm.calls
    assert method == "generate" and len(prompts) == 1 and "1. Y. Cao" in prompts[0] and "Attention" not in prompts[0]
    again = parse_ar5iv_html(page(bench, [UNREAD])).references
    assert extractor.refine(again.values()) == 1 and len(llm.calls) == 1  # answered from the cache


@pytest.mark.parametrize("reply", ["I cannot help with that.", '["only one"]', '{"titles": []}', "[1, 2]", ""])
def test_reply_that_is_not_a_title_list_keeps_the_rule_titles(bench, reply):
    extractor = LLMTitleExtractor(ScriptedLLM(default_reply=reply))
    refs = parse_ar5iv_html(page(bench, [NO_TITLE, UNREAD])).references
    assert extractor.refine(refs.values()) == 0
    assert [r.title for r in refs.values()] == ["", ""] and extractor.bad_replies == 1


def test_title_not_in_the_reference_is_dropped(bench):
    extractor = LLMTitleExtractor(ScriptedLLM(default_reply='["Superconductivity in graphene", ""]'))
    refs = parse_ar5iv_html(page(bench, [NO_TITLE, UNREAD])).references
    assert extractor.refine(refs.values()) == 0 and extractor.rejected == 1


def test_needs_llm_and_parse_titles():
    assert needs_llm("Theano", None) and needs_llm(" ".join(["w"] * 41), None)
    assert parse_titles('Sure:\n["A", "B"]\nDone.', 2) == ["A", "B"]
    assert parse_titles('["A", null]', 2) is None


def test_oracle_model_on_the_measured_pages(bench):
    scores = bench.llm_scores()
    unarxive = scores["unarXive one block"]
    assert unarxive["calls"] == 1 and 0 < unarxive["sent"] < 10
    assert unarxive["exact"] >= bench.unarxive_scores()["one block, default"]["exact"]
    assert all(s["calls"] <= 1 for s in scores.values())


def test_source_rereads_titles_once_per_page(tmp_path, bench):
    llm = ScriptedLLM(reply_fn=lambda prompt: json.dumps(["", "Introduction to quantum mechanics"]))
    html = page(bench, [NO_TITLE, UNREAD])
    script = Script({"/html/2401.00001": Reply(200, html)})
    with serve(script) as url, make_client(tmp_path) as http:
        source = OnlinePaperSource(http, ar5iv_url=f"{url}/html/{{arxiv_id}}", title_extractor=LLMTitleExtractor(llm))
        sections = source.get_sections("2401.00001")
        assert source.get_sections("2401.00001") == sections
        released = OnlinePaperSource(
            http, ar5iv_url=f"{url}/html/{{arxiv_id}}", title_extractor=LLMTitleExtractor(llm), released_titles=True
        )
        assert released.title_extractor is None
    assert sections == {"1 Cited": ["Introduction to quantum mechanics"]}
    assert len(llm.calls) == 1


def test_use_title_llm_reaches_the_online_source_of_a_composite(tmp_path, monkeypatch):
    from pasa.tools.http import ServiceArgs
    from pasa.tools.sources import build_paper_source, use_title_llm

    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    llm = ScriptedLLM()
    with make_client(tmp_path) as http:
        service = ServiceArgs(arxiv_url="http://127.0.0.1:9/api/query", ar5iv_url="http://127.0.0.1:9/html")
        source = build_paper_source(http=http, service=service, search_engine="arxiv")
        assert use_title_llm(source, llm) == 1 and source.searcher.title_extractor.llm is llm
        assert use_title_llm(source, llm) == 0  # already set: the same online source, not a second extractor
        released = build_paper_source(http=http, service=service, search_engine="arxiv", released_behaviour=True)
        assert use_title_llm(released, llm) == 0
