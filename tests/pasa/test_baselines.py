"""Baselines: Google and Google + LLM paraphrase as ranked lists, PaSa on an OpenAI-compatible server; all write
released-format trees that `pasa eval` scores. Fake sources and loopback servers only."""

from __future__ import annotations

import json

import pytest

from pasa.baselines import (
    PARAPHRASE_PROMPT,
    GoogleBaseline,
    GoogleBaselineConfig,
    build_ranked_tree,
    main,
    parse_paraphrase,
    rank_score,
)
from pasa.cli import main as cli_main
from pasa.metrics import evaluate_tree
from tests.fakes import InMemoryPaperSource, OpenAIStub, ScriptedLLM, openai_server, paper


class RecordingSource(InMemoryPaperSource):
    """Scripted Google results, returned whatever the end date (Google's ``before:`` is approximate); records
    every search call."""

    def __init__(self, papers, search_results):
        super().__init__(papers, search_results)
        self.searches: list[tuple[str, int, str | None]] = []

    def search(self, query, k, end_date=None):
        self.searches.append((query, k, end_date))
        return self.search_results.get(query, [])[:k]


PAPERS = [paper(f"2301.0000{i}", f"Paper {'ABCDEFGH'[i]}", published="20230105") for i in range(8)]
LATE = paper("2312.00001", "Late Paper", published="20231220")


def source(results=None):
    ranked = ["2301.00003v2", "2301.00001", "arXiv:2301.00003", "9999.99999", "2312.00001", "2301.00005"]
    return RecordingSource(PAPERS + [LATE], results or {"find alpha": ranked, "alpha beta": ["2301.00002"]})


@pytest.mark.parametrize(
    "reply, query",
    [
        ("sparse attention for long context", "sparse attention for long context"),
        ('Search query: "sparse attention" long context site:arxiv.org', "sparse attention long context"),
        ("**Query:** graph neural networks before:2023-01-01\nExplanation: ...", "graph neural networks"),
        ("\n\n  `diffusion models`  \n", "diffusion models"),
        ("", None),
        ('  ""  ', None),
    ],
)
def test_parse_paraphrase(reply, query):
    assert parse_paraphrase(reply) == query


def test_paraphrase_prompt_has_the_query():
    assert PARAPHRASE_PROMPT.format(user_query="QQQ").endswith("Request: QQQ")


def test_rank_scores_never_selected_and_decreasing():
    scores = [rank_score(r, 7) for r in range(7)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 7
    assert max(scores) == 0.5 and min(scores) > 0


def test_ranked_tree_is_scored_by_rank_with_no_selection():
    papers = [paper(f"2301.{i:05d}", f"Title {chr(97 + i // 26)}{chr(97 + i % 26)}") for i in range(30)]
    tree = build_ranked_tree("q", "q", papers, answer=["Title ab", "Title bd", "Absent"], extra={"method": "google"})
    d = tree.to_dict()
    assert list(d["child"]) == ["q"] and len(d["child"]["q"]) == 30
    assert d["extra"]["has_selector"] is False and d["extra"]["recall_papers"] == []
    m = evaluate_tree(d)
    assert m.recall_at_20 == pytest.approx(1 / 3)  # "Title ab" at rank 1; "Title bd" at rank 29
    assert m.recall_at_50 == pytest.approx(2 / 3)
    assert (m.precision, m.recall, m.num_selected, m.actions) == (0.0, 0.0, 0, 1)
    assert m.has_selector is False


def test_google_baseline_tree():
    src = source()
    root = GoogleBaseline(src, GoogleBaselineConfig(num_results=100)).run("find alpha", "20230110", ["Paper D"])
    assert src.searches == [("find alpha", 100, "20230110")]
    nodes = root.child["find alpha"]
    # duplicates (version suffix, arXiv: prefix) collapse in rank order; unresolved and too-late ids dropped
    assert [n.arxiv_id for n in nodes] == ["2301.00003", "2301.00001", "2301.00005"]
    assert [n.select_score for n in nodes] == [0.5, pytest.approx(1 / 3), pytest.approx(1 / 6)]
    assert root.extra["unresolved_ids"] == ["9999.99999"]
    assert root.extra["method"] == "google" and root.extra["answer"] == ["Paper D"]
    assert root.extra["crawler_recall_papers"] == ["Paper D", "Paper B", "Paper F"]
    assert evaluate_tree(root).recall_at_20 == 1.0


def test_google_baseline_keeps_late_papers_when_asked():
    root = GoogleBaseline(source(), GoogleBaselineConfig(filter_by_end_date=False)).run("find alpha", "20230110")
    assert "2312.00001" in [n.arxiv_id for n in root.child["find alpha"]]


def test_google_llm_searches_the_paraphrase():
    src = source()
    llm = ScriptedLLM(reply_fn=lambda p: 'Query: "alpha beta" site:arxiv.org')
    root = GoogleBaseline(src, paraphraser=llm).run("Give me papers about alpha", None)
    assert src.searches == [("alpha beta", 100, None)]
    assert llm.calls == [("generate", [PARAPHRASE_PROMPT.format(user_query="Give me papers about alpha")])]
    assert list(root.child) == ["alpha beta"] and root.extra["method"] == "google-llm"
    assert root.extra["search_query"] == "alpha beta"


def test_google_llm_empty_reply_falls_back_to_the_query():
    src = source()
    root = GoogleBaseline(src, paraphraser=ScriptedLLM(default_reply="\n")).run("find alpha", None)
    assert src.searches[0][0] == "find alpha" and root.extra["paraphrase_failed"] is True


def write_queries(path):
    lines = [
        {"question": "find alpha", "answer": ["Paper D", "Paper Z"], "source_meta": {"published_time": "20230117"}},
        "{broken",
        {"question": "alpha beta", "answer": ["Paper C"], "source_meta": {"published_time": "20230301"}},
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def test_cli_google_batch_resume_and_eval(tmp_path, capsys):
    queries, out = tmp_path / "test.jsonl", tmp_path / "google"
    write_queries(queries)
    src = source()
    assert main(["google", "--input_file", str(queries), "--output_dir", str(out), "--num_results", "10"], src) == 0
    # line index naming (the broken line 2 is skipped but keeps its index); end date = published_time - 7 days
    assert sorted(p.name for p in out.iterdir()) == ["0.json", "2.json"]
    assert src.searches == [("find alpha", 10, "20230110"), ("alpha beta", 10, "20230222")]
    tree = json.loads((out / "0.json").read_text())
    assert tree["extra"]["answer"] == ["Paper D", "Paper Z"] and tree["extra"]["has_selector"] is False
    # resume: nothing is searched again
    assert main(["google", "--input_file", str(queries), "--output_dir", str(out)], src) == 0
    assert len(src.searches) == 2
    capsys.readouterr()
    assert cli_main(["eval", str(out), "--format", "latex"]) == 0
    # recall@k: query 0 finds D of {D, Z} (0.5), query 2 finds C (1); no selector: "-" in CR, P, R
    assert capsys.readouterr().out.startswith("- & - & - & 0.75 & 0.75 & 0.75\n")


def test_cli_google_llm_with_injected_llm(tmp_path):
    out = tmp_path / "gl"
    llm = ScriptedLLM(reply_fn=lambda p: "alpha beta")
    assert main(["google-llm", "--query", "papers on alpha", "--output_dir", str(out)], source(), llm) == 0
    tree = json.loads((out / "0.json").read_text())
    assert list(tree["child"]) == ["alpha beta"] and tree["child"]["alpha beta"][0]["title"] == "Paper C"


def test_cli_google_llm_needs_a_model(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["google-llm", "--query", "q", "--output_dir", str(tmp_path)], source())
    assert err.value.code == 2


def test_cli_usage_and_unknown(capsys):
    assert main([]) == 0 and "google-llm" in capsys.readouterr().out
    assert cli_main(["baseline", "bing"]) == 2
    assert "unknown baseline 'bing'" in capsys.readouterr().err


def test_cli_pasa_llm_on_a_loopback_server(tmp_path):
    """PaSa-GPT-4o: the PaSa loop with both agents behind one OpenAI-compatible server (chat selector)."""
    stub = OpenAIStub(
        reply=lambda p: "[Search] alpha beta\n[StopSearch]" if "User Query" in p else "[StopExpand]",
        true_prob=lambda p: 0.9 if "Title: Paper C" in p else 0.2,
        model="gpt-4o",
    )
    out = tmp_path / "pasa_llm"
    with openai_server(stub) as url:
        argv = ["pasa-llm", "--llm", f"{url}#gpt-4o", "--query", "papers on alpha", "--output_dir", str(out)]
        assert main(argv, source()) == 0
    tree = json.loads((out / "0.json").read_text())
    assert tree["extra"]["method"] == "pasa-llm" and tree["extra"]["model"] == "gpt-4o"
    assert tree["extra"]["recall_papers"] == ["Paper C"]
    # the selector went through /chat/completions with logprobs (OpenAI models have no /completions)
    assert any(path == "/v1/chat/completions" and body.get("logprobs") for path, body in stub.requests)
    assert evaluate_tree(tree, answers=["Paper C"]).precision == 1.0


def test_cli_pasa_llm_rejects_local_checkpoints(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["pasa-llm", "--llm", "checkpoints/pasa-7b", "--query", "q", "--output_dir", str(tmp_path)], source())
    assert err.value.code == 2


def test_cli_baseline_bad_input_is_one_line_before_any_search(tmp_path, capsys):
    src = source()
    with pytest.raises(SystemExit) as err:
        main(["google", "--input_file", str(tmp_path), "--output_dir", str(tmp_path / "out")], src)
    assert err.value.code == 2 and src.searches == []
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pasa baseline google: error:") and "--input_file" in lines[0]


def test_cli_baseline_redoes_degraded_results_on_request(tmp_path):
    out = tmp_path / "google"
    src = source()
    assert main(["google", "--query", "find alpha", "--output_dir", str(out)], src) == 0
    tree = json.loads((out / "0.json").read_text())
    tree["extra"]["failures"] = {"search": 1, "lookup": 0, "title": 0, "sections": 0, "crawler_no_action": 0}
    (out / "0.json").write_text(json.dumps(tree))
    assert main(["google", "--query", "find alpha", "--output_dir", str(out)], src) == 0
    assert len(src.searches) == 1  # degraded but on disk: kept without the flag
    assert main(["google", "--query", "find alpha", "--output_dir", str(out), "--redo_degraded"], src) == 0
    assert len(src.searches) == 2
    assert not json.loads((out / "0.json").read_text())["extra"].get("failures", {}).get("search")


# -- checks before any query, named by the flags the user gave ---------------------------------------------------------
def _refused_url() -> str:
    import socket

    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1#gpt-4o"


def test_google_llm_with_an_unreachable_llm_stops_in_one_line_before_searching(tmp_path, capsys):
    import time

    src = source()
    start = time.monotonic()
    with pytest.raises(SystemExit) as err:
        main(["google-llm", "--llm", _refused_url(), "--query", "q", "--output_dir", str(tmp_path / "o")], src)
    assert err.value.code == 1 and time.monotonic() - start < 5 and src.searches == []
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--llm" in lines[0] and "cannot reach" in lines[0]
    assert not (tmp_path / "o" / "0.json").exists()


def test_pasa_llm_names_the_llm_flag(tmp_path, capsys, tiny_artifacts):
    argv = ["pasa-llm", "--llm", _refused_url(), "--query", "q", "--output_dir", str(tmp_path / "o")]
    argv += ["--search_index", str(tiny_artifacts / "data/paper_database/search_index"), "--online", "false"]
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--llm" in lines[0] and "--crawler_path" not in lines[0]


def test_google_without_a_key_stops_and_offline_is_named_for_what_ran(tmp_path, capsys, monkeypatch, tiny_artifacts):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    out = tmp_path / "google"
    with pytest.raises(SystemExit) as err:
        main(["google", "--query", "alpha", "--output_dir", str(out)])
    assert err.value.code == 2 and not out.exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SERPER_API_KEY is not set" in lines[0] and "--online false" in lines[0]

    index = str(tiny_artifacts / "data/paper_database/search_index")
    argv = ["google", "--query", "graph attention", "--output_dir", str(out), "--online", "false"]
    assert main([*argv, "--search_index", index]) == 0
    assert "offline search, not Google" in capsys.readouterr().out
    assert json.loads((out / "0.json").read_text())["extra"]["method"] == "offline"
