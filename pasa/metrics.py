"""The paper's evaluation metrics (DESIGN §1.2), with the semantics of the released ``metrics.py``.

[pure] Functions over released-format result trees (``PaperNode.to_dict`` dicts); no I/O, no torch.
``pasa eval`` (``pasa/evaluate.py``) only reads files and wraps :func:`evaluate_tree` and :func:`aggregate`.

Per query, over every node of the tree below the root, titles compared after :func:`normalize_title`:

* **crawled set**: every node's title; **selected set**: titles of nodes with ``select_score > 0.5``
  (a title counts as selected when *any* of its nodes scores above the threshold);
* **ranking**: the crawled titles by score, descending, each title with the score of its *first* occurrence in
  breadth-first order; ties keep that order (stable sort), as released;
* **Crawler Recall** = |crawled ∩ answers| / |answers|, **Precision** = |selected ∩ answers| / |selected|,
  **Recall** = |selected ∩ answers| / |answers|, **Recall@k** = |top-k of ranking ∩ answers| / |answers|;
* **actions** = number of ``child`` keys over all nodes (root: search queries, papers: expanded sections);
* **score** (the released crawler statistic): per visited node, ``-0.1`` per child key plus ``1`` per child with
  ``select_score > 0.5``, averaged over *all* visited nodes (root and leaves included).

Edge cases, as released (``utils.cal_micro`` and its ``1e-9`` denominators): a query without answers scores 0
on every ratio (``aggregate(exclude_no_answer=True)`` leaves such queries out instead); nothing selected gives
Precision 0; fewer than k crawled papers means Recall@k is computed over all of them.

Ensemble (``evaluate_tree(..., ensemble_tree=...)``), as released: the second run's tree adds its papers to the
crawled and selected sets and its not-yet-seen titles to the ranking (with its scores); answers, actions and
score come from the first tree only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pasa.paper import title_key

# A paper is selected when its score is strictly above this (released metrics.py and paper_agent.py).
SELECT_THRESHOLD = 0.5
# Per child key (search query or expanded section), the released "score" statistic subtracts this.
ACTION_COST = 0.1

# (field, column header) in the paper's column order; the first line the released metrics.py prints.
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("crawler_recall", "Crawler Recall"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("recall_at_100", "Recall@100"),
    ("recall_at_50", "Recall@50"),
    ("recall_at_20", "Recall@20"),
)
# The second line the released metrics.py prints: crawler statistics.
STAT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("crawler_recall", "Crawler Recall"),
    ("actions", "Actions"),
    ("score", "Score"),
    ("precision", "Precision"),
    ("recall", "Recall"),
)
# Columns that need a selector; a Google baseline has none, so the paper prints "-" there.
SELECTOR_FIELDS = ("crawler_recall", "precision", "recall")


class TreeFormatError(ValueError):
    """A result tree is not in the released format (a node without a title or a numeric ``select_score``...)."""


class MissingAnswerError(ValueError):
    """No answers were given and the tree has no ``extra.answer`` list."""


def normalize_title(title: str) -> str:
    """Letters only, lower case: the released ``utils.keep_letters`` (unicode letters kept, digits dropped).

    >>> normalize_title("BERT: Pre-training of Deep Bidirectional Transformers (2019)")
    'bertpretrainingofdeepbidirectionaltransformers'
    """
    return title_key(title)


# -- traversal ----------------------------------------------------------------------------------------------------
@dataclass
class TreeStats:
    """What one breadth-first pass over a result tree collects (the released metrics.py loop)."""

    # (normalised title, score) at first occurrence, in breadth-first discovery order (not sorted).
    first_seen: list[tuple[str, float]] = field(default_factory=list)
    crawled: set[str] = field(default_factory=set)
    selected: set[str] = field(default_factory=set)
    actions: int = 0
    # The released per-node "score" statistic, one entry per visited node (root included).
    node_scores: list[float] = field(default_factory=list)


def _children(node: Any, where: str) -> dict[str, list]:
    if not isinstance(node, Mapping):
        raise TreeFormatError(f"{where}: a node must be a JSON object, got {type(node).__name__}")
    child = node.get("child", {})
    if child is None:
        child = {}
    if not isinstance(child, Mapping) or not all(isinstance(v, list) for v in child.values()):
        raise TreeFormatError(f"{where}: 'child' must map a query or section name to a list of nodes")
    return child


def _title_and_score(node: Any, where: str) -> tuple[str, float]:
    if not isinstance(node, Mapping):
        raise TreeFormatError(f"{where}: a node must be a JSON object, got {type(node).__name__}")
    title, score = node.get("title"), node.get("select_score")
    if not isinstance(title, str):
        raise TreeFormatError(f"{where}: missing or non-string 'title'")
    if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
        raise TreeFormatError(f"{where}: 'select_score' must be a number, got {score!r}")
    return title, float(score)


def collect_tree(tree: Mapping[str, Any], threshold: float = SELECT_THRESHOLD) -> TreeStats:
    """One breadth-first pass over ``tree`` (a released-format dict), children in ``child`` order."""
    stats = TreeStats()
    queue: list[tuple[Any, str]] = [(tree, "root")]
    head = 0
    while head < len(queue):
        node, where = queue[head]
        head += 1
        child = _children(node, where)
        stats.actions += len(child)
        # Same accumulation order as released (-0.1 per key, then +1 per selected child) so floats match exactly.
        node_score = 0.0
        for key, nodes in child.items():
            node_score -= ACTION_COST
            for i, sub in enumerate(nodes):
                sub_where = f"{where} > {key!r}[{i}]"
                title, score = _title_and_score(sub, sub_where)
                queue.append((sub, sub_where))
                norm = normalize_title(title)
                if score > threshold:
                    stats.selected.add(norm)
                    node_score += 1
                if norm not in stats.crawled:
                    stats.crawled.add(norm)
                    stats.first_seen.append((norm, score))
        stats.node_scores.append(node_score)
    return stats


def union_stats(first: TreeStats, second: TreeStats) -> TreeStats:
    """The released ensemble: ``second`` adds crawled/selected titles and new ranking entries; the crawler
    statistics (actions, node scores) stay those of ``first``."""
    return TreeStats(
        first_seen=first.first_seen + [(t, s) for t, s in second.first_seen if t not in first.crawled],
        crawled=first.crawled | second.crawled,
        selected=first.selected | second.selected,
        actions=first.actions,
        node_scores=list(first.node_scores),
    )


def rank_titles(first_seen: Iterable[tuple[str, float]]) -> list[str]:
    """Titles by score, descending; ties keep their order (Python's sort is stable, also with ``reverse=True``).

    >>> rank_titles([("a", 0.2), ("b", 0.9), ("c", 0.2), ("d", 0.9)])
    ['b', 'd', 'a', 'c']
    """
    return [t for t, _ in sorted(first_seen, key=lambda x: x[1], reverse=True)]


# -- the metrics ---------------------------------------------------------------------------------------------------
def recall(predicted: set[str], answers: set[str]) -> float:
    """|predicted ∩ answers| / |answers|; 0.0 when there are no answers (released ``cal_micro``)."""
    if not answers:
        return 0.0
    return len(predicted & answers) / len(answers)


def precision(predicted: set[str], answers: set[str]) -> float:
    """|predicted ∩ answers| / |predicted|; 0.0 when nothing is predicted or there are no answers (released)."""
    if not answers or not predicted:
        return 0.0
    return len(predicted & answers) / len(predicted)


def crawler_recall(crawled: set[str], answers: set[str]) -> float:
    """Share of the answers the Crawler found at all, whatever their scores."""
    return recall(crawled, answers)


def recall_at_k(ranking: list[str], answers: set[str], k: int) -> float:
    """Recall of the top ``k`` ranked titles (all of them when fewer than ``k``).

    >>> recall_at_k(["a", "b", "c"], {"c", "z"}, 2), recall_at_k(["a", "b", "c"], {"c", "z"}, 100)
    (0.0, 0.5)
    """
    return recall(set(ranking[:k]), answers)


@dataclass
class QueryMetrics:
    """The metrics of one query (one result tree)."""

    num_answers: int
    num_crawled: int
    num_selected: int
    crawler_recall: float
    precision: float
    recall: float
    recall_at_100: float
    recall_at_50: float
    recall_at_20: float
    actions: int
    score: float
    # False for runs without a selector (Google baselines: root ``extra.has_selector`` false).
    has_selector: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _answers_of(tree: Mapping[str, Any]) -> list[str]:
    extra = tree.get("extra") if isinstance(tree, Mapping) else None
    answer = extra.get("answer") if isinstance(extra, Mapping) else None
    if answer is None:
        raise MissingAnswerError("the tree has no extra.answer (pass answers= or run with an answer field)")
    if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
        raise MissingAnswerError("extra.answer must be a list of titles")
    return answer


def _as_dict(tree: Any) -> Mapping[str, Any]:
    if hasattr(tree, "to_dict"):  # a PaperNode
        return tree.to_dict()
    if not isinstance(tree, Mapping):
        raise TreeFormatError(f"a result tree must be a JSON object, got {type(tree).__name__}")
    return tree


def evaluate_tree(
    tree: Mapping[str, Any],
    answers: Iterable[str] | None = None,
    ensemble_tree: Mapping[str, Any] | None = None,
    threshold: float = SELECT_THRESHOLD,
) -> QueryMetrics:
    """All metrics of one query.

    Args:
        tree: a released-format result tree (dict, or a ``PaperNode``).
        answers: the answer titles; default: the tree's ``extra.answer`` (``MissingAnswerError`` if absent).
        ensemble_tree: a second run's tree for the same query (the released ensemble; its answers are ignored).
        threshold: selection threshold (released: 0.5, strict).
    """
    tree = _as_dict(tree)
    answer_set = {normalize_title(a) for a in (_answers_of(tree) if answers is None else answers)}
    stats = collect_tree(tree, threshold)
    if ensemble_tree is not None:
        stats = union_stats(stats, collect_tree(_as_dict(ensemble_tree), threshold))
    ranking = rank_titles(stats.first_seen)
    extra = tree.get("extra")
    has_selector = bool(extra.get("has_selector", True)) if isinstance(extra, Mapping) else True
    return QueryMetrics(
        num_answers=len(answer_set),
        num_crawled=len(stats.crawled),
        num_selected=len(stats.selected),
        crawler_recall=crawler_recall(stats.crawled, answer_set),
        precision=precision(stats.selected, answer_set),
        recall=recall(stats.selected, answer_set),
        recall_at_100=recall_at_k(ranking, answer_set, 100),
        recall_at_50=recall_at_k(ranking, answer_set, 50),
        recall_at_20=recall_at_k(ranking, answer_set, 20),
        actions=stats.actions,
        score=sum(stats.node_scores) / len(stats.node_scores) if stats.node_scores else 0.0,
        has_selector=has_selector,
    )


# Fields averaged by ``aggregate`` (everything numeric in QueryMetrics).
AVERAGED_FIELDS = tuple(f.name for f in fields(QueryMetrics) if f.name != "has_selector")


def aggregate(per_query: Iterable[QueryMetrics], exclude_no_answer: bool = False) -> dict[str, Any]:
    """Macro averages over queries (the released ``sum(x) / len(x)``).

    Returns a dict with ``num_queries`` (averaged over), ``num_no_answer`` (queries without answers seen),
    ``excluded_no_answer`` (whether those were left out), ``has_selector`` (any query had one) and the mean of
    every field of :class:`QueryMetrics`. Raises ``ValueError`` when no query is left to average.
    """
    per_query = list(per_query)
    num_no_answer = sum(1 for m in per_query if m.num_answers == 0)
    kept = [m for m in per_query if m.num_answers > 0] if exclude_no_answer else per_query
    if not kept:
        raise ValueError("no queries to average" + (" (all have no answers)" if per_query else ""))
    summary: dict[str, Any] = {
        "num_queries": len(kept),
        "num_no_answer": num_no_answer,
        "excluded_no_answer": exclude_no_answer,
        "has_selector": any(m.has_selector for m in kept),
    }
    for name in AVERAGED_FIELDS:
        values = [getattr(m, name) for m in kept]
        summary[name] = sum(values) / len(values)
    return summary
