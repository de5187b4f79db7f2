"""The resumable batch of queries: one result file per query, locks, the summary table.

Output: one ``<index>.json`` per query (released naming: 0-based line index of the input), written atomically.

Resuming and sharing a folder: a query whose file exists is skipped, so a killed batch resumes where it stopped;
a *degraded* result (one that records failed tool calls, ``root.extra["failures"]``) counts as done unless
``redo_degraded`` is given. Each query is computed under a lock file (``<index>.json.lock``, O_EXCL, holding
the pid and host), so two runs on one output folder (or two machines on a shared disk) split the queries;
a lock left by a killed process on the same host is taken over. The batch stops after
``max_consecutive_failures`` queries in a row failed with the same error.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pasa.io import ItemLock, load_json, remove_stale_temp_files, write_text_atomic
from pasa.paper import PaperNode, dumps_tree, is_degraded
from pasa.queries import QueryItem

logger = logging.getLogger(__name__)

CITATION_KINDS = ("by_id", "by_title", "not_found", "failed")  # root.extra["citations"], written by the agent


@dataclass
class QueryResult:
    """What became of one query: ``status`` is "done", "skipped" (already on disk), "locked" (another run is on
    it) or "failed"; the counts are the tree's (done and skipped results)."""

    item: QueryItem
    status: str
    seconds: float = 0.0
    crawled: int = 0
    selected: int = 0
    actions: int = 0
    error: str | None = None
    failures: dict[str, int] | None = None  # the tree's extra.failures
    citations: dict[str, int] | None = None  # the tree's extra.citations (how cited papers were resolved)

    @property
    def degraded(self) -> bool:
        return bool(self.failures) and any(n > 0 for n in self.failures.values())


def output_path(folder: str, item: QueryItem) -> str:
    return os.path.join(folder, f"{item.index}.json")


def summarize_tree(root: PaperNode) -> tuple[int, int, int]:
    """(crawled papers, selected papers, actions) of a result tree."""
    actions = len(root.child) + sum(len(n.child) for n in root.iter_nodes())
    return len(root.extra.get("crawler_recall_papers", [])), len(root.extra.get("recall_papers", [])), actions


def tree_failures(tree: dict[str, Any]) -> dict[str, int]:
    """The failure counts a result tree records (``{}`` for trees written without them)."""
    failures = (tree.get("extra") or {}).get("failures") if isinstance(tree, dict) else None
    if not isinstance(failures, dict):
        return {}
    counts = {k: v for k, v in failures.items() if isinstance(v, int) and not isinstance(v, bool)}
    # is_degraded is the tree's own rule; a tree it calls degraded always shows a count > 0 here
    if is_degraded(tree) and not any(counts.values()):
        counts["other"] = 1
    return counts


def tree_citations(tree: dict[str, Any]) -> dict[str, int] | None:
    """How the tree's cited papers were resolved (``extra.citations``), or None for trees without the counts."""
    citations = (tree.get("extra") or {}).get("citations") if isinstance(tree, dict) else None
    if not isinstance(citations, dict):
        return None
    return {k: v for k, v in citations.items() if isinstance(v, int) and not isinstance(v, bool)}


class ResultConflictError(ValueError):
    """The result file of a query's index holds another query's tree (the input file changed, or another --query
    was run into the same folder)."""


def read_done_tree(path: str, question: str | None = None) -> dict[str, Any] | None:
    """A finished result on disk, or None when the file is absent or unreadable (then the query is computed again;
    the atomic write never leaves half a file, so this is a file damaged by other means).

    Raises ``ResultConflictError`` when the tree's root title is not ``question``: it is never overwritten.
    """
    if not os.path.exists(path):
        return None
    try:
        tree = load_json(path)
    except (OSError, ValueError) as err:
        logger.warning("%s: unreadable result (%s), computing it again", path, err)
        return None
    if not isinstance(tree, dict):
        logger.warning("%s: not a result tree, computing it again", path)
        return None
    title = tree.get("title")
    if question is not None and isinstance(title, str) and title.strip() != question.strip():
        short = title if len(title) <= 60 else title[:57] + "..."
        raise ResultConflictError(f"{path} holds the result of another query ({short!r}); use another --output_dir")
    return tree


def read_done_result(path: str, question: str | None = None) -> dict[str, int] | None:
    """The failure counts of a finished result on disk (see :func:`read_done_tree`), or None."""
    tree = read_done_tree(path, question)
    return None if tree is None else tree_failures(tree)


def format_failures(failures: dict[str, int] | None) -> str:
    """``search 1, lookup 3`` (kinds with a count > 0)."""
    return ", ".join(f"{k} {n}" for k, n in (failures or {}).items() if n)


def format_citations(citations: dict[str, int] | None) -> str:
    """``12 by id, 30 by title, 5 not found, 1 failed`` (empty for a tree without the counts)."""
    if not citations:
        return ""
    return ", ".join(f"{citations.get(k, 0)} {k.replace('_', ' ')}" for k in CITATION_KINDS)


def failure_signature(err: BaseException) -> str:
    """``Type: message`` with object addresses blanked (a refused connection names a new one each time)."""
    return f"{type(err).__name__}: {re.sub(r'0x[0-9a-fA-F]+', '0x..', str(err))}"


def _skipped(item: QueryItem, tree: dict[str, Any]) -> QueryResult:
    return QueryResult(item, "skipped", failures=tree_failures(tree), citations=tree_citations(tree))


def _is_done(tree: dict[str, Any] | None, redo_degraded: bool) -> bool:
    return tree is not None and not (redo_degraded and any(tree_failures(tree).values()))


def run_query(
    agent,
    item: QueryItem,
    output_folder: str,
    on_event: Callable | None = None,
    redo_degraded: bool = False,
) -> QueryResult:
    """Run one query into ``output_folder`` as a batch does: skip it when its result is on disk, else take its
    :class:`pasa.io.ItemLock`, run the agent and write the tree atomically at :func:`output_path`.

    A failure (the agent raised, the write failed, the file holds another query) is logged and returned as a
    "failed" result. ``on_event`` is handed to ``agent.run`` (the agent's progress events).
    """
    path = output_path(output_folder, item)
    try:
        tree = read_done_tree(path, item.question)
    except ResultConflictError as err:
        logger.error("query %d: %s", item.index, err)
        return QueryResult(item, "failed", error=str(err))
    if _is_done(tree, redo_degraded):
        return _skipped(item, tree)
    lock = ItemLock(path)
    if not lock.acquire():
        logger.info("query %d: computed by another run (%s), skipped", item.index, lock.describe_owner())
        return QueryResult(item, "locked", error=f"locked by {lock.describe_owner()}")
    try:
        tree = read_done_tree(path)  # another run may have finished it meanwhile
        if _is_done(tree, redo_degraded):
            return _skipped(item, tree)
        return _compute(agent, item, path, tree, on_event)
    finally:
        lock.release()


def _run_agent(agent, item: QueryItem, on_event: Callable | None) -> PaperNode:
    kwargs: dict[str, Any] = {}
    if item.seed_papers:
        kwargs["seed_papers"] = item.seed_papers
    if on_event is not None:
        kwargs["on_event"] = on_event
    return agent.run(item.question, end_date=item.end_date, answer=item.answer, **kwargs)


def _compute(agent, item: QueryItem, path: str, old_tree: dict | None, on_event: Callable | None) -> QueryResult:
    """Run the agent on ``item`` and write its tree, unless it is more degraded than ``old_tree`` (a redo)."""
    old_failures = tree_failures(old_tree) if old_tree is not None else None
    if old_failures is not None:
        logger.info("query %d: redoing a degraded result (%s)", item.index, format_failures(old_failures))
    start = time.perf_counter()
    try:
        root = _run_agent(agent, item, on_event)
        failures = tree_failures({"extra": root.extra})
        if old_failures is not None and sum(failures.values()) > sum(old_failures.values()):
            logger.warning(
                "query %d: the new result has more failed calls (%s) than the one on disk (%s); kept that one",
                item.index,
                format_failures(failures),
                format_failures(old_failures),
            )
            return _skipped(item, old_tree)
        write_text_atomic(path, dumps_tree(root))
    except Exception as err:  # one bad query (or a failed write) must not end the batch
        signature = failure_signature(err)
        logger.error("query %d failed: %s", item.index, signature)
        logger.debug("query %d traceback", item.index, exc_info=True)
        return QueryResult(item, "failed", time.perf_counter() - start, error=signature)
    crawled, selected, actions = summarize_tree(root)
    if any(failures.values()):
        logger.warning("query %d: degraded result (%s)", item.index, format_failures(failures))
    citations = tree_citations({"extra": root.extra})
    seconds = time.perf_counter() - start
    return QueryResult(item, "done", seconds, crawled, selected, actions, failures=failures, citations=citations)


def run_queries(
    agent,
    items: list[QueryItem],
    output_folder: str,
    progress: bool = True,
    redo_degraded: bool = False,
    max_consecutive_failures: int = 0,
    on_event: Callable | None = None,
) -> list[QueryResult]:
    """Run the agent on each item not yet done (:func:`run_query`); a failed query is logged and the batch goes on.

    Done means a result file exists (and, with ``redo_degraded``, records no failed tool call). Concurrent runs on
    one folder split the items; an item locked by another live run is reported as ``locked``. After
    ``max_consecutive_failures`` queries in a row failed with the same error (a model server gone, a full disk),
    the batch stops (0: never).
    """
    from tqdm.auto import tqdm

    os.makedirs(output_folder, exist_ok=True)
    remove_stale_temp_files(output_folder)
    results: list[QueryResult] = []
    last_error, same_errors = None, 0
    bar = tqdm(items, desc="queries", unit="query", disable=not progress)
    for item in bar:
        result = run_query(agent, item, output_folder, on_event, redo_degraded)
        results.append(result)
        if result.status == "done":
            bar.set_postfix(crawled=result.crawled, selected=result.selected)
            last_error, same_errors = None, 0
        if result.status != "failed":
            continue
        same_errors = same_errors + 1 if result.error == last_error else 1
        last_error = result.error
        if max_consecutive_failures and same_errors >= max_consecutive_failures:
            logger.error(
                "stopping the batch: the last %d queries failed with the same error (%s); fix it and run again "
                "(finished queries are kept)",
                same_errors,
                result.error,
            )
            break
    return results


# -- tables ---------------------------------------------------------------------------------------------------------
def count_results(results: list[QueryResult]) -> dict[str, int]:
    counts = Counter(r.status for r in results)
    out = {s: counts.get(s, 0) for s in ("done", "skipped", "locked", "failed")}
    out["degraded"] = sum(r.degraded for r in results)
    return out


def total_citations(results: list[QueryResult]) -> dict[str, int] | None:
    """The citation resolution counts summed over the results that have them (None when none has)."""
    known = [r.citations for r in results if r.citations]
    if not known:
        return None
    return {k: sum(c.get(k, 0) for c in known) for k in CITATION_KINDS}


def summary_line(results: list[QueryResult], total: int | None = None) -> str:
    """``done 3, already on disk 2, failed 0, degraded 1`` (+ ``, running elsewhere N``, ``, not run N``)."""
    c = count_results(results)
    line = f"done {c['done']}, already on disk {c['skipped']}, failed {c['failed']}, degraded {c['degraded']}"
    if c["locked"]:
        line += f", running elsewhere {c['locked']}"
    if total is not None and total > len(results):
        line += f", not run {total - len(results)} (batch stopped)"
    if c["degraded"]:
        line += " (rerun with --redo_degraded to recompute degraded results)"
    return line


def _console():
    """A rich console; piped or captured output gets a fixed width so table rows stay on one line."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def print_summary(results: list[QueryResult], output_folder: str, total: int | None = None) -> None:
    """The batch's table (one row per query) and its one-line summary."""
    from rich.table import Table

    show_citations = any(r.citations for r in results)
    table = Table(title=f"PaSa run -> {output_folder}")
    columns = ["#", "status", "crawled", "selected", "actions", "failures"]
    columns += ["citations"] if show_citations else []
    for col in columns + ["seconds", "query"]:
        table.add_column(col)
    for r in results:
        q = r.item.question if len(r.item.question) < 60 else r.item.question[:57] + "..."
        status = r.status if r.error is None else f"{r.status}: {r.error[:40]}"
        if r.degraded:
            status += " (degraded)"
        row = [str(r.item.index), status, str(r.crawled), str(r.selected), str(r.actions), format_failures(r.failures)]
        row += [format_citations(r.citations)] if show_citations else []
        table.add_row(*row, f"{r.seconds:.1f}", q)
    _console().print(table)
    print(summary_line(results, total))  # plain: one unwrapped line, for logs and scripts
    citations = total_citations(results)
    if citations:
        print(f"cited papers resolved: {format_citations(citations)}")


def print_selected(root: PaperNode, top: int = 20) -> None:
    from rich.table import Table

    nodes = sorted(root.iter_nodes(), key=lambda n: n.select_score, reverse=True)
    table = Table(title=f"Top papers for: {root.title}")
    for col in ("score", "arXiv", "depth", "title"):
        table.add_column(col)
    for n in nodes[:top]:
        table.add_row(f"{n.select_score:.3f}", n.arxiv_id, str(n.depth), n.title)
    _console().print(table)
