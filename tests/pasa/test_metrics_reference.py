"""Differential check: pasa.metrics against an independent, test-only rewrite of the released formulas.

The reference below follows the released ``metrics.py`` step by step (one FIFO pass per tree, ``cal_micro``
counts, the ``x / (den if den > 0 else 1e-9)`` ratios, the ensemble pass over the second tree, the two printed
lines) but is written from scratch here and shares no code with ``pasa.metrics``. Seeded random trees exercise
duplicate and variant titles, ties, scores of exactly 0.5, empty query lists, deep trees, more than 100 papers,
and queries without answers; hand-made trees pin the corner cases.
"""

from __future__ import annotations

import json
import random

import pytest

from pasa.evaluate import evaluate_folder, format_latex
from pasa.metrics import aggregate, evaluate_tree


# -- the reference (released formulas, test-only) ------------------------------------------------------------
def ref_letters(text):
    return "".join([ch for ch in text if ch.isalpha()]).lower()


def ref_cal_micro(pred, gold):
    if len(gold) == 0:
        return 0, 0, 0
    if len(pred) == 0:
        return 0, 0, len(gold)
    return len(pred & gold), len(pred - gold), len(gold - pred)


def ref_div(num, den):
    return num / (den if den > 0 else 1e-9)


def ref_walk(tree, seen_list, seen_set, chosen, count_stats):
    """One FIFO pass; returns (actions, per-node statistic list) when ``count_stats``."""
    fifo = [tree]
    actions, stat = 0, []
    while fifo:
        cur = fifo.pop(0)
        actions += len(cur["child"])
        total = 0
        for _, kids in cur["child"].items():
            total -= 0.1
            for kid in kids:
                fifo.append(kid)
                key = ref_letters(kid["title"])
                if kid["select_score"] > 0.5:
                    chosen.add(key)
                    total += 1
                if key not in seen_set:
                    seen_set.add(key)
                    seen_list.append([key, kid["select_score"]])
        stat.append(total)
    return (actions, stat) if count_stats else None


def ref_query(tree, ensemble=None):
    seen_list, seen_set, chosen = [], set(), set()
    gold = {ref_letters(t) for t in tree["extra"]["answer"]}
    actions, stat = ref_walk(tree, seen_list, seen_set, chosen, True)
    if ensemble is not None:
        ref_walk(ensemble, seen_list, seen_set, chosen, False)
    seen_list.sort(key=lambda pair: pair[1], reverse=True)
    tops = {k: {pair[0] for pair in seen_list[:k]} for k in (20, 50, 100)}
    c, s = ref_cal_micro(seen_set, gold), ref_cal_micro(chosen, gold)
    t = {k: ref_cal_micro(v, gold) for k, v in tops.items()}
    return {
        "crawler_recall": ref_div(c[0], c[0] + c[2]),
        "precision": ref_div(s[0], s[0] + s[1]),
        "recall": ref_div(s[0], s[0] + s[2]),
        "recall_at_100": ref_div(t[100][0], t[100][0] + t[100][2]),
        "recall_at_50": ref_div(t[50][0], t[50][0] + t[50][2]),
        "recall_at_20": ref_div(t[20][0], t[20][0] + t[20][2]),
        "actions": actions,
        "score": sum(stat) / len(stat) if stat else 0,
    }


def ref_lines(per_query):
    mean = {k: sum(q[k] for q in per_query) / len(per_query) for k in per_query[0]}
    r = {k: round(v, 4) for k, v in mean.items()}
    first = f"{r['crawler_recall']} & {r['precision']} & {r['recall']} & {r['recall_at_100']} & {r['recall_at_50']} & {r['recall_at_20']}"
    second = f"{r['crawler_recall']} & {r['actions']} & {r['score']} & {r['precision']}  & {r['recall']}"
    return mean, f"{first}\n{second}"


# -- random trees --------------------------------------------------------------------------------------------
WORDS = "alpha beta gamma delta sparse graph neural policy reward agent search retrieval dense vision".split()


def make_pool(rng, n=160):
    titles = set()
    while len(titles) < n:
        titles.add(" ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(2, 4))))
    return sorted(titles)


def variant(rng, title):
    """The same paper as another source spells it: case, punctuation, digits (all dropped by normalisation)."""
    kind = rng.randrange(4)
    if kind == 0:
        return title.upper()
    if kind == 1:
        return title.replace(" ", "-") + "."
    if kind == 2:
        return f"{title} (v{rng.randint(1, 9)})"
    return title


def score(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return 0.5  # exactly the threshold: not selected
    if kind == 1:
        return rng.choice([0.1, 0.3, 0.7, 0.9])  # repeated values: ties in the ranking
    return round(rng.random(), rng.choice([2, 6]))


def make_tree(rng, pool, big=False):
    def make_node(depth):
        child = {}
        if depth < 3 and rng.random() < 0.35:
            for s in range(rng.randint(0, 3)):
                child[f"Section {s} {rng.choice(WORDS)}"] = [make_node(depth + 1) for _ in range(rng.randint(0, 6))]
        return {"title": variant(rng, rng.choice(pool)), "child": child, "select_score": score(rng), "extra": {}}

    per_query = (30, 60) if big else (0, 8)
    child = {f"query {q}": [make_node(0) for _ in range(rng.randint(*per_query))] for q in range(rng.randint(0, 5))}
    n_answers = rng.choice([0, 1, 3, 10, 25]) if not big else 40
    answer = [variant(rng, rng.choice(pool)) for _ in range(n_answers)] + ["A Paper Nobody Found"] * (n_answers > 0)
    return {"title": "user query", "child": child, "select_score": 0.0, "extra": {"answer": answer}}


def random_cases(seed, n):
    rng = random.Random(seed)
    pool = make_pool(rng)
    return [
        (make_tree(rng, pool, big=i % 5 == 0), make_tree(rng, pool) if i % 2 else make_tree(rng, pool, big=True))
        for i in range(n)
    ]


FIELDS = ("crawler_recall", "precision", "recall", "recall_at_100", "recall_at_50", "recall_at_20", "actions", "score")


def assert_same(ours, ref):
    for name in FIELDS:
        assert getattr(ours, name) == ref[name], name  # exact: same operations in the same order


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_trees_match_reference(seed):
    cases = random_cases(seed, 60)
    assert any(evaluate_tree(t).num_crawled > 100 for t, _ in cases)  # the generator reaches every cutoff
    assert any(evaluate_tree(t).num_answers == 0 for t, _ in cases)
    for tree, other in cases:
        assert_same(evaluate_tree(tree), ref_query(tree))
        assert_same(evaluate_tree(tree, ensemble_tree=other), ref_query(tree, other))


def test_random_trees_discriminate():
    """The random trees are varied enough that the cutoffs and the ensemble change the numbers."""
    cases = random_cases(0, 60)
    ms = [evaluate_tree(t) for t, _ in cases]
    assert any(m.recall_at_20 < m.recall_at_50 < m.recall_at_100 for m in ms)
    assert any(0 < m.precision < 1 for m in ms)
    assert any(evaluate_tree(t, ensemble_tree=o).crawler_recall > evaluate_tree(t).crawler_recall for t, o in cases)


HAND_MADE = [
    # empty root, no answers
    {"title": "q", "child": {}, "select_score": 0.0, "extra": {"answer": []}},
    # only empty query lists
    {"title": "q", "child": {"a": [], "b": []}, "select_score": 0.0, "extra": {"answer": ["X"]}},
    # one selected answer reached twice, at depths 0 and 2
    {
        "title": "q",
        "child": {
            "s": [
                {
                    "title": "Target!",
                    "select_score": 0.2,
                    "child": {
                        "Sec": [
                            {
                                "title": "Mid",
                                "select_score": 0.5,
                                "child": {"Deep": [{"title": "target", "select_score": 0.51, "child": {}}]},
                            }
                        ]
                    },
                }
            ]
        },
        "select_score": 0.0,
        "extra": {"answer": ["TARGET", "Mid"]},
    },  # fmt: skip
]


@pytest.mark.parametrize("tree", HAND_MADE)
def test_hand_made_trees_match_reference(tree):
    assert_same(evaluate_tree(tree), ref_query(tree))
    assert_same(evaluate_tree(tree, ensemble_tree=HAND_MADE[2]), ref_query(tree, HAND_MADE[2]))


def test_folder_and_printed_lines_match_reference(tmp_path):
    cases = random_cases(7, 25)
    run, run2 = tmp_path / "run", tmp_path / "run2"
    run.mkdir()
    run2.mkdir()
    for i, (tree, other) in enumerate(cases):
        (run / f"{i}.json").write_text(json.dumps(tree))
        (run2 / f"{i}.json").write_text(json.dumps(other))
    for ensemble in (None, str(run2)):
        ev = evaluate_folder(str(run), ensemble)
        assert not ev.skipped and [n for n, _ in ev.per_query] == [f"{i}.json" for i in range(25)]
        ref = [ref_query(t, o if ensemble else None) for t, o in cases]
        mean, lines = ref_lines(ref)
        for name in FIELDS:
            assert ev.summary[name] == pytest.approx(mean[name], abs=1e-12)
        assert format_latex(ev.summary) == lines
        assert aggregate([m for _, m in ev.per_query]) == ev.summary
