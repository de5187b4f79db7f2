"""`pasa reproduce` offline on the tiny artifacts: estimate, runs (resumable, keyed on what produced them), table
beside the paper's numbers."""

import json
import shutil

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
    (run1,) = (tmp_path / "real").glob("run1-*/0.json")
    (run2,) = (tmp_path / "real").glob("run2-*/0.json")
    manifest = json.loads((run1.parent.parent / (run1.parent.name + ".json")).read_text())
    assert manifest["models"]["crawler"]["path"] == "checkpoints/pasa-7b-crawler"
    assert manifest["timing"]["queries"] == 1 and manifest["timing"]["seconds"] > 0
    table = (tmp_path / "reproduce.md").read_text()
    assert "| RealScholarQuery | PaSa-7B (this run) | 1 |" in table
    assert "| RealScholarQuery | PaSa-7B-ensemble (this run) | 1 |" in table
    assert "| RealScholarQuery | PaSa-7B-ensemble (paper) | 50 | 0.7503 |" in table
    assert "offline search" in table and "--limit 1" in table
    assert f"| RealScholarQuery | PaSa-7B | `real/{run1.parent.name}` | `checkpoints/pasa-7b-crawler` (" in table
    assert f"`real/{run1.parent.name}` + `real/{run2.parent.name}`" in table
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


@pytest.mark.parametrize("flag, meant", [("--dryrun", "--dry_run"), ("--crawler_pth", "--crawler_path")])
def test_a_mistyped_flag_of_either_command_stops_before_any_run(flag, meant, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no query files here: the flag is refused before they are looked for
    with pytest.raises(SystemExit) as exc:
        reproduce.main([flag, "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err == [
        f"pasa reproduce: error: unrecognized argument {flag}; did you mean {meant}?"
    ]


def _reproduce_real(argv_models, output_dir, capsys):
    argv = ["--limit", "1", "--benchmarks", "real", "--no_ensemble", "--output_dir", str(output_dir),
            "--search_index", "data/paper_database/search_index", "--log_level", "WARNING", *argv_models]  # fmt: skip
    assert reproduce.main(argv) == 0
    return capsys.readouterr().out


def test_other_models_start_new_runs_and_the_table_names_them(tiny_artifacts, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    out = tmp_path / "out"
    assert "real/run1: 1 of 1 queries to run" in _reproduce_real([], out, capsys)
    assert "real/run1: 0 of 1 queries to run" in _reproduce_real([], out, capsys)

    # the same weights under another path are the same run; changed weights (one byte of config) are a new one
    copies = tmp_path / "models"
    for role in ("crawler", "selector"):
        shutil.copytree(tiny_artifacts / f"checkpoints/pasa-7b-{role}", copies / role)
    moved = ["--crawler_path", str(copies / "crawler"), "--selector_path", str(copies / "selector")]
    assert "real/run1: 0 of 1 queries to run" in _reproduce_real(moved, out, capsys)
    config = copies / "crawler" / "config.json"
    config.write_text(config.read_text().replace("{", '{"trained": true, ', 1))
    printed = _reproduce_real(moved, out, capsys)
    assert "real/run1: 1 of 1 queries to run" in printed
    folders = sorted(p.name for p in (out / "real").glob("run1-*") if p.is_dir())
    assert len(folders) == 2
    table = (out / "reproduce.md").read_text()
    assert f"`{copies / 'crawler'}`" in table and "`checkpoints/pasa-7b-crawler`" not in table

    # a knob that changes trees is a new run too; one that only changes speed is not
    assert "real/run1: 1 of 1 queries to run" in _reproduce_real([*moved, "--expand_layers", "1"], out, capsys)
    assert "real/run1: 0 of 1 queries to run" in _reproduce_real([*moved, "--threads_num", "3"], out, capsys)


def test_estimate_is_scaled_to_tiny_models_then_measured(tiny_artifacts, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    argv = ["--benchmarks", "real", "--no_ensemble", "--output_dir", str(tmp_path), "--limit", "1", "--search_index",
            "data/paper_database/search_index", "--log_level", "WARNING"]  # fmt: skip
    assert reproduce.main([*argv, "--dry_run"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("estimated time:"))
    assert "guess scaled to the models' size" in line and " h " not in line
    seconds = float(line.split("x ~")[1].split(" s")[0])
    assert seconds == reproduce.MIN_SECONDS_PER_QUERY
    assert reproduce.main(argv) == 0
    capsys.readouterr()
    assert reproduce.main([*argv, "--limit", "2", "--dry_run"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("estimated time:"))
    assert "measured on a finished run of these models" in line


def test_a_served_model_is_keyed_by_its_url_and_a_folder_by_its_content(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.json").write_text("{}")
    (tmp_path / "m/model.safetensors").write_bytes(b"a" * 1000)
    before = reproduce.fingerprint_model(str(tmp_path / "m"))
    (tmp_path / "m/model.safetensors").write_bytes(b"a" * 999 + b"b")
    assert reproduce.fingerprint_model(str(tmp_path / "m")) != before
    a = reproduce.fingerprint_model("http://h:8000/v1#pasa-7b-crawler")
    assert a != reproduce.fingerprint_model("http://h:8000/v1#other") and a.startswith("served:")
    assert reproduce.fingerprint_model(str(tmp_path / "absent")) == "missing"


def test_unkeyed_run_folders_are_never_reused(tiny_artifacts, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    (tmp_path / "real/run1").mkdir(parents=True)
    (tmp_path / "real/run1/0.json").write_text("{}")
    argv = ["--limit", "1", "--benchmarks", "real", "--no_ensemble", "--output_dir", str(tmp_path), "--dry_run"]
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "real/run1: 1 of 1 queries to run" in out and "not reused" in out
