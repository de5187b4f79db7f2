"""`pasa eval` on the fixture results folders: printed table, ensemble, JSON summary, reported bad files.

Fixture folders (tests/fixtures/results/), hand-computed per query (run_a):
  0.json  answers A B C D; crawled A X B C Y (+ duplicate "paper a!"); selected A X C     CR .75  P 2/3 R .5  R@k .75
  1.json  answer E; crawled F .4, E .2; nothing selected                                  CR 1    P 0   R 0   R@k 1
  2.json  no answers                                                                      all 0
  3.json  answers Target, Missing; 24 fillers (0.99..0.76, selected) then Target at 0.5   CR .5   P 0   R 0
          -> Target ranked 25th: R@20 0, R@50 = R@100 = .5
  actions 4, 1, 1, 1; score 2.6/7, -0.1/3, 0.9/2, 23.9/26
run_b adds, for the ensemble: 0.json D .6, X .1, Z .95; 1.json E .9 (selected now, ranked with run_a's .2); 2, 3 empty.
"""

from __future__ import annotations

import json
import shutil

import pytest

from pasa.cli import main as cli_main
from pasa.evaluate import evaluate_folder, format_latex, format_markdown, list_result_files

SCORE_A = (2.6 / 7 - 0.1 / 3 + 0.9 / 2 + 23.9 / 26) / 4


@pytest.fixture
def run_a(fixtures_dir):
    return str(fixtures_dir / "results" / "run_a")


@pytest.fixture
def run_b(fixtures_dir):
    return str(fixtures_dir / "results" / "run_b")


def test_evaluate_folder_hand_computed(run_a):
    ev = evaluate_folder(run_a)
    assert [n for n, _ in ev.per_query] == ["0.json", "1.json", "2.json", "3.json"] and ev.skipped == []
    s = ev.summary
    assert s["num_queries"] == 4 and s["num_no_answer"] == 1
    assert s["crawler_recall"] == pytest.approx((0.75 + 1 + 0 + 0.5) / 4)
    assert s["precision"] == pytest.approx((2 / 3) / 4)
    assert s["recall"] == pytest.approx(0.5 / 4)
    assert s["recall_at_100"] == pytest.approx((0.75 + 1 + 0 + 0.5) / 4)
    assert s["recall_at_50"] == pytest.approx((0.75 + 1 + 0 + 0.5) / 4)
    assert s["recall_at_20"] == pytest.approx((0.75 + 1 + 0 + 0) / 4)
    assert s["actions"] == pytest.approx(7 / 4)
    assert s["score"] == pytest.approx(SCORE_A)


def test_evaluate_folder_excluding_no_answer(run_a):
    s = evaluate_folder(run_a, exclude_no_answer=True).summary
    assert s["num_queries"] == 3
    assert s["crawler_recall"] == pytest.approx(2.25 / 3) and s["recall_at_20"] == pytest.approx(1.75 / 3)
    assert s["actions"] == pytest.approx(2.0)


def test_ensemble_hand_computed(run_a, run_b):
    s = evaluate_folder(run_a, run_b).summary
    assert s["crawler_recall"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert s["precision"] == pytest.approx((3 / 5 + 1) / 4)
    assert s["recall"] == pytest.approx((0.75 + 1) / 4)
    assert s["recall_at_20"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert s["actions"] == pytest.approx(7 / 4) and s["score"] == pytest.approx(SCORE_A)  # first run only


def test_cli_prints_table_latex_and_markdown(run_a, capsys):
    assert cli_main(["eval", run_a]) == 0
    out = capsys.readouterr().out
    for header in ("Crawler Recall", "Precision", "Recall@100", "Recall@50", "Recall@20", "Actions / query"):
        assert header in out
    # the released metrics.py lines (its run on this folder prints exactly these)
    assert "0.5625 & 0.1667 & 0.125 & 0.5625 & 0.5625 & 0.4375\n0.5625 & 1.75 & 0.4268 & 0.1667  & 0.125" in out
    assert "| run_a | 0.5625 | 0.1667 | 0.125 | 0.5625 | 0.5625 | 0.4375 | 1.75 | 0.4268 |" in out
    assert "4 queries averaged, 0 files skipped, 1 without answers (counted with 0), 0 degraded" in out


def test_cli_ensemble_and_output_json(run_a, run_b, tmp_path, capsys):
    out_json = tmp_path / "out" / "summary.json"
    argv = ["eval", run_a, "--ensemble", run_b, "--format", "latex", "--output_file", str(out_json)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("0.625 & 0.4 & 0.4375 & 0.625 & 0.625 & 0.5\n0.625 & 1.75 & 0.4268 & 0.4  & 0.4375\n")
    data = json.loads(out_json.read_text())
    assert data["ensemble_dir"] == run_b and data["skipped"] == []
    assert data["summary"]["precision"] == pytest.approx(0.4)
    assert [q["file"] for q in data["per_query"]] == ["0.json", "1.json", "2.json", "3.json"]
    assert data["per_query"][1]["num_selected"] == 1 and data["per_query"][1]["recall"] == 1.0


def test_cli_per_query_table(run_a, capsys):
    assert cli_main(["eval", run_a, "--per_query", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "Per query" in out and "3.json" in out and "0.9192" in out  # 23.9 / 26
    assert " & " not in out  # table only


def test_malformed_files_reported_and_skipped(run_a, tmp_path, capsys):
    folder = tmp_path / "res"
    shutil.copytree(run_a, folder)
    (folder / "5.json").write_text("{not json")
    (folder / "6.json").write_text(json.dumps({"title": "q", "child": {}, "extra": {}}))  # no answer
    (folder / "7.json").write_text(json.dumps([1, 2]))
    (folder / "8.json").write_text(json.dumps({"child": {"q": [{"title": "A"}]}, "extra": {"answer": ["A"]}}))
    (folder / ".tmp-x9.json").write_text("{half a fi")  # an atomic-write temporary: not a result
    (folder / "notes.txt").write_text("ignored")
    assert list_result_files(str(folder)) == ["0.json", "1.json", "2.json", "3.json", "5.json", "6.json", "7.json", "8.json"]  # fmt: skip
    assert cli_main(["eval", str(folder), "--format", "latex"]) == 0
    captured = capsys.readouterr()
    assert "skipped 5.json: malformed JSON" in captured.err
    assert "skipped 6.json:" in captured.err and "extra.answer" in captured.err
    assert "skipped 7.json: expected a JSON object" in captured.err
    assert "skipped 8.json:" in captured.err and "select_score" in captured.err
    assert "4 queries averaged, 4 files skipped" in captured.out
    assert captured.out.startswith("0.5625 & 0.1667")  # the good files give the same numbers as before


def test_file_missing_from_ensemble_is_reported(run_a, run_b, tmp_path, capsys):
    second = tmp_path / "run_b"
    shutil.copytree(run_b, second)
    (second / "3.json").unlink()
    (second / "1.json").write_text("[")
    assert cli_main(["eval", run_a, "--ensemble", str(second), "--format", "markdown"]) == 0
    captured = capsys.readouterr()
    assert "skipped 3.json: missing from the ensemble folder" in captured.err
    assert "skipped 1.json: ensemble file: malformed JSON" in captured.err
    assert "2 queries averaged, 2 files skipped" in captured.out


def test_bad_folders(tmp_path, capsys):
    assert cli_main(["eval", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli_main(["eval", str(tmp_path)]) == 1
    assert "no usable result tree" in capsys.readouterr().err


def test_baseline_rows_print_dash_for_selector_columns():
    summary = {
        "has_selector": False,
        **dict.fromkeys(("crawler_recall", "precision", "recall", "actions", "score"), 0.0),
        **{"recall_at_100": 0.25354, "recall_at_50": 0.2, "recall_at_20": 0.1},
    }
    assert format_latex(summary).splitlines()[0] == "- & - & - & 0.2535 & 0.2 & 0.1"
    assert "| google | - | - | - | 0.2535 | 0.2 | 0.1 | 0.0 | 0.0 |" in format_markdown(summary, "google")


def test_scripts_eval_launcher(run_a):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "eval.py"
    res = subprocess.run([sys.executable, str(script), run_a, "--format", "latex"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("0.5625 & 0.1667 & 0.125")


def test_degraded_trees_are_counted(run_a, tmp_path, capsys):
    folder = tmp_path / "res"
    shutil.copytree(run_a, folder)
    for name, lookups in (("0.json", 2), ("1.json", 0)):
        tree = json.loads((folder / name).read_text())
        tree["extra"]["failures"] = {"search": 0, "lookup": lookups, "title": 0, "sections": 0, "crawler_no_action": 0}
        (folder / name).write_text(json.dumps(tree))
    ev = evaluate_folder(str(folder))
    assert ev.degraded == ["0.json"] and ev.summary == evaluate_folder(run_a).summary  # same metrics
    out_json = tmp_path / "s.json"
    assert cli_main(["eval", str(folder), "--format", "markdown", "--per_query", "--output_file", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "4 queries averaged, 0 files skipped, 1 without answers (counted with 0), 1 degraded (" in out
    assert "| 0.json * | 4 |" in out and "| 1.json | 1 |" in out  # per-query rows of the markdown table
    assert json.loads(out_json.read_text())["degraded"] == ["0.json"]


def test_per_query_rows_in_each_format(run_a, capsys):
    assert cli_main(["eval", run_a, "--per_query", "--format", "latex"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("0.json & 4 & ") and lines[3].startswith("3.json & 2 & ") and lines[3].endswith("\\\\")
    assert cli_main(["eval", run_a, "--per_query", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| file | answers | crawled |" in out and out.count("| 2.json |") == 1


def deep_tree_text(depth: int) -> str:
    """A chain of ``depth`` nodes under the root, answer = the deepest title (built as text: no recursion)."""
    opens, closes = ['{"title": "q", "extra": {"answer": ["leaf"]}, "child": {"s": ['], ["]}}"]
    for i in range(1, depth):
        node = {"title": f"t{i}", "arxiv_id": "x", "depth": i, "select_score": 0.1}
        opens.append(json.dumps(node)[:-1] + ', "child": {"s": [')
        closes.append("]}}")
    leaf = json.dumps({"title": "leaf", "arxiv_id": "x", "depth": depth, "select_score": 0.9, "child": {}})
    return "".join(opens) + leaf + "".join(reversed(closes))


def test_deep_tree_is_scored_and_unparseable_one_skipped(tmp_path, capsys):
    """A 3,000-level tree is scored (no RecursionError); one nested beyond parsing is skipped."""
    (tmp_path / "0.json").write_text(deep_tree_text(3000))
    (tmp_path / "1.json").write_text("[" * 400_000 + "]" * 400_000)
    ev = evaluate_folder(str(tmp_path))
    assert [n for n, _ in ev.per_query] == ["0.json"] and ev.skipped[0][0] == "1.json"
    m = ev.per_query[0][1]
    assert m.num_selected == 1 and m.recall == 1.0 and m.actions == 3000
    assert cli_main(["eval", str(tmp_path), "--format", "latex"]) == 0
    assert "skipped 1.json: cannot parse" in capsys.readouterr().err


def test_eval_help_and_bad_output_file(run_a, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["eval", "--help"])
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: pasa eval") and "example:\n  pasa eval results/real" in help_text
    assert all(line.count("default") <= 1 for line in help_text.splitlines())
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as exc:
        cli_main(["eval", run_a, "--output_file", str(tmp_path / "f" / "s.json")])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("pasa eval: error: --output_file's folder")
