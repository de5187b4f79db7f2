"""`pasa run` online flags: --seed_papers (and a record's seed_papers), --search_engine, --title_extractor; bad
values are one line and exit status 2 before any model loads."""

from __future__ import annotations

import json

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.paper import Paper
from pasa.queries import load_queries
from pasa.runner import RunArgs, build_source, main
from pasa.selector import Selector
from tests.fakes import InMemoryPaperSource, ScriptedLLM

SEED = Paper("1706.03762", "Attention Is All You Need", "The Transformer.", published="20170612")
FOUND = Paper("1810.04805", "BERT", "Pre-training.", published="20181011")
MODELS = ["--crawler_path", "missing/crawler", "--selector_path", "missing/selector"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed_papers", "1706.03762,BERT"], "--seed_papers: 'BERT' is not an arXiv id"),
        (["--seed_papers", " , "], "--seed_papers: no arXiv id given"),
        (["--search_engine", "google"], "--search_engine must be one of serper, arxiv, local, not 'google'"),
        (["--title_extractor", "gpt"], "--title_extractor must be rules or llm, not 'gpt'"),
        (["--title_llm", "http://127.0.0.1:9/v1"], "--title_llm is the model of --title_extractor llm"),
    ],
)
def test_bad_online_flags_are_one_line_and_exit_2_before_models(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main(["--query", "q", "--output_dir", str(tmp_path / "out"), *MODELS, *extra])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and message in err


def test_seed_papers_reach_the_agent(tmp_path, monkeypatch, tiny_checkpoint):
    source = InMemoryPaperSource([SEED, FOUND], {"transformers": [FOUND.arxiv_id]})
    agent = PaperAgent(
        Crawler(ScriptedLLM(replies={"q": "[Search] transformers\n[StopSearch]"})),
        Selector(ScriptedLLM(default_score=0.9)),
        source,
        AgentConfig(expand_layers=0),
    )
    monkeypatch.setattr("pasa.runner.build_agent", lambda *args, **kwargs: agent)
    out = tmp_path / "out"
    models = ["--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint]
    code = main(["--query", "q", "--output_dir", str(out), "--seed_papers", "1706.03762v7", *models], source=source)
    assert code == 0
    (tree_file,) = out.glob("*.json")
    tree = json.loads(tree_file.read_text())
    assert [n["arxiv_id"] for n in tree["child"]["[Seed]"]] == [SEED.arxiv_id]
    assert [n["arxiv_id"] for n in tree["child"]["transformers"]] == [FOUND.arxiv_id]


def test_seed_papers_in_input_records(tmp_path, caplog):
    path = tmp_path / "queries.jsonl"
    lines = [
        {"question": "a", "seed_papers": ["1706.03762v2", "hep-th/9901001"]},
        {"question": "b", "seed_papers": "1810.04805"},
        {"question": "c", "seed_papers": ["not-an-id"]},
        {"question": "d"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    items = load_queries(str(path))
    assert [(i.question, i.seed_papers) for i in items] == [
        ("a", ["1706.03762", "hep-th/9901001"]),
        ("b", ["1810.04805"]),
        ("d", None),
    ]
    assert "queries.jsonl:3: bad 'seed_papers'" in caplog.text and "'not-an-id' is not an arXiv id" in caplog.text


def test_search_engine_flag_builds_the_keyless_arxiv_source(monkeypatch, tmp_path):
    from pasa.tools.http import HttpConfig

    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    args = RunArgs(query="q", search_engine="arxiv")
    source = build_source(args, http=HttpConfig(cache_dir=str(tmp_path)))
    assert source.searcher.search_engine == "arxiv"
    released = build_source(args, released_behaviour=True, http=HttpConfig(cache_dir=str(tmp_path)))
    assert released.searcher.arxiv_html_url is None


def test_keyless_run_with_a_seed_paper_over_loopback_services(tmp_path, monkeypatch, tiny_checkpoint):
    """`pasa run --search_engine arxiv --seed_papers ...` against a loopback arXiv API: no key, the seed paper
    looked up by id and queued under [Seed] (the tiny random crawler writes no search query)."""
    from tests.pasa.tools.test_http import Reply, Script, serve
    from tests.pasa.tools.test_online_agent import arxiv_api

    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    monkeypatch.delenv("PASA_ARXIV_HTML_URL", raising=False)
    script = Script({"/api/query": arxiv_api, "/ar5iv/2401.00001": Reply(404, "no page")})
    out = tmp_path / "out"
    with serve(script) as url:
        code = main(
            ["--query", "q", "--output_dir", str(out), "--search_engine", "arxiv", "--seed_papers", "2401.00001",
             "--arxiv_url", f"{url}/api/query", "--ar5iv_url", f"{url}/ar5iv", "--arxiv_interval", "0",
             "--cache_dir", str(tmp_path / "cache"), "--expand_layers", "1",
             "--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint, "--device", "cpu"]
        )  # fmt: skip
    (tree_file,) = out.glob("*.json")
    tree = json.loads(tree_file.read_text())
    assert [n["arxiv_id"] for n in tree["child"]["[Seed]"]] == ["2401.00001"]
    assert any("id_list=2401.00001" in r["query"] for r in script.requests)
    assert code == 0 and tree["extra"]["failures"]["crawler_no_action"] >= 1  # random crawler: degraded, not failed
