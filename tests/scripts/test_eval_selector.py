"""scripts/eval_selector.py: the metrics table, reading labelled records, and a full run against a loopback server
and the tiny local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pasa.llm.scripted import prompt_title
from tests.fakes import OpenAIStub, load_script, openai_server

ROOT = Path(__file__).resolve().parents[2]
DATA = str(ROOT / "tests" / "fixtures" / "sft" / "selector_test.jsonl")
# labels of selector_test.jsonl in order (its 6th record has no decision and is skipped)
LABELS = [True, False, True, False, True]
TITLES = [
    "Graph Attention Networks",
    "Proximal Policy Optimization Algorithms",
    "REALM: Retrieval-Augmented Language Model Pre-Training",
    "Semi-Supervised Classification with Graph Convolutional Networks",
    "Inductive Representation Learning on Large Graphs",
]


ev = load_script("eval_selector")


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        # (tp, fp, fn, tn, precision, recall, f1, accuracy)
        ([True, True, False, False], [0.9, 0.2, 0.7, 0.1], (1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5)),
        ([True, True, True, False], [0.9, 0.8, 0.1, 0.2], (2, 0, 1, 1, 1.0, 2 / 3, 0.8, 0.75)),
        ([True, False], [0.5, 0.5], (0, 0, 1, 1, 0.0, 0.0, 0.0, 0.5)),  # 0.5 is not selected (score > 0.5)
        ([False, False], [0.1, 0.9], (0, 1, 0, 1, 0.0, 0.0, 0.0, 0.5)),
    ],
)
def test_selector_metrics_table(labels, scores, expected):
    m = ev.selector_metrics(labels, scores)
    got = (m["tp"], m["fp"], m["fn"], m["tn"], m["precision"], m["recall"], m["f1"], m["accuracy"])
    assert got == pytest.approx(expected)


def test_metrics_need_one_score_per_label():
    with pytest.raises(ValueError):
        ev.selector_metrics([True], [0.1, 0.2])


def test_read_examples_both_shapes_and_skips():
    prompts, labels, skipped = ev.read_examples(DATA)
    assert labels == LABELS and skipped == 1
    assert [prompt_title(p) for p in prompts] == TITLES
    assert all(p.endswith("Decision:") for p in prompts)


def test_eval_against_a_loopback_server(tmp_path, capsys):
    scores = dict(zip(TITLES, [0.9, 0.6, 0.4, 0.1, 0.8]))  # tp, fp, fn, tn, tp
    stub = OpenAIStub(true_prob=lambda prompt: scores[prompt_title(prompt)], model="pasa-7b-selector")
    out = tmp_path / "metrics.json"
    with openai_server(stub) as url:
        argv = [
            "--selector_path",
            f"{url}#pasa-7b-selector",
            "--data",
            DATA,
            "--output_file",
            str(out),
            "--save_scores",
        ]
        assert ev.main(argv) == 0
    assert all(path == "/v1/completions" for path, _ in stub.requests)  # raw prompt, as the agent scores
    m = json.loads(out.read_text())
    assert (m["tp"], m["fp"], m["fn"], m["tn"], m["skipped_records"]) == (2, 1, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert [s["score"] for s in m["scores"]] == pytest.approx([0.9, 0.6, 0.4, 0.1, 0.8])
    assert "| Precision | Recall | F1 | Accuracy |" in capsys.readouterr().out


def test_eval_a_local_checkpoint(tiny_checkpoint, tmp_path):
    out = tmp_path / "metrics.json"
    assert (
        ev.main(["--selector_path", tiny_checkpoint, "--data", DATA, "--output_file", str(out), "--batch_size", "2"])
        == 0
    )
    m = json.loads(out.read_text())
    assert m["n"] == 5 and m["tp"] + m["fp"] + m["fn"] + m["tn"] == 5


def test_no_labelled_records_is_an_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x"}) + "\n")
    assert ev.main(["--selector_path", "unused", "--data", str(bad)]) == 1


def test_missing_checkpoint_is_one_line_not_a_hub_download(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ev.main(["--selector_path", str(tmp_path / "checkpoints" / "pasa-7b-selector"), "--data", DATA])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0] and "pasa download" in err[0]
