import json
import logging

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.runner import QueryItem, end_date_from_published, load_queries, main, run_queries
from pasa.selector import Selector
from tests.fakes import InMemoryPaperSource, ScriptedLLM, paper

GOOD = {"question": "q one", "answer": ["T1"], "source_meta": {"published_time": "20240110"}}


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_end_date_is_published_minus_seven_days():
    assert end_date_from_published("20240301") == "20240223"  # leap year
    assert end_date_from_published(None) is None
    with pytest.raises(ValueError):
        end_date_from_published("2024-03-01")


def test_load_queries_reports_bad_lines_and_keeps_line_indices(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            json.dumps(GOOD),
            "{not json",
            json.dumps({"answer": ["x"]}),
            json.dumps({"question": "q two", "source_meta": {"published_time": "yesterday"}}),
            json.dumps({"question": "q three"}),
            json.dumps({"question": "q four", "answer": "not a list"}),
            "[1, 2]",
        ],
    )
    with caplog.at_level(logging.WARNING):
        items = load_queries(path)
    assert [(i.index, i.question, i.end_date, i.answer) for i in items] == [
        (0, "q one", "20240103", ["T1"]),
        (4, "q three", None, None),
    ]
    for lineno, what in [
        (2, "malformed JSON"),
        (3, "missing field(s) question"),
        (4, "published_time"),
        (6, "answer"),
        (7, "JSON object"),
    ]:
        assert f"q.jsonl:{lineno}:" in caplog.text and what in caplog.text


class CountingAgent:
    """Wraps a real agent; fails on chosen questions (or 'dies' with KeyboardInterrupt)."""

    def __init__(self, fail=(), die=()):
        crawler = Crawler(ScriptedLLM(default_reply="[Search] s\n[StopSearch]"))
        source = InMemoryPaperSource([paper("2401.00001", "A title")], {"s": ["2401.00001"]})
        self.agent = PaperAgent(crawler, Selector(ScriptedLLM(default_score=0.9)), source, AgentConfig())
        self.fail, self.die, self.ran = set(fail), set(die), []

    def run(self, question, end_date=None, answer=None):
        if question in self.die:
            raise KeyboardInterrupt
        self.ran.append(question)
        if question in self.fail:
            raise RuntimeError("model server went away")
        return self.agent.run(question, end_date, answer)


ITEMS = [QueryItem(i, f"q{i}", None, [f"a{i}"]) for i in range(4)]


def test_failed_query_is_logged_and_batch_goes_on(tmp_path, caplog):
    agent = CountingAgent(fail={"q1"})
    results = run_queries(agent, ITEMS, str(tmp_path), progress=False)
    assert [r.status for r in results] == ["done", "failed", "done", "done"]
    assert "model server went away" in results[1].error and "query 1 failed" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.json", "2.json", "3.json"]
    tree = json.loads((tmp_path / "2.json").read_text())
    assert (
        tree["title"] == "q2" and tree["extra"]["answer"] == ["a2"] and tree["extra"]["recall_papers"] == ["A title"]
    )


def test_killed_batch_resumes_without_redoing_finished_queries(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_queries(CountingAgent(die={"q2"}), ITEMS, str(tmp_path), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.json", "1.json"]  # no partial file for q2
    before = (tmp_path / "0.json").read_text()
    agent = CountingAgent()
    results = run_queries(agent, ITEMS, str(tmp_path), progress=False)
    assert agent.ran == ["q2", "q3"]
    assert [r.status for r in results] == ["skipped", "skipped", "done", "done"]
    assert (tmp_path / "0.json").read_text() == before


def test_cli_batch_end_to_end_on_tiny_model(tmp_path, tiny_checkpoint, capsys):
    """`pasa run --input_file` with the tiny checkpoint as both crawler and selector (HF backend)."""
    path = write_jsonl(tmp_path / "q.jsonl", [json.dumps(GOOD), "oops", json.dumps({"question": "q two"})])
    out = tmp_path / "out"
    source = InMemoryPaperSource([paper("2401.00001", "A title")])
    argv = [
        "--input_file",
        path,
        "--output_folder",
        str(out),
        "--crawler",
        tiny_checkpoint,
        "--selector",
        tiny_checkpoint,
        "--device",
        "cpu",
        "--expand_layers",
        "1",
        "--log_level",
        "ERROR",
    ]
    assert main(argv, source=source) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0.json", "2.json"]
    assert json.loads((out / "0.json").read_text())["extra"]["answer"] == ["T1"]
    printed = capsys.readouterr().out
    assert "2 queries from" in printed and "done 2, already on disk 0, failed 0" in printed
    assert main(argv, source=source) == 0
    assert "done 0, already on disk 2, failed 0" in capsys.readouterr().out


def test_cli_requires_exactly_one_input(tiny_checkpoint):
    with pytest.raises(SystemExit):
        main(["--crawler", tiny_checkpoint])


def test_demo_runs_the_loop(tmp_path, capsys):
    from pasa.runner import demo_main

    assert demo_main(["--output_folder", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rule-based stand-in" in out and "RANDOM Qwen2" in out
    tree = json.loads((tmp_path / "results" / "0.json").read_text())
    assert len(tree["child"]) == 3 and tree["extra"]["touch_ids"]
    assert any(c["child"] for nodes in tree["child"].values() for c in nodes)  # expansion happened


def test_no_cache_flag_reaches_the_online_source(monkeypatch, tmp_path, tiny_checkpoint):
    from pasa.agent import AgentConfig
    from pasa.runner import RunArgs, build_agent
    from pasa.tools.sources import CompositePaperSource

    monkeypatch.setenv("SERPER_API_KEY", "dummy-key-for-test")
    args = RunArgs(
        query="q",
        crawler=tiny_checkpoint,
        selector=tiny_checkpoint,
        device="cpu",
        no_cache=True,
        cache_dir=str(tmp_path),
    )
    agent = build_agent(args, AgentConfig())
    assert isinstance(agent.source, CompositePaperSource)
    assert agent.source.searcher.http.config.cache is False
    assert not any(tmp_path.iterdir())  # no cache file created
