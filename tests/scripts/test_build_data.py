"""scripts/build_crawler_data.py and scripts/build_selector_data.py on fixtures: AutoScholarQuery-shaped records, a
tiny paper database built here, scripted and loopback teachers; their output trains with scripts/sft.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pasa.crawler import Crawler
from pasa.demo import demo_papers
from pasa.llm.scripted import ScriptedLLM
from pasa.paper import Paper, title_key
from pasa.prompts import parse_expand_sections, parse_search_queries, render_search_prompt
from pasa.tools.paper_db import build_paper_db
from pasa.tools.sources import InMemoryPaperSource, PaperDBSource
from tests.fakes import OpenAIStub, load_script, openai_server
from trl_ext.sft_data import load_sft_examples, parse_selector_decision

ROOT = Path(__file__).resolve().parents[2]
QUERIES = str(ROOT / "tests" / "fixtures" / "sft" / "autoscholar.jsonl")
GNN_Q = "Which works propose graph neural network layers such as graph convolution, graph attention or neighbourhood sampling?"
RAG_Q = "Which papers combine a retriever with a language model?"
GAT_SECTIONS = ["2 GAT Architecture", "4 Related Work"]
# A paper whose only section citing an answer has a name the agent's parser cannot read back.
BRACKET = Paper(
    "9999.00001", "Graph Papers With Odd Sections", "Odd.", {"1 Intro [draft]": ["Graph Attention Networks"]}
)


crawler_data = load_script("build_crawler_data")
selector_data = load_script("build_selector_data")


@pytest.fixture(scope="module")
def paper_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper_db")
    zip_path, id2paper = str(folder / "db.zip"), str(folder / "id2paper.json")
    assert build_paper_db(demo_papers(), zip_path, id2paper) == 16
    return zip_path, id2paper


def sessions_by(records, kind):
    return [r for r in records if r["session"] == kind]


# -- crawler trajectories ------------------------------------------------------------------------------------------
def test_crawler_sessions_from_the_paper_db(paper_db):
    records, counts = crawler_data.build_crawler_data(QUERIES, PaperDBSource(*paper_db))
    assert counts["records"] == 5 and counts["bad_records"] == 2 and counts["malformed_lines"] == 1
    searches = sessions_by(records, "search")
    assert [r["question"] for r in searches] == [
        GNN_Q,
        RAG_Q,
        "Which papers study protein folding with deep learning?",
    ]
    # no teacher: the record's search_queries (brackets made parseable), else the question itself
    assert parse_search_queries(searches[0]["messages"][1]["content"]) == [GNN_Q]
    assert parse_search_queries(searches[1]["messages"][1]["content"]) == [
        "retrieval augmented language model",
        "retrieval (augmented) generation survey",
    ]
    expands = {(r["question"], r["arxiv_id"]): r["messages"][1]["content"] for r in sessions_by(records, "expand")}
    # hand-derived from demo_papers(): sections citing the answers, in the paper's order
    assert expands == {
        (GNN_Q, "1710.10903"): "[Expand] 2 GAT Architecture\n[Expand] 4 Related Work\n[StopExpand]",
        (GNN_Q, "1901.00596"): "[Expand] 4 Convolutional Graph Neural Networks\n[StopExpand]",
        (RAG_Q, "2005.11401"): "[Expand] 5 Related Work\n[StopExpand]",
        (RAG_Q, "2312.10997"): "[Expand] 2 Overview of RAG\n[StopExpand]",
    }
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert r["messages"][1]["content"].endswith("[StopSearch]" if r["session"] == "search" else "[StopExpand]")


def test_the_agent_reads_the_built_responses_back(paper_db):
    """Replay each built response through the agent's Crawler: it recovers the sessions' targets."""
    source = PaperDBSource(*paper_db)
    records, _ = crawler_data.build_crawler_data(QUERIES, source)
    replies = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in records}
    crawler = Crawler(ScriptedLLM(reply_fn=lambda prompt: replies[prompt]))
    queries, _ = crawler.search_queries(RAG_Q)
    assert queries == ["retrieval augmented language model", "retrieval (augmented) generation survey"]
    gat = source.get_by_id("1710.10903")
    [(sections, _)] = crawler.expand_sections(GNN_Q, [(gat.title, gat.abstract, list(gat.sections))])
    assert sections == GAT_SECTIONS


def test_teacher_queries_search_candidates_and_stop_sessions():
    teacher = ScriptedLLM(reply_fn=lambda p: "1. graph attention\n2. graph convolution\n3. graph attention\n")
    source = InMemoryPaperSource([*demo_papers(), BRACKET])
    config = crawler_data.CrawlerDataConfig(max_queries=2, search_k=16, stop_sessions_ratio=1.0)
    records, counts = crawler_data.build_crawler_data(QUERIES, source, teacher, config, max_records=2)
    assert teacher.calls and teacher.calls[0][1][0].startswith(render_search_prompt(GNN_Q))
    search = sessions_by(records, "search")[0]["messages"][1]["content"]
    assert search == "[Search] graph attention\n[Search] graph convolution\n[StopSearch]"
    expands = sessions_by(records, "expand")
    targets = [r for r in expands if r["messages"][1]["content"] != "[StopExpand]"]
    stops = [r for r in expands if r["messages"][1]["content"] == "[StopExpand]"]
    assert counts["expand_sessions"] == len(targets) == 4 and counts["stop_sessions"] == len(stops)
    # for the RAG question, search found GNN papers whose sections cite no answer (at most 1 per target session)
    assert 1 <= len(stops) <= 2 and all(r["question"] == RAG_Q for r in stops)
    assert counts["target_sections_dropped"] == 1  # BRACKET's "1 Intro [draft]" (found by search)
    assert not any(r["arxiv_id"] == BRACKET.arxiv_id and r["question"] == GNN_Q for r in expands)
    records_in = [json.loads(line) for line in open(QUERIES).readlines()[:2]]
    answers = {r["question"]: {title_key(t) for t in r["answer"]} for r in records_in}
    for r in expands:
        sections = source.get_by_id(r["arxiv_id"]).sections
        cites = {name for name, cited in sections.items() if {title_key(t) for t in cited} & answers[r["question"]]}
        parsed = parse_expand_sections(r["messages"][1]["content"], list(sections))
        assert parsed == ([] if r in stops else [name for name in sections if name in cites])
        assert (r in stops) == (not cites)


def test_a_failing_teacher_skips_the_record_only():
    def reply(prompt):
        if GNN_Q in prompt:
            raise RuntimeError("teacher down")
        return "[Search] retrieval models\n[StopSearch]"

    records, counts = crawler_data.build_crawler_data(
        QUERIES, InMemoryPaperSource(demo_papers()), ScriptedLLM(reply_fn=reply)
    )
    assert counts["failed_records"] == 1
    assert [r["question"] for r in sessions_by(records, "search")][0] == RAG_Q


@pytest.mark.parametrize(
    ("reply", "queries"),
    [
        ("[Search] a b\n[Search] c\n[StopSearch]", ["a b", "c"]),
        ("[Search] a b\n[Search] c", ["a b", "c"]),
        ('- "a b"\n* c\n\n', ["a b", "c"]),
        ("", []),
    ],
)
def test_parse_teacher_queries(reply, queries):
    assert crawler_data.parse_teacher_queries(reply, 5) == queries


def test_crawler_cli_writes_sft_ready_records(paper_db, tmp_path, capsys):
    out = tmp_path / "crawler.jsonl"
    argv = ["--input_file", QUERIES, "--paper_db", paper_db[0], "--id2paper", paper_db[1], "--output", str(out)]
    assert crawler_data.main(argv) == 0
    assert "bad_records" in capsys.readouterr().out
    assert len(load_sft_examples([str(out)])) == 7


# -- selector labels -----------------------------------------------------------------------------------------------
def scripted_teacher():
    answers = {"Graph Attention Networks", "REALM: Retrieval-Augmented Language Model Pre-Training"}

    def reply(prompt):
        title = prompt.split("Title: ", 1)[1].split("\n", 1)[0]
        if title == "Attention Is All You Need":
            return "I cannot decide."
        return "True\nReason: it matches." if title in answers else "Decision: False\nReason: it does not match."

    return ScriptedLLM(reply_fn=reply)


def selector_pairs(paper_db, counts, negatives=3):
    source = PaperDBSource(*paper_db)
    ids = sorted(source.db.id2title)
    return list(selector_data.pairs_from_queries(QUERIES, source, ids, 5, negatives, 0, counts))


def test_selector_pairs_positives_negatives_and_bad_records(paper_db):
    counts = Counter()
    pairs = selector_pairs(paper_db, counts)
    assert counts["bad_records"] == 2 and counts["malformed_lines"] == 1 and counts["queries"] == 3
    assert counts["answers_not_in_db"] == 1  # the protein-folding record's only answer
    gnn = [p for p in pairs if p.query == GNN_Q]
    assert {p.title for p in gnn if p.in_answer} == {
        "Semi-Supervised Classification with Graph Convolutional Networks",
        "Graph Attention Networks",
        "Inductive Representation Learning on Large Graphs",
    }
    negatives = [p for p in gnn if not p.in_answer]
    assert len(negatives) == 3 and not {p.title for p in negatives} & {p.title for p in gnn if p.in_answer}
    assert pairs == selector_pairs(paper_db, Counter())  # seeded: a rerun draws the same negatives


def test_selector_labelling_resumes_and_counts(paper_db, tmp_path):
    out = tmp_path / "selector.jsonl"
    pairs = selector_pairs(paper_db, Counter())
    teacher = scripted_teacher()
    counts = selector_data.label_pairs(pairs, teacher, str(out), batch_size=4)
    lines = out.read_text().splitlines()
    unparsed = sum(p.title == "Attention Is All You Need" for p in pairs)
    assert counts["unparsed_replies"] == unparsed
    assert len(lines) == len(pairs) - unparsed == counts["labelled_true"] + counts["labelled_false"]
    assert counts["prompt_tokens_est"] > 0 and counts["completion_tokens_est"] > 0
    for line in lines:
        r = json.loads(line)
        assert r["messages"][1]["content"].startswith(("True\nReason: ", "False\nReason: "))
        assert parse_selector_decision(r["messages"][1]["content"]) is r["label"]
        assert r["messages"][0]["content"].endswith("Decision:")
    assert counts["disagree_with_answer_set"] == sum(
        json.loads(line)["in_answer"] != json.loads(line)["label"] for line in lines
    )

    # a killed run left half a line; the rerun only asks about what is missing and starts on a fresh line
    with open(out, "a") as f:
        f.write('{"messages": [{"role": "us')
    more = [selector_data.Pair(RAG_Q, "A Paper Added Later", "Nothing to do with retrieval.", "", False)]
    assert more[0].key not in {p.key for p in pairs}
    teacher = scripted_teacher()
    counts = selector_data.label_pairs(pairs + more, teacher, str(out), batch_size=4)
    assert counts["already_done"] == len(pairs) - unparsed and counts["labelled_false"] == 1
    asked = [p for _, prompts in teacher.calls for p in prompts]
    assert len(asked) == unparsed + 1  # the unparsed ones are retried, the labelled ones are not
    assert json.loads(out.read_text().splitlines()[-1])["title"] == "A Paper Added Later"


def test_selector_cli_with_a_loopback_teacher_then_sft(paper_db, tmp_path, capsys, tiny_checkpoint):
    stub = OpenAIStub(reply=lambda prompt: "False\nReason: not about it.", model="gpt-4o")
    out = tmp_path / "selector.jsonl"
    with openai_server(stub) as url:
        argv = ["--input_file", QUERIES, "--paper_db", paper_db[0], "--id2paper", paper_db[1], "--output", str(out)]
        argv += ["--teacher", f"{url}#gpt-4o", "--negatives_per_query", "2", "--price_in", "2.5", "--price_out", "10"]
        assert selector_data.main(argv) == 0
    printed = capsys.readouterr().out
    assert "estimated cost (USD)" in printed and "labelled_false" in printed
    assert all(r[0] == "/v1/chat/completions" for r in stub.requests)
    # 3 + 3 answers in the database, 2 negatives for each of the 3 valid records
    assert len(out.read_text().splitlines()) == len(stub.requests) == 12

    # both builders' outputs train with scripts/sft.py
    crawler_out = tmp_path / "crawler.jsonl"
    crawler_argv = ["--input_file", QUERIES, "--paper_db", paper_db[0], "--id2paper", paper_db[1]]
    assert crawler_data.main([*crawler_argv, "--output", str(crawler_out)]) == 0
    sft = load_script("sft")
    model_dir = tmp_path / "model"
    argv = ["--model_name_or_path", tiny_checkpoint, "--dataset_name", str(out), str(crawler_out)]
    argv += ["--output_dir", str(model_dir), "--max_steps", "2", "--bf16", "false", "--report_to", "none"]
    argv += ["--save_strategy", "no", "--gradient_checkpointing", "false", "--per_device_train_batch_size", "2"]
    assert sft.main(argv) == 0
    assert (model_dir / "model.safetensors").exists()


# -- an unusable teacher stops the build before any work -------------------------------------------------------------
def _refused_url() -> str:
    import socket

    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1#gpt-4o"


@pytest.mark.parametrize("builder", ["selector", "crawler"])
def test_an_unreachable_teacher_is_one_line_before_any_work(builder, paper_db, tmp_path, capsys):
    import time

    module = selector_data if builder == "selector" else crawler_data
    out = tmp_path / "out.jsonl"
    argv = ["--input_file", QUERIES, "--paper_db", paper_db[0], "--id2paper", paper_db[1], "--output_file", str(out)]
    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        module.main([*argv, "--teacher", _refused_url()])
    assert exc.value.code == 1 and time.monotonic() - start < 10
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "cannot reach the model server of --teacher" in captured.err and not out.exists()


def test_openai_teacher_without_a_key_is_one_line(paper_db, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    argv = ["--input_file", QUERIES, "--paper_db", paper_db[0], "--id2paper", paper_db[1]]
    argv += ["--output_file", str(tmp_path / "o.jsonl"), "--teacher", "https://api.openai.com/v1#gpt-4o"]
    with pytest.raises(SystemExit) as exc:
        selector_data.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OPENAI_API_KEY is not set" in err[0]


def test_a_teacher_failing_mid_build_exits_non_zero_in_one_line(paper_db, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PASA_LLM_RETRIES", "0")
    stub = OpenAIStub(reply=lambda prompt: "False\nReason: no.", model="gpt-4o")
    stub.fail_next = [500] * 100
    out = tmp_path / "o.jsonl"
    argv = ["--input_file", QUERIES, "--paper_db", paper_db[0], "--id2paper", paper_db[1], "--output_file", str(out)]
    with openai_server(stub) as url:
        assert selector_data.main([*argv, "--teacher", f"{url}#gpt-4o"]) == 1
        err = capsys.readouterr().err
        assert "the teacher failed after 0 pair(s) labelled" in err and "Traceback" not in err
        assert crawler_data.main([*argv, "--teacher", f"{url}#gpt-4o"]) == 1
    captured = capsys.readouterr()
    assert "no sessions built" in captured.err and "failed_records" in captured.out
    assert not out.exists() or out.read_text() == ""
