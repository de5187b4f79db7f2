"""The offline search index: ranking, end-date rule, persistence and cache staleness, lookups, threads, `pasa index`,
and the agent loop running on it."""

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.cli import main as cli_main
from pasa.crawler import Crawler
from pasa.demo import demo_papers
from pasa.llm.scripted import ScriptedLLM
from pasa.paper import Paper
from pasa.selector import Selector
from pasa.tools.local_search import (
    MANIFEST,
    RECORDS,
    LocalSearchIndex,
    SearchIndexError,
    load_papers_jsonl,
    normalize_date,
    tokenize,
)
from pasa.tools.paper_db import build_paper_db
from pasa.tools.sources import PaperSource, build_paper_source, published_before

RAG = "2005.11401"
QUERIES = [
    "retrieval augmented generation",
    "graph neural networks survey",
    "dense passage retrieval for question answering",
    "policy optimization reinforcement learning",
    "language models follow instructions human feedback",
    "transformer attention",
    "no such words zzzqqq",
]


@pytest.fixture(scope="module")
def demo_index():
    return LocalSearchIndex.build(demo_papers())


def make_db(folder, papers):
    zip_path, id_path = str(folder / "db.zip"), str(folder / "id2paper.json")
    build_paper_db(papers, zip_path, id_path)
    return zip_path, id_path


def results(index, end_date=None):
    return [index.search(q, 5, end_date) for q in QUERIES]


def test_tokenize_and_dates():
    assert tokenize("Graph Neural Networks for the Molecules") == ["graph", "neural", "network", "molecule"]
    assert tokenize("Queries, studies & analyses; a b") == ["query", "study", "analyse"]
    assert tokenize("") == [] and tokenize("of the for") == []
    assert normalize_date("2023-12-18") == "20231218" and normalize_date(None) is None
    with pytest.raises(ValueError, match="not a date"):
        normalize_date("Dec 2023")


def test_protocol_and_title_query_ranks_its_paper_first(demo_index):
    assert isinstance(demo_index, PaperSource) and len(demo_index) == 16
    for p in demo_papers():
        assert demo_index.search(p.title, 10)[0] == p.arxiv_id, p.title
    # words of the title in another order, without punctuation
    assert demo_index.search("trillions tokens retrieving improving language models", 3)[0] == "2112.04426"


def test_k_and_no_match(demo_index):
    assert len(demo_index.search("language models", 3)) == 3
    matching = demo_index.search("language models", 100)
    assert 3 < len(matching) < 16  # only papers sharing a word come back, each once
    assert len(set(matching)) == len(matching)
    assert demo_index.search("language models", 0) == []
    assert demo_index.search("zzzqqq", 10) == [] and demo_index.search("", 10) == []
    assert demo_index.search("of the for with", 10) == []  # stopwords only


def test_end_date_rule():
    papers = [
        Paper("2401.00001", "Sparse retrieval methods", "bm25", published="20240110"),
        Paper("2401.00002", "Sparse retrieval methods revisited", "bm25", published="20230101"),
        Paper("2401.00003", "Sparse retrieval methods again", "bm25", published=None),  # unknown date passes
        Paper("2401.00004", "Sparse retrieval methods today", "bm25", published="20240109"),
    ]
    index = LocalSearchIndex.build(papers)
    assert set(index.search("sparse retrieval", 10)) == {p.arxiv_id for p in papers}
    assert set(index.search("sparse retrieval", 10, "20240109")) == {"2401.00002", "2401.00003", "2401.00004"}
    assert set(index.search("sparse retrieval", 10, "2023-06-30")) == {"2401.00002", "2401.00003"}
    # the filter is applied before the top k is cut: k=2 still fills up with allowed papers
    assert len(index.search("sparse retrieval", 2, "20230101")) == 2
    demo = {p.arxiv_id: p for p in demo_papers()}
    demo_index = LocalSearchIndex.build(demo.values())
    for end_date in ("20170101", "20200401", "20211231"):
        for ids in results(demo_index, end_date):
            assert all(published_before(demo[i], end_date) for i in ids)
        allowed = [
            p.arxiv_id
            for p in demo.values()
            if published_before(p, end_date) and "graph" in tokenize(f"{p.title} {p.abstract}")
        ]
        assert sorted(demo_index.search("graph", 16, end_date)) == sorted(allowed)


def test_lookups_and_sections(demo_index):
    p = demo_index.get_by_id("arXiv:2005.11401v3")
    assert p.arxiv_id == RAG and p.title.startswith("Retrieval-Augmented Generation for Knowledge")
    assert p.published == "20200522" and p.source == "SearchFrom:demo"
    assert demo_index.get_by_title("retrieval augmented generation for knowledge-intensive NLP tasks!").arxiv_id == RAG
    original = {q.arxiv_id: q for q in demo_papers()}[RAG]
    assert demo_index.get_sections(RAG) == original.sections
    assert demo_index.get_sections("1706.03762") is None  # indexed, no sections
    assert demo_index.get_by_id("9999.99999") is None and demo_index.get_sections("9999.99999") is None
    assert demo_index.get_by_title("A Paper Nobody Wrote") is None and demo_index.get_by_title("!!") is None


def test_persistence_round_trip(tmp_path, demo_index):
    saved = str(tmp_path / "saved")
    demo_index.save(saved)
    loaded = LocalSearchIndex.load(saved)
    assert len(loaded) == len(demo_index)
    for end_date in (None, "20200101"):
        assert results(loaded, end_date) == results(demo_index, end_date)
    assert loaded.get_by_id(RAG) == demo_index.get_by_id(RAG)
    built = LocalSearchIndex.build(demo_papers(), str(tmp_path / "built"))
    assert results(LocalSearchIndex.load(str(tmp_path / "built"))) == results(built) == results(demo_index)
    manifest = json.load(open(tmp_path / "built" / MANIFEST))
    assert manifest["records"] == 16 and manifest["skipped"] == 0


def test_save_replaces_an_index_but_refuses_other_folders(tmp_path, demo_index):
    target = tmp_path / "idx"
    LocalSearchIndex.build([Paper("2401.00001", "Old index paper")], str(target))
    demo_index.save(str(target))  # an index there: replaced
    assert len(LocalSearchIndex.load(str(target))) == 16
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a search index"):
        demo_index.save(str(precious))
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(SearchIndexError, match="pasa index"):
        LocalSearchIndex.load(str(precious))


def test_build_replaces_an_index_another_process_moved_in_after_the_check(tmp_path, monkeypatch):
    # two jobs build the same missing index: the other one's folder lands after this one found the path free
    import pasa.tools.local_search as local_search

    target = str(tmp_path / "idx")
    real_lexists, first = os.path.lexists, [True]

    def lexists(path):
        if path == target and first[0]:
            first[0] = False
            LocalSearchIndex.build([Paper("2401.00001", "The other job's paper")], target)
            return False
        return real_lexists(path)

    monkeypatch.setattr(local_search.os.path, "lexists", lexists)
    built = LocalSearchIndex.build(demo_papers(), target)
    assert not first[0]  # the other job did move its index in first
    assert len(built) == len(LocalSearchIndex.load(target)) == 16
    assert sorted(n for n in os.listdir(tmp_path) if n != "idx") == []  # no temporary or old folder left


@pytest.mark.parametrize(
    "setup, reason",
    [
        ({"manifest.json": '{"name": "my web app"}'}, "not a pasa-local-search manifest"),
        ({"manifest.json": '{"format": "pasa-local-search"}', "thesis.tex": "keep"}, "thesis.tex"),
        ({"manifest.json": "{broken"}, "no index manifest"),
    ],
)
def test_pasa_index_never_deletes_a_folder_it_did_not_write(tmp_path, capsys, setup, reason):
    folder = tmp_path / "out"
    folder.mkdir()
    for name, text in setup.items():
        (folder / name).write_text(text)
    path = tmp_path / "papers.jsonl"
    path.write_text("\n".join(JSONL_LINES) + "\n")
    assert cli_main(["index", "--jsonl", str(path), "--output", str(folder)]) == 2
    assert reason in capsys.readouterr().err
    assert {p.name: p.read_text() for p in folder.iterdir()} == setup  # untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_missing_truncated_or_damaged_index_is_one_clear_error(tmp_path):
    with pytest.raises(SearchIndexError, match="does not exist"):
        LocalSearchIndex.load(str(tmp_path / "nowhere"))
    folder = tmp_path / "idx"
    LocalSearchIndex.build(demo_papers(), str(folder))
    records = folder / RECORDS
    data = records.read_bytes()
    records.write_bytes(data[: len(data) // 3])  # cut short: not "0 papers for every query"
    with pytest.raises(SearchIndexError, match="damaged"):
        LocalSearchIndex.load(str(folder))
    records.write_bytes(b"")
    with pytest.raises(SearchIndexError, match="damaged"):
        LocalSearchIndex.load(str(folder))
    records.write_bytes(data)
    assert len(LocalSearchIndex.load(str(folder))) == 16
    (folder / "published.npy").unlink()
    with pytest.raises(SearchIndexError, match="damaged"):
        LocalSearchIndex.load(str(folder))


def test_non_utf8_byte_skips_that_line_only(tmp_path, caplog):
    path = tmp_path / "papers.jsonl"
    good = '{"arxiv_id": "2401.00001", "title": "Sparse retrieval at scale", "abstract": "x"}'
    path.write_bytes(
        good.encode()
        + b"\n"
        + b'{"arxiv_id": "2401.00002", "title": "Bad \xff byte"}\n'
        + good.replace("00001", "00003").encode()
        + b"\n"
    )
    skipped = []
    assert [p.arxiv_id for p in load_papers_jsonl(str(path), skipped)] == ["2401.00001", "2401.00003"]
    assert len(skipped) == 1 and "papers.jsonl:2: not UTF-8" in caplog.text


def test_incompatible_manifest_is_a_clear_error(tmp_path):
    folder = str(tmp_path / "idx")
    LocalSearchIndex.build(demo_papers()[:3], folder)
    manifest = json.load(open(os.path.join(folder, MANIFEST)))
    manifest["format_version"] = 0
    json.dump(manifest, open(os.path.join(folder, MANIFEST), "w"))
    with pytest.raises(ValueError, match="rebuild it"):
        LocalSearchIndex.load(folder)


def test_from_paper_db_reuses_a_matching_cache_and_rebuilds_a_stale_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pasa.tools.local_search")
    papers = demo_papers()
    zip_path, id_path = make_db(tmp_path, papers[:10])
    cache = str(tmp_path / "search_index")
    first = LocalSearchIndex.from_paper_db(zip_path, id_path, cache)
    assert len(first) == 10 and first.get_by_id(RAG).source == "SearchFrom:local_paper_db"
    created = first.manifest["created"], first.manifest["build_seconds"]

    caplog.clear()
    again = LocalSearchIndex.from_paper_db(zip_path, id_path, cache)
    assert "using the cached search index" in caplog.text
    assert (again.manifest["created"], again.manifest["build_seconds"]) == created
    assert results(again) == results(first)

    make_db(tmp_path, papers)  # the DB changes: 16 papers now
    caplog.clear()
    rebuilt = LocalSearchIndex.from_paper_db(zip_path, id_path, cache)
    assert "stale" in caplog.text and len(rebuilt) == 16
    assert rebuilt.search("PaSa LLM agent academic paper search", 1) == ["2501.10120"]

    # a damaged index (manifest lost) is not trusted either: rebuilt in place
    os.remove(os.path.join(cache, MANIFEST))
    assert len(LocalSearchIndex.from_paper_db(zip_path, id_path, cache)) == 16


def test_build_paper_source_offline_uses_the_index(tmp_path, monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    zip_path, id_path = make_db(tmp_path, demo_papers())
    source = build_paper_source(paper_db=zip_path, id2paper=id_path)
    assert source.search("graph attention networks", 1) == ["1710.10903"]
    assert os.path.isfile(tmp_path / "search_index" / MANIFEST)


def test_duplicates_and_invalid_records_are_skipped(caplog):
    skipped = []
    index = LocalSearchIndex.build(
        [
            Paper("2401.00001", "First title", "x"),
            Paper("2401.00001v2", "Same id again", "y"),
            Paper("", "No id"),
            Paper("2401.00002", "   "),
            Paper("2401.00003", "Bad date", published="soon"),
            Paper("2401.00004", "Fine too", "z"),
        ],
        skipped=skipped,
    )
    assert len(index) == 2 and index.manifest["skipped"] == 4 == len(skipped)
    assert index.get_by_id("2401.00001").title == "First title"
    assert "repeats an arXiv id" in caplog.text and "not a date" in caplog.text
    with pytest.raises(ValueError, match="no valid records"):
        LocalSearchIndex.build([Paper("", "")])


def test_concurrent_searches_match_sequential(demo_index):
    jobs = [(q, end) for q in QUERIES for end in (None, "20200101", "20221231")] * 10
    expected = [demo_index.search(q, 5, end) for q, end in jobs]

    def work(job):
        q, end = job
        return demo_index.search(q, 5, end), demo_index.get_by_id(RAG).title, demo_index.get_sections(RAG)

    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(work, jobs))
    assert [r for r, _, _ in out] == expected
    assert all(t.startswith("Retrieval-Augmented") and s for _, t, s in out)


JSONL_LINES = [
    json.dumps({"arxiv_id": "2401.00001v2", "title": "Sparse retrieval at scale", "abstract": "BM25 indexes.",
                "published": "2024-01-05", "sections": {"1 Intro": ["Dense Passage Retrieval"]}}),
    "{not json",
    json.dumps({"arxiv_id": "2401.00002", "abstract": "no title"}),
    json.dumps(["a", "list"]),
    "",
    json.dumps({"arxiv_id": "2401.00003", "title": "Bad sections", "sections": ["not", "a", "dict"]}),
    json.dumps({"arxiv_id": "2401.00004", "title": "Bad date", "published": "sometime"}),
    json.dumps({"arxiv_id": "2401.00005", "title": "Dense retrieval for open-domain QA", "published": 20200410}),
]  # fmt: skip


def test_load_papers_jsonl_skips_malformed_lines_with_line_numbers(tmp_path, caplog):
    path = tmp_path / "papers.jsonl"
    path.write_text("\n".join(JSONL_LINES) + "\n")
    skipped = []
    papers = list(load_papers_jsonl(str(path), skipped))
    assert [p.arxiv_id for p in papers] == ["2401.00001", "2401.00005"]
    assert papers[0].published == "20240105" and papers[0].sections == {"1 Intro": ["Dense Passage Retrieval"]}
    assert papers[1].published == "20200410" and papers[1].sections is None
    assert [s.split(":")[1] for s in skipped] == ["2", "3", "4", "6", "7"]
    for lineno in (2, 3, 4, 6, 7):
        assert f"papers.jsonl:{lineno}:" in caplog.text
    assert "'title'" in caplog.text and "'sections'" in caplog.text and "not a date" in caplog.text


def test_pasa_index_jsonl(tmp_path, capsys):
    path = tmp_path / "papers.jsonl"
    path.write_text("\n".join(JSONL_LINES) + "\n")
    out_dir = tmp_path / "idx"
    assert cli_main(["index", "--jsonl", str(path), "--output", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "records: 2" in out and "skipped: 5" in out and "build:" in out and "MiB" in out
    index = LocalSearchIndex.load(str(out_dir))
    assert index.search("sparse retrieval scale", 1) == ["2401.00001"]
    assert index.get_sections("2401.00001v1") == {"1 Intro": ["Dense Passage Retrieval"]}
    assert index.manifest["skipped"] == 5 and index.manifest["source"]["jsonl"][0]["name"] == "papers.jsonl"


def test_pasa_index_paper_db(tmp_path, capsys, caplog):
    zip_path, id_path = make_db(tmp_path, demo_papers())
    ids = json.load(open(id_path))
    ids["2401.99999"] = "A paper missing from the zip"
    json.dump(ids, open(id_path, "w"))
    out_dir = str(tmp_path / "idx")
    assert cli_main(["index", "--paper_db", zip_path, "--id2paper", id_path, "--output", out_dir]) == 0
    captured = capsys.readouterr()
    assert "records: 16" in captured.out and "skipped: 1" in captured.out
    assert "2401.99999" in caplog.text and "no readable entry" in caplog.text  # the logged skip names the record
    index = LocalSearchIndex.load(out_dir)
    assert index.search("Proximal Policy Optimization Algorithms", 1) == ["1707.06347"]
    # the cache written by `pasa index` is the one from_paper_db reuses
    assert LocalSearchIndex.from_paper_db(zip_path, id_path, out_dir).manifest["created"] == index.manifest["created"]


def test_pasa_index_bad_arguments(tmp_path, capsys):
    assert cli_main(["index", "--output", str(tmp_path / "x")]) == 2
    assert cli_main(["index", "--paper_db", "a.zip", "--output", str(tmp_path / "x")]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{broken\n")
    assert cli_main(["index", "--jsonl", str(empty), "--output", str(tmp_path / "x")]) == 2
    assert "no valid records" in capsys.readouterr().err
    assert cli_main(["index", "--jsonl", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "x")]) == 2
    assert not os.path.exists(tmp_path / "x")


def test_agent_loop_runs_on_the_index(tmp_path, demo_index):
    query = "retrieval augmented generation for knowledge intensive NLP"
    rag_title = demo_index.get_by_id(RAG).title
    crawler = ScriptedLLM(replies={query: "[Search] retrieval augmented generation knowledge intensive\n[StopSearch]",
                                   rag_title: "[Expand] 2 Methods\n[StopExpand]"})  # fmt: skip
    selector = ScriptedLLM(default_score=0.9)
    agent = PaperAgent(
        Crawler(crawler), Selector(selector), demo_index, AgentConfig(expand_layers=1, search_papers=1, threads_num=4)
    )
    root = agent.run(query, end_date="20210101")
    (found,) = root.child["retrieval augmented generation knowledge intensive"]
    assert found.arxiv_id == RAG and found.depth == 0 and found.extra["expand"] == "success"
    cited = [c.arxiv_id for c in found.child["2 Methods"]]
    assert cited == ["2004.04906", "1810.04805"]  # both titles of "2 Methods" resolved through get_by_title
    assert root.extra["touch_ids"] == [RAG, *cited] and len(root.extra["recall_papers"]) == 3
