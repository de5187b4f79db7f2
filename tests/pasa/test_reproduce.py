"""`pasa reproduce` offline on the tiny artifacts: estimate, runs (resumable), table beside the paper's numbers."""

import pytest

from pasa import reproduce
from pasa.tiny import SPLITS


def test_table_puts_this_run_beside_the_paper_with_differences():
    summary = {"num_queries": 3, "crawler_recall": 0.75, "precision": 0.5, "recall": 0.6, "recall_at_100": 0.7,
               "recall_at_50": 0.65, "recall_at_20": 0.5}  # fmt: skip
    table = reproduce.format_table({"real": {"PaSa-7B": summary, "PaSa-7B-ensemble": None}}, ["a note"])
    lines = table.splitlines()
    assert "| RealScholarQuery | PaSa-7B (paper) | 50 | 0.7071 | 0.5146 | 0.6111 | 0.6929 | 0.6563 | 0.5798 |" in lines
    assert (
        "| RealScholarQuery | PaSa-7B (this run) | 3 | 0.7500 | 0.5000 | 0.6000 | 0.7000 | 0.6500 | 0.5000 |" in lines
    )
    assert "| RealScholarQuery | difference | | +0.0429 | -0.0146 | -0.0111 | +0.0071 | -0.0063 | -0.0798 |" in lines
    assert "| RealScholarQuery | PaSa-7B-ensemble (this run) | - | - | - | - | - | - | - |" in lines
    assert lines[-1] == "- a note"


def test_estimate_counts_queries_left_and_serper_calls(tiny_artifacts, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    assert reproduce.main(["--dry_run", "--output_dir", str(tmp_path), "--search_queries", "4"]) == 0
    out = capsys.readouterr().out
    n_real, n_auto = len(SPLITS["RealScholarQuery/test.jsonl"]), len(SPLITS["AutoScholarQuery/test.jsonl"])
    assert f"real/run1: {n_real} of {n_real} queries to run" in out and f"auto/run2: {n_auto} of {n_auto}" in out
    assert f"estimated Serper calls: up to {2 * (n_real + n_auto) * 4}" in out
    assert "estimated time:" in out
    assert not (tmp_path / "real").exists()  # a dry run runs nothing


def test_offline_run_writes_the_table_and_resumes(tiny_artifacts, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    argv = ["--limit", "1", "--benchmarks", "real", "--output_dir", str(tmp_path),
            "--search_index", "data/paper_database/search_index", "--log_level", "WARNING"]  # fmt: skip
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "Serper calls: 0" in out
    assert (tmp_path / "real/run1/0.json").exists() and (tmp_path / "real/run2/0.json").exists()
    table = (tmp_path / "reproduce.md").read_text()
    assert "| RealScholarQuery | PaSa-7B (this run) | 1 |" in table
    assert "| RealScholarQuery | PaSa-7B-ensemble (this run) | 1 |" in table
    assert "| RealScholarQuery | PaSa-7B-ensemble (paper) | 50 | 0.7503 |" in table
    assert "offline search" in table and "--limit 1" in table
    # rerun: nothing left to run, the same table
    assert reproduce.main(argv) == 0
    assert "real/run1: 0 of 1 queries to run" in capsys.readouterr().out
    assert (tmp_path / "reproduce.md").read_text() == table


def test_missing_benchmark_file_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert reproduce.main(["--benchmarks", "real"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pasa download" in err[0]


def test_unknown_benchmark_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        reproduce.main(["--benchmarks", "nope"])
    assert exc.value.code == 2
