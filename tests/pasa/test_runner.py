import json
import logging
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pasa.agent import AgentConfig, AgentEvent, PaperAgent
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
    assert end_date_from_published("2024-03-01") == end_date_from_published("2024-03-01T10:00:00Z") == "20240223"
    assert end_date_from_published(20240110) == "20240103"
    assert end_date_from_published(None) is None and end_date_from_published("") is None
    for bad in ("March 2024", "20241301", "2024-1-10"):
        with pytest.raises(ValueError):
            end_date_from_published(bad)


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
        "--output_dir",
        str(out),
        "--crawler_path",
        tiny_checkpoint,
        "--selector_path",
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
    # the random tiny crawler replies without an action: counted as a failure, so both trees are degraded
    assert "2 queries from" in printed and "done 2, already on disk 0, failed 0, degraded 2" in printed
    assert main(argv, source=source) == 0
    assert "done 0, already on disk 2, failed 0, degraded 2" in capsys.readouterr().out


def test_cli_requires_exactly_one_input(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "pasa run: error: pass exactly one of --query or --input_file\n"


def test_demo_runs_the_loop(tmp_path, capsys):
    from pasa.demo import demo_main

    assert demo_main(["--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rule-based stand-in" in out and "RANDOM Qwen2" in out
    assert "pasa run --query" in out and "--crawler_path" in out and "pasa download" in out  # a next step that works
    tree = json.loads((tmp_path / "results" / "0.json").read_text())
    assert len(tree["child"]) == 3 and tree["extra"]["touch_ids"]
    assert any(c["child"] for nodes in tree["child"].values() for c in nodes)  # expansion happened


def test_no_cache_flag_reaches_the_online_source(monkeypatch, tmp_path, tiny_checkpoint):
    from pasa.agent import AgentConfig
    from pasa.runner import RunArgs, build_agent
    from pasa.tools.http import HttpConfig
    from pasa.tools.sources import CompositePaperSource

    monkeypatch.setenv("SERPER_API_KEY", "dummy-key-for-test")
    args = RunArgs(query="q", crawler_path=tiny_checkpoint, selector_path=tiny_checkpoint, device="cpu")
    agent = build_agent(args, AgentConfig(), http=HttpConfig(no_cache=True, cache_dir=str(tmp_path)))
    assert isinstance(agent.source, CompositePaperSource)
    assert agent.source.searcher.http.config.no_cache is True
    assert not any(tmp_path.iterdir())  # no cache file created


def test_hf_batching_flags_reach_the_backend(tmp_path, tiny_checkpoint):
    from pasa.agent import AgentConfig
    from pasa.runner import RunArgs, build_agent

    args = RunArgs(
        query="q",
        crawler_path=tiny_checkpoint,
        selector_path=tiny_checkpoint,
        device="cpu",
        batch_size=3,
        max_batch_tokens=777,
        search_index=None,
    )
    agent = build_agent(args, AgentConfig(), source=object())
    assert (agent.crawler.llm.config.batch_size, agent.crawler.llm.config.max_batch_tokens) == (3, 777)


# -- degraded results ---------------------------------------------------------------------------
class DegradedAgent(CountingAgent):
    """Records failed tool calls in ``extra["failures"]`` for the questions in ``degraded``."""

    def __init__(self, degraded=(), **kwargs):
        super().__init__(**kwargs)
        self.degraded = set(degraded)

    def run(self, question, end_date=None, answer=None):
        root = super().run(question, end_date, answer)
        failures = {"search": 0, "lookup": 0, "title": 0, "sections": 0, "crawler_no_action": 0}
        if question in self.degraded:
            failures["lookup"] = 2
        root.extra["failures"] = failures
        return root


def test_degraded_results_are_counted_and_redone_on_request(tmp_path, capsys):
    from pasa.runner import print_summary, summary_line

    results = run_queries(DegradedAgent(degraded={"q1", "q3"}), ITEMS, str(tmp_path), progress=False)
    assert [r.degraded for r in results] == [False, True, False, True]
    assert json.loads((tmp_path / "1.json").read_text())["extra"]["failures"]["lookup"] == 2
    print_summary(results, str(tmp_path))
    printed = capsys.readouterr().out
    assert "done 4, already on disk 0, failed 0, degraded 2" in printed and "lookup 2" in printed

    agent = DegradedAgent()
    results = run_queries(agent, ITEMS, str(tmp_path), progress=False)  # degraded results count as done ...
    assert agent.ran == [] and summary_line(results).startswith("done 0, already on disk 4, failed 0, degraded 2")
    results = run_queries(agent, ITEMS, str(tmp_path), progress=False, redo_degraded=True)  # ... unless asked
    assert agent.ran == ["q1", "q3"] and [r.status for r in results] == ["skipped", "done", "skipped", "done"]
    assert summary_line(results) == "done 2, already on disk 2, failed 0, degraded 0"
    assert json.loads((tmp_path / "1.json").read_text())["extra"]["failures"]["lookup"] == 0


def test_unreadable_result_on_disk_is_computed_again(tmp_path):
    (tmp_path / "0.json").write_text("{trunc")
    agent = CountingAgent()
    run_queries(agent, ITEMS[:1], str(tmp_path), progress=False)
    assert agent.ran == ["q0"] and json.loads((tmp_path / "0.json").read_text())["title"] == "q0"


# -- locks and temporaries ----------------------------------------------------------------------
def test_query_locked_by_a_live_run_is_left_to_it_and_stale_lock_taken_over(tmp_path):
    import subprocess
    import sys

    from pasa.io import ItemLock, this_host

    held = ItemLock(str(tmp_path / "1.json"))
    assert held.acquire()  # "another run" (this process, another lock object) is on query 1
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / "2.json.lock").write_text(json.dumps({"pid": proc.pid, "host": this_host()}))  # killed run
    (tmp_path / f".tmp-{this_host().replace('-', '_')}-{proc.pid}-x3.json").write_text("{")  # killed mid-write
    agent = CountingAgent()
    results = run_queries(agent, ITEMS, str(tmp_path), progress=False)
    assert [r.status for r in results] == ["done", "locked", "done", "done"] and agent.ran == ["q0", "q2", "q3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.json", "1.json.lock", "2.json", "3.json"]
    held.release()


RUN_WORKER = """
import json, os, pathlib, sys, time
sys.path.insert(0, sys.argv[3])
from pasa.runner import QueryItem, run_queries
from tests.pasa.test_runner import CountingAgent

class Slow(CountingAgent):
    def run(self, *args, **kwargs):
        time.sleep(0.05)
        return super().run(*args, **kwargs)

agent = Slow()
items = [QueryItem(i, f"q{i}", None, [f"a{i}"]) for i in range(int(sys.argv[2]))]
barrier = pathlib.Path(sys.argv[1]).parent  # start together: both imported, then both run
(barrier / f"ready-{os.getpid()}").touch()
while len(list(barrier.glob("ready-*"))) < 2:
    time.sleep(0.01)
run_queries(agent, items, sys.argv[1], progress=False)
print(json.dumps(agent.ran))
"""


def test_two_runs_on_one_folder_split_the_queries(tmp_path):
    """Two `pasa run` processes on one output folder: every query is computed exactly once."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd = [sys.executable, "-c", RUN_WORKER, str(tmp_path / "out"), "12", root]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root) for _ in range(2)]
    ran = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(ran[0] + ran[1]) == sorted(f"q{i}" for i in range(12))  # no query twice, none lost
    assert ran[0] and ran[1]  # both did some work
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{i}.json" for i in range(12))


# -- a batch that keeps failing the same way stops ---------------------------------------------
def test_batch_stops_after_consecutive_identical_failures(tmp_path, caplog):
    from pasa.runner import summary_line

    items = [QueryItem(i, f"q{i}") for i in range(10)]
    agent = CountingAgent(fail={f"q{i}" for i in range(1, 10)})
    with caplog.at_level(logging.ERROR):
        results = run_queries(agent, items, str(tmp_path), progress=False, max_consecutive_failures=3)
    assert agent.ran == ["q0", "q1", "q2", "q3"] and [r.status for r in results] == ["done"] + ["failed"] * 3
    assert "stopping the batch: the last 3 queries failed with the same error (RuntimeError" in caplog.text
    assert "Traceback" not in caplog.text
    assert summary_line(results, total=10).endswith("not run 6 (batch stopped)")


# -- command line: flags, checks before any work, progress --------------------------------------------------------
def run_cli(argv, capsys, source=None):
    """(exit status, stdout, stderr) of ``pasa run argv``."""
    try:
        code = main(argv, source=source)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--crawler_path", "checkpoints/pasa-7b-crawler"], "checkpoint not found: checkpoints/pasa-7b-crawler"),
        (["--selector_path", "ftp://host/m"], "--selector_path 'ftp://host/m': ftp:// is not supported"),
        (["--selector_path", "{q}"], "is a file; pass the checkpoint folder"),
        (["--selector_path", "{tmp}"], "is not a model checkpoint: no config.json"),
        (["--expand_layers", "-3"], "--expand_layers must be between 0 and 20, got -3"),
        (["--search_papers", "-5"], "--search_papers must be between 1 and 100, got -5"),
        (["--expand_layers", "1000000000"], "--expand_layers must be between 0 and 20, got 1000000000"),
        (["--selector_endpoint", "chatty"], "--selector_endpoint must be one of completions, chat, not 'chatty'"),
        (["--output_dir", "{q}"], "is a file; pass a folder"),
        (["--output_dir", "{q}/sub"], "is not writable"),
        (["--search_index", "{tmp}/no-index"], "does not exist; build it with `pasa index"),
        (["--serch_index", "{tmp}/no-index"], "unrecognized argument --serch_index; did you mean --search_index?"),
        (["--crawler", "c"], "unrecognized argument --crawler; did you mean --crawler_path?"),
        (["--end_date", "2024-01-01"], "--end_date must be YYYYMMDD"),
        (["--gguf_file", "model.Q4_1.gguf"], "holds no 'model.Q4_1.gguf' (--gguf_file); it holds no .gguf file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, tiny_checkpoint, capsys, extra, message):
    q = write_jsonl(tmp_path / "q.jsonl", [json.dumps(GOOD)])
    base = ["--query", "q", "--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint]
    base += ["--output_dir", str(tmp_path / "out")]
    argv = base + [a.format(q=q, tmp=tmp_path) for a in extra]
    code, out, err = run_cli(argv, capsys, source=InMemoryPaperSource([]))
    assert code == 2
    lines = err.splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("pasa run: error: ") and message.format(q=q, tmp=tmp_path) in lines[0]
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing computed


def test_input_file_folder_and_non_utf8_line(tmp_path, tiny_checkpoint, capsys, caplog):
    models = ["--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint]
    code, _, err = run_cli(["--input_file", str(tmp_path)] + models, capsys)
    assert code == 2 and "is a folder; pass a .jsonl file" in err
    path = tmp_path / "q.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"question": "caf\xe9"}\n' + json.dumps(GOOD).encode() + b"\n")
    with caplog.at_level(logging.WARNING):
        assert [i.index for i in load_queries(str(path))] == [0, 2]
    assert "q.jsonl:2: not UTF-8 (byte 0xe9" in caplog.text


def test_unreachable_model_server_stops_before_the_batch(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    code, _, err = run_cli(["--query", "q", "--crawler_path", url, "--selector_path", url], capsys)
    assert code == 1 and err.count("\n") == 1 and "cannot reach the model server of --crawler_path" in err


def test_released_flag_names_only_in_the_released_entry_point(capsys, caplog):
    """run_paper_agent.py takes the released spelling (--output_folder); `pasa run` names its own flag."""
    from pasa.runner import parse_args
    from run_paper_agent import RELEASED_FLAGS

    argv = ["--query", "q", "--crawler_path", "c", "--selector_path", "s", "--output_folder", "o"]
    with caplog.at_level(logging.WARNING):
        args, config, _ = parse_args(argv + ["--released_behaviour"], "run_paper_agent.py", RELEASED_FLAGS)
    assert (args.crawler_path, args.selector_path, args.output_dir) == ("c", "s", "o")
    assert config.released_behaviour is True and caplog.text == ""
    args, _, _ = parse_args(argv[:-2] + ["--output_dir", "o2"], "run_paper_agent.py", RELEASED_FLAGS)
    assert args.output_dir == "o2"
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "pasa run: error: unrecognized argument --output_folder; did you mean --output_dir?\n"
    )


def test_help_names_the_command_and_shows_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: pasa run") and "example:\n  pasa run --query" in help_text
    assert "(default: " not in help_text.replace("(default: none)", "") or help_text.count("default: ") < 200
    for line in help_text.splitlines():
        assert line.count("default") <= 1, line


def test_single_query_shows_its_stages(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    """`pasa run --query` prints the stages' counts (stderr) before the top papers (stdout)."""
    agent = CountingAgent().agent
    monkeypatch.setattr("pasa.runner.build_agent", lambda *args, **kwargs: agent)
    argv = ["--query", "q", "--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint]
    code, out, err = run_cli(argv + ["--output_dir", str(tmp_path), "--log_level", "ERROR"], capsys, agent.source)
    assert code == 0 and "Top papers" in out
    assert "search: 1 queries, 1 calls -> 1 ids, 1 lookups; selector 1 scored, 1 selected" in err


def test_stage_progress_counts_a_scripted_run():
    from pasa.progress import StageProgress

    replies = {"A title": "[Expand] Intro\n[StopExpand]"}
    crawler = Crawler(ScriptedLLM(replies=replies, default_reply="[Search] s\n[StopSearch]"))
    papers = [paper("2401.00001", "A title", sections={"Intro": ["Cited"]}), paper("2401.00002", "Cited")]
    source = InMemoryPaperSource(papers, {"s": ["2401.00001"]})
    agent = PaperAgent(crawler, Selector(ScriptedLLM(default_score=0.9)), source, AgentConfig(expand_layers=1))
    lines = []
    progress = StageProgress(write=lines.append)
    root = agent.run("q", on_event=progress.on_event)
    progress.finish()
    assert root.extra["crawler_recall_papers"] == ["A title", "Cited"]
    assert [line.split("] ", 1)[1] for line in lines[-1].splitlines()] == [
        "search: 1 queries, 1 calls -> 1 ids, 1 lookups; selector 1 scored, 1 selected",
        "layer 1: 0 sections fetched, crawler 1 papers -> 1 sections, 1 lookups -> 1 found; selector 1 scored, "
        "1 selected",
    ]


def test_damaged_index_and_missing_title_index_are_one_line(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "bad-index").mkdir()
    (tmp_path / "bad-index" / "manifest.json").write_text('{"format": ')
    base = ["--query", "q", "--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint]
    base += ["--output_dir", str(tmp_path / "out")]
    code, _, err = run_cli(base + ["--search_index", str(tmp_path / "bad-index")], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("pasa run: error: ") and "bad-index" in err
    code, _, err = run_cli(base + ["--title_index", str(tmp_path / "none")], capsys)
    assert code == 2 and "--title_index" in err and "does not exist" in err


def test_result_of_another_query_is_never_overwritten(tmp_path, caplog):
    run_queries(CountingAgent(), ITEMS[:1], str(tmp_path), progress=False)
    before = (tmp_path / "0.json").read_text()
    agent = CountingAgent()
    results = run_queries(agent, [QueryItem(0, "another question")], str(tmp_path), progress=False)
    assert (
        agent.ran == []
        and results[0].status == "failed"
        and "holds the result of another query ('q0')" in (results[0].error)
    )
    assert (tmp_path / "0.json").read_text() == before


def test_failure_signature_ignores_object_addresses():
    from pasa.batch import failure_signature as _failure_signature

    first = ConnectionError("<urllib3.connection.HTTPConnection object at 0x7f3a2c1d>: Failed to establish")
    second = ConnectionError("<urllib3.connection.HTTPConnection object at 0x7f99aa00>: Failed to establish")
    assert _failure_signature(first) == _failure_signature(second) != _failure_signature(RuntimeError("x"))


def test_redo_keeps_the_less_degraded_result_and_write_errors_fail_the_query(tmp_path, monkeypatch):
    run_queries(DegradedAgent(degraded={"q0"}), ITEMS[:1], str(tmp_path), progress=False)

    class Worse(DegradedAgent):
        def run(self, question, end_date=None, answer=None):
            root = super().run(question, end_date, answer)
            root.extra["failures"]["search"] = 5
            return root

    results = run_queries(Worse(), ITEMS[:1], str(tmp_path), progress=False, redo_degraded=True)
    assert results[0].status == "skipped" and results[0].failures["lookup"] == 2
    assert json.loads((tmp_path / "0.json").read_text())["extra"]["failures"]["search"] == 0

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pasa.batch.write_text_atomic", full_disk)
    results = run_queries(CountingAgent(), ITEMS[1:], str(tmp_path), progress=False, max_consecutive_failures=2)
    assert [r.status for r in results] == ["failed", "failed"] and "No space left" in results[0].error
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())  # locks released


def test_paper_db_at_the_default_location_is_used(tmp_path, monkeypatch):
    """As the released utils.py (and where `pasa download` puts it): data/paper_database/{cs_paper_2nd.zip,...}."""
    from pasa.runner import BatchArgs, build_source
    from pasa.tools.paper_db import build_paper_db

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="no paper source"):
        build_source(BatchArgs(query="q"))
    papers = [paper("2401.00001", "A title", sections={})]
    build_paper_db(papers, "data/paper_database/cs_paper_2nd.zip", "data/paper_database/id2paper.json")
    source = build_source(BatchArgs(query="q"))
    assert source.get_by_id("2401.00001").title == "A title"


def test_stage_progress_places_calls_in_their_layer():
    """Two layers: the search paper cites B (layer 1), B cites C (layer 2); B's sections are fetched."""
    from pasa.progress import StageProgress

    class FetchOnly(InMemoryPaperSource):  # B's record has no sections: the agent fetches them
        def get_by_title(self, title):
            found = super().get_by_title(title)
            return paper(found.arxiv_id, found.title) if found is not None and found.title == "Bee" else found

    replies = {"A title": "[Expand] Intro\n[StopExpand]", "Bee": "[Expand] Method\n[StopExpand]"}
    crawler = Crawler(ScriptedLLM(replies=replies, default_reply="[Search] s\n[StopSearch]"))
    papers = [
        paper("2401.00001", "A title", sections={"Intro": ["Bee"]}),
        paper("2401.00002", "Bee", sections={"Method": ["Sea"]}),
        paper("2401.00003", "Sea"),
    ]
    source = FetchOnly(papers, {"s": ["2401.00001"]})
    agent = PaperAgent(crawler, Selector(ScriptedLLM(default_score=0.9)), source, AgentConfig(expand_layers=2))
    lines = []
    progress = StageProgress(write=lines.append)
    root = agent.run("q", on_event=progress.on_event)
    progress.finish()
    assert root.extra["crawler_recall_papers"] == ["A title", "Bee", "Sea"]
    assert [line.split("] ", 1)[1] for line in lines[-1].splitlines()] == [
        "search: 1 queries, 1 calls -> 1 ids, 1 lookups; selector 1 scored, 1 selected",
        "layer 1: 0 sections fetched, crawler 1 papers -> 1 sections, 1 lookups -> 1 found; selector 1 scored, "
        "1 selected",
        "layer 2: 1 sections fetched, crawler 1 papers -> 1 sections, 1 lookups -> 1 found; selector 1 scored, "
        "1 selected",
    ]


# -- one query, persisted -------------------------------------------------------------------------------------------
class EventAgent(CountingAgent):
    """Reports events through ``on_event`` and records the citation counts on the root, as the agent does."""

    def __init__(self, lock_seen=None, **kwargs):
        super().__init__(**kwargs)
        self.lock_seen = lock_seen

    def run(self, question, end_date=None, answer=None, seed_papers=None, on_event=None):
        if self.lock_seen is not None:
            self.lock_seen.append(any(p.name.endswith(".lock") for p in self.folder.iterdir()))
        root = super().run(question, end_date, answer)
        for kind, layer, count in (("queries", 0, 1), ("search", 0, 1), ("ids", 0, 1), ("scored", 0, 1)):
            if on_event is not None:
                on_event(AgentEvent(kind, layer, count))
        root.extra["citations"] = {"by_id": 2, "by_title": 3, "not_found": 1, "failed": 0}
        root.extra["seeds"] = seed_papers
        return root


def _event_agent(tmp_path, lock_seen=None):
    agent = EventAgent(lock_seen)
    agent.folder = tmp_path
    return agent


def test_run_query_runs_under_the_lock_and_writes_the_tree(tmp_path):
    from pasa.progress import StageProgress
    from pasa.runner import run_query

    seen = []
    progress = StageProgress(write=lambda text: None)
    item = QueryItem(3, "q3", "20240101", ["a"], seed_papers=["2401.00001"])
    result = run_query(_event_agent(tmp_path, seen), item, str(tmp_path), on_event=progress.on_event)
    assert result.status == "done" and seen == [True]  # the lock file existed while the agent ran
    tree = json.loads((tmp_path / "3.json").read_text())
    assert tree["title"] == "q3" and tree["extra"]["seeds"] == ["2401.00001"]
    assert result.citations == {"by_id": 2, "by_title": 3, "not_found": 1, "failed": 0}
    assert progress.counts[(0, "queries")] == 1 and progress.counts[(0, "scored")] == 1
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())
    again = run_query(_event_agent(tmp_path, seen), item, str(tmp_path))
    assert again.status == "skipped" and again.citations == result.citations and seen == [True]


def test_summary_prints_citation_counts_per_query_and_in_total(tmp_path, capsys):
    from pasa.runner import QueryResult, print_summary

    results = run_queries(_event_agent(tmp_path), ITEMS[:2], str(tmp_path), progress=False)
    print_summary(results, str(tmp_path))
    printed = capsys.readouterr().out
    assert printed.count("2 by id, 3 by title, 1 not found, 0 failed") == 2  # one row per query
    assert "cited papers resolved: 4 by id, 6 by title, 2 not found, 0 failed" in printed  # the total
    print_summary([QueryResult(ITEMS[2], "done")], str(tmp_path))
    assert "citations" not in capsys.readouterr().out  # trees without the counts: no column


def test_progress_comes_from_the_agents_events_when_it_reports_them(tmp_path, capsys):
    from pasa.runner import run_with_progress

    agent = _event_agent(tmp_path)
    run_with_progress(agent, ITEMS[0], str(tmp_path))
    assert "search: 1 queries, 1 calls -> 1 ids, 0 lookups; selector 1 scored, 0 selected" in capsys.readouterr().err


# -- one-off queries and bad query files -------------------------------------------------------------------------
def test_one_off_queries_get_a_folder_each(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from pasa.runner import default_output_dir

    monkeypatch.chdir(tmp_path)
    agent = CountingAgent().agent
    monkeypatch.setattr("pasa.runner.build_agent", lambda *args, **kwargs: agent)
    models = ["--crawler_path", tiny_checkpoint, "--selector_path", tiny_checkpoint, "--log_level", "ERROR"]
    for question in ("first question", "second question"):
        code, out, _ = run_cli(["--query", question] + models, capsys, agent.source)
        assert code == 0, out
        folder = default_output_dir(question)
        assert json.loads((tmp_path / folder / "0.json").read_text())["title"] == question
        assert f"result tree: {folder}/0.json" in out
    assert default_output_dir("first question") != default_output_dir("first question", "20240101")
    assert default_output_dir(None) == "results"


def test_a_folder_holding_other_queries_stops_before_loading_models(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    (tmp_path / "0.json").write_text(json.dumps({"title": "another query", "child": {}}))

    def load_models(*args, **kwargs):
        raise AssertionError("models loaded")

    monkeypatch.setattr("pasa.runner.build_agent", load_models)
    argv = ["--query", "q", "--output_dir", str(tmp_path), "--crawler_path", tiny_checkpoint]
    code, _, err = run_cli(argv + ["--selector_path", tiny_checkpoint], capsys, InMemoryPaperSource([]))
    assert code == 2 and err.count("\n") == 1 and "holds the result of another query ('another query')" in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("question,answer\nwhat is RAG,T1\nwhat is RL,T2\n", "is not JSONL: its first line is 'question,answer'"),
        ("", "is empty; write one JSON object per line"),
        ('{"answer": ["x"]}\n{not json\n', "has no usable query: 1 malformed lines, 1 missing a required field"),
    ],
)
def test_bad_query_files_are_one_line(tmp_path, tiny_checkpoint, capsys, caplog, content, message):
    path = tmp_path / "q.csv"
    path.write_text(content)
    argv = ["--input_file", str(path), "--output_dir", str(tmp_path / "out"), "--crawler_path", tiny_checkpoint]
    code, out, err = run_cli(argv + ["--selector_path", tiny_checkpoint], capsys, InMemoryPaperSource([]))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    if "JSONL" in message:
        assert "JSONL expected" in err and "malformed JSON" not in caplog.text  # said once, not once per line
    if "usable" in message:
        assert "warnings above" in err and "malformed JSON" in caplog.text  # and the warnings are there


# -- a search service that cannot work -----------------------------------------------------------------------------
class _Serper(BaseHTTPRequestHandler):
    status = 403

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"message": "Unauthorized."}')

    def log_message(self, *args):
        pass


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("service", ["rejects the key", "unreachable"])
def test_search_service_that_cannot_work_is_one_line_before_models(
    service, tmp_path, tiny_checkpoint, capsys, monkeypatch
):
    import threading

    def load_models(*args, **kwargs):
        raise AssertionError("models loaded")

    monkeypatch.setattr("pasa.runner.build_agent", load_models)
    monkeypatch.setenv("SERPER_API_KEY", "garbage")
    server = HTTPServer(("127.0.0.1", 0), _Serper)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port if service == "rejects the key" else _closed_port()
    try:
        argv = ["--query", "q", "--output_dir", str(tmp_path), "--online", "true", "--no_cache"]
        argv += ["--serper_url", f"http://127.0.0.1:{port}/search", "--crawler_path", tiny_checkpoint]
        code, _, err = run_cli(argv + ["--selector_path", tiny_checkpoint], capsys)
    finally:
        server.shutdown()
    assert code == 1 and err.count("\n") == 1, err
    if service == "rejects the key":
        assert "127.0.0.1 rejected the key in SERPER_API_KEY (HTTP 403)" in err
    else:
        assert "cannot reach 127.0.0.1 (ConnectionError)" in err


def test_every_search_failing_exits_non_zero(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    class NoSearch(CountingAgent):
        def run(self, question, end_date=None, answer=None):
            from pasa.paper import PaperNode

            root = PaperNode(title=question)
            root.extra.update(failures={"search": 5}, crawler_recall_papers=[], recall_papers=[])
            return root

    agent = NoSearch()
    monkeypatch.setattr("pasa.runner.build_agent", lambda *args, **kwargs: agent)
    argv = ["--query", "q", "--output_dir", str(tmp_path), "--crawler_path", tiny_checkpoint, "--progress", "false"]
    code, out, _ = run_cli(argv + ["--selector_path", tiny_checkpoint], capsys, agent.agent.source)
    assert code == 1 and "every search failed" in out


def test_one_query_reader_for_inference_and_training(tmp_path, caplog):
    from collections import Counter

    from pasa.queries import describe_skipped

    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            json.dumps({"question": "with dashes", "answer": ["T"], "source_meta": {"published_time": "2024-01-10"}}),
            json.dumps({"question": "no answer"}),
            json.dumps({"question": "bad date", "answer": [], "source_meta": {"published_time": "soon"}}),
        ],
    )
    assert [(i.question, i.end_date) for i in load_queries(path)] == [("with dashes", "20240103"), ("no answer", None)]
    skipped = Counter()
    training = load_queries(path, require_answer=True, offset_days=1, skipped=skipped)
    assert [(i.question, i.end_date) for i in training] == [("with dashes", "20240109")]
    assert describe_skipped(skipped) == "1 missing a required field, 1 with a bad published_time"
