"""Table tests for pasa.metrics: every metric and edge case with hand-computed values."""

from __future__ import annotations

import sys

import pytest

from pasa.metrics import (
    MissingAnswerError,
    QueryMetrics,
    TreeFormatError,
    aggregate,
    collect_tree,
    crawler_recall,
    evaluate_tree,
    normalize_title,
    precision,
    rank_titles,
    recall,
    recall_at_k,
)
from pasa.paper import PaperNode


def node(title: str, score: float, child: dict | None = None) -> dict:
    """A released-format paper node (only the keys the metrics read, plus the released ones)."""
    return {"title": title, "arxiv_id": "", "depth": 0, "child": child or {}, "abstract": "", "sections": "",
            "source": "Search", "select_score": score, "extra": {}}  # fmt: skip


def root(child: dict, answer: list[str] | None = None, **extra) -> dict:
    tree = {"title": "user query", "child": child, "select_score": 0.0, "extra": dict(extra)}
    if answer is not None:
        tree["extra"]["answer"] = answer
    return tree


# A tree with a duplicate title, an empty query and one expansion (tests/fixtures/results/run_a/0.json in small):
#   root: "q1" -> A 0.9 [Related -> C 0.7, Y 0.2], X 0.8, B 0.3 [Intro -> "paper a!" 0.1];  "q2" -> []
TREE = root(
    {
        "q1": [
            node("Paper A", 0.9, {"Related": [node("Paper C", 0.7), node("Paper Y", 0.2)]}),
            node("Paper X", 0.8),
            node("Paper B", 0.3, {"Intro": [node("paper a!", 0.1)]}),
        ],
        "q2": [],
    },
    answer=["Paper A", "Paper B", "Paper C", "Paper D"],
)


# -- normalisation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "title, key",
    [
        ("Attention Is All You Need", "attentionisallyouneed"),
        ("  attention-is all_you NEED!! ", "attentionisallyouneed"),
        ("GPT-4 Technical Report (2023)", "gpttechnicalreport"),  # digits dropped, as released keep_letters
        ("Über Café Ünïcode", "übercaféünïcode"),  # str.isalpha keeps unicode letters
        ("1234 !!", ""),
    ],
)
def test_normalize_title(title, key):
    assert normalize_title(title) == key


# -- set metrics ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, answers, p, r",
    [
        ({"a", "b", "x"}, {"a", "b", "c", "d"}, 2 / 3, 2 / 4),
        ({"a"}, {"a"}, 1.0, 1.0),
        ({"x", "y"}, {"a"}, 0.0, 0.0),
        (set(), {"a", "b"}, 0.0, 0.0),  # nothing selected: precision 0 (released), not undefined
        ({"a", "b"}, set(), 0.0, 0.0),  # no answers: every ratio 0 (released cal_micro)
        (set(), set(), 0.0, 0.0),
    ],
)
def test_precision_recall(pred, answers, p, r):
    assert precision(pred, answers) == pytest.approx(p)
    assert recall(pred, answers) == pytest.approx(r)
    assert crawler_recall(pred, answers) == pytest.approx(r)


def test_recall_at_k_cutoffs_and_short_lists():
    ranking = ["a", "b", "c", "d", "e"]
    answers = {"b", "e", "z", "w"}
    assert recall_at_k(ranking, answers, 1) == 0.0
    assert recall_at_k(ranking, answers, 2) == 0.25
    assert recall_at_k(ranking, answers, 4) == 0.25
    assert recall_at_k(ranking, answers, 5) == 0.5
    assert recall_at_k(ranking, answers, 100) == 0.5  # fewer than k papers: all of them count
    assert recall_at_k([], answers, 20) == 0.0
    assert recall_at_k(ranking, set(), 20) == 0.0


def test_rank_titles_is_stable_for_ties():
    assert rank_titles([("a", 0.5), ("b", 0.7), ("c", 0.5), ("d", 0.7), ("e", 0.1)]) == ["b", "d", "a", "c", "e"]


# -- traversal -----------------------------------------------------------------------------------------------
def test_collect_tree_bfs_first_occurrence_and_counts():
    stats = collect_tree(TREE)
    # breadth-first discovery order; the duplicate "paper a!" keeps the first occurrence (0.9)
    assert stats.first_seen == [("papera", 0.9), ("paperx", 0.8), ("paperb", 0.3), ("paperc", 0.7), ("papery", 0.2)]
    assert stats.crawled == {"papera", "paperx", "paperb", "paperc", "papery"}
    assert stats.selected == {"papera", "paperx", "paperc"}
    assert stats.actions == 4  # root: q1, q2 (empty lists count); A: Related; B: Intro
    # per visited node: root (-0.1 + 2) + (-0.1) = 1.8; A: -0.1 + 1; X: 0; B: -0.1; C, Y, dup: 0
    assert stats.node_scores == pytest.approx([1.8, 0.9, 0.0, -0.1, 0.0, 0.0, 0.0])


def test_evaluate_tree_hand_computed():
    m = evaluate_tree(TREE)
    assert (m.num_answers, m.num_crawled, m.num_selected) == (4, 5, 3)
    assert m.crawler_recall == pytest.approx(3 / 4)  # A, B, C crawled; D not
    assert m.precision == pytest.approx(2 / 3)  # selected A, X, C
    assert m.recall == pytest.approx(2 / 4)
    assert m.recall_at_20 == m.recall_at_50 == m.recall_at_100 == pytest.approx(3 / 4)  # 5 papers < 20
    assert m.actions == 4
    assert m.score == pytest.approx(2.6 / 7)  # averaged over all 7 visited nodes, leaves included
    assert m.has_selector is True


def test_duplicate_title_selected_by_any_occurrence_ranked_by_first():
    # "Paper Q" first appears with 0.2 (not selected), later with 0.9: selected, but ranked with 0.2
    tree = root(
        {"q": [node("Paper Q", 0.2), node("Other", 0.6, {"S": [node("paper-q", 0.9)]})]},
        answer=["Paper Q"],
    )
    m = evaluate_tree(tree)
    assert m.recall == 1.0 and m.precision == 0.5
    assert collect_tree(tree).first_seen == [("paperq", 0.2), ("other", 0.6)]


def test_recall_at_k_uses_score_ranking_over_more_than_k_papers():
    fillers = [node(f"Filler {chr(97 + i // 26)}{chr(97 + i % 26)}", 0.99 - 0.01 * i) for i in range(60)]
    tree = root({"q": [node("Target", 0.3)] + fillers}, answer=["Target", "Filler aa", "Absent"])
    m = evaluate_tree(tree)
    # ranking: 60 fillers (0.99 ... 0.40) then Target (0.3) at rank 61
    assert m.recall_at_20 == pytest.approx(1 / 3)  # only "Filler aa"
    assert m.recall_at_50 == pytest.approx(1 / 3)
    assert m.recall_at_100 == pytest.approx(2 / 3)
    assert m.crawler_recall == pytest.approx(2 / 3)


def test_threshold_is_strict():
    tree = root({"q": [node("A", 0.5), node("B", 0.5000001)]}, answer=["A", "B"])
    m = evaluate_tree(tree)
    assert m.num_selected == 1 and m.recall == 0.5 and m.precision == 1.0


def test_no_answers_and_empty_tree():
    m = evaluate_tree(root({"q": [node("A", 0.9)]}, answer=[]))
    assert m.num_answers == 0
    assert (m.crawler_recall, m.precision, m.recall, m.recall_at_20) == (0.0, 0.0, 0.0, 0.0)
    assert m.actions == 1 and m.score == pytest.approx(0.9 / 2)
    empty = evaluate_tree(root({}, answer=["A"]))
    assert (empty.num_crawled, empty.actions, empty.score, empty.recall_at_100) == (0, 0, 0.0, 0.0)


def test_answers_argument_overrides_tree_and_missing_answers_raise():
    assert evaluate_tree(TREE, answers=["Paper X"]).precision == pytest.approx(1 / 3)
    with pytest.raises(MissingAnswerError):
        evaluate_tree(root({"q": []}))
    with pytest.raises(MissingAnswerError):
        evaluate_tree(root({"q": []}, answer="Paper A"))  # a string, not a list


def test_ensemble_unions_trees_with_first_tree_statistics():
    second = root({"other": [node("Paper D", 0.6), node("Paper X", 0.1), node("Paper Z", 0.95)]}, answer=["ignored"])
    m = evaluate_tree(TREE, ensemble_tree=second)
    assert m.num_answers == 4  # answers from the first tree only
    assert m.crawler_recall == 1.0  # A, B, C + D from the second run
    assert m.num_selected == 5 and m.precision == pytest.approx(3 / 5)  # A, X, C, D, Z
    assert m.recall == pytest.approx(3 / 4)
    assert (m.actions, m.score) == (4, pytest.approx(2.6 / 7))  # first tree only, as released
    # the second run's copy of X (0.1) does not re-rank X; D and Z join the ranking with their own scores
    stats = collect_tree(second)
    assert stats.first_seen[0] == ("paperd", 0.6)


def test_ensemble_duplicate_keeps_first_run_score_for_ranking():
    first = root(
        {"q": [node("Paper E", 0.2)] + [node(f"F {chr(97 + i)}", 0.4) for i in range(20)]}, answer=["Paper E"]
    )
    second = root({"q": [node("Paper E", 0.9)]})
    m = evaluate_tree(first, ensemble_tree=second)
    assert m.recall == 1.0  # selected through the second run
    assert m.recall_at_20 == 0.0  # but ranked with the first run's 0.2, below the 20 fillers


def test_accepts_paper_node():
    m = evaluate_tree(PaperNode.from_dict(TREE))
    assert m == evaluate_tree(TREE)


@pytest.mark.parametrize(
    "bad",
    [
        root({"q": [{"title": "A"}]}, answer=["A"]),  # no select_score
        root({"q": [{"select_score": 0.3}]}, answer=["A"]),  # no title
        root({"q": [node("A", None)]}, answer=["A"]),  # released trees never hold null scores
        root({"q": [node("A", "0.9")]}, answer=["A"]),
        root({"q": {"title": "A"}}, answer=["A"]),  # child values must be lists
        root({"q": ["not a node"]}, answer=["A"]),
        root({"q": [node("A", 0.3, child=[1, 2])]}, answer=["A"]),
    ],
)
def test_malformed_trees_raise_tree_format_error(bad):
    with pytest.raises(TreeFormatError):
        evaluate_tree(bad)


def test_has_selector_flag_from_root_extra():
    tree = root({"q": [node("A", 0.5)]}, answer=["A"], has_selector=False)
    assert evaluate_tree(tree).has_selector is False


# -- aggregation ---------------------------------------------------------------------------------------------
def _qm(cr, p, r, r100, r50, r20, actions, score, n_answers=1, has_selector=True):
    return QueryMetrics(n_answers, 1, 1, cr, p, r, r100, r50, r20, actions, score, has_selector)


def test_aggregate_macro_averages_and_no_answer_policy():
    per_query = [
        _qm(0.75, 2 / 3, 0.5, 0.75, 0.75, 0.75, 4, 0.4),
        _qm(1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1, -0.1),
        _qm(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1, 0.9, n_answers=0),
    ]
    s = aggregate(per_query)
    assert s["num_queries"] == 3 and s["num_no_answer"] == 1 and s["excluded_no_answer"] is False
    assert s["crawler_recall"] == pytest.approx(1.75 / 3)
    assert s["precision"] == pytest.approx((2 / 3) / 3)
    assert s["recall"] == pytest.approx(0.5 / 3)
    assert s["recall_at_20"] == pytest.approx(1.75 / 3)
    assert s["actions"] == pytest.approx(2.0)
    assert s["score"] == pytest.approx(1.2 / 3)
    x = aggregate(per_query, exclude_no_answer=True)
    assert x["num_queries"] == 2 and x["num_no_answer"] == 1
    assert x["crawler_recall"] == pytest.approx(0.875) and x["recall"] == pytest.approx(0.25)
    assert x["actions"] == pytest.approx(2.5)


def test_aggregate_errors_and_selector_flag():
    with pytest.raises(ValueError):
        aggregate([])
    with pytest.raises(ValueError):
        aggregate([_qm(0, 0, 0, 0, 0, 0, 1, 0, n_answers=0)], exclude_no_answer=True)
    assert aggregate([_qm(0, 0, 0, 0, 0, 0, 1, 0, has_selector=False)])["has_selector"] is False


def test_metrics_module_imports_without_torch():
    import subprocess

    code = "import sys, pasa.metrics; assert 'torch' not in sys.modules and 'requests' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
