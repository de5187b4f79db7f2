"""Run the PaSa agent on one query or a jsonl of queries (``pasa run``, ``run_paper_agent.py``), and the offline demo.

Launch lines::

    # one query, released checkpoints, Google through Serper (SERPER_API_KEY set)
    pasa run --query "Give me papers about ..." \\
        --crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector
    # a benchmark file (AutoScholarQuery / RealScholarQuery format), resumable, one JSON per query
    pasa run --input_file data/RealScholarQuery/test.jsonl --output_dir results/real \\
        --crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector
    # models served elsewhere (vLLM / SGLang / OpenAI-compatible)
    pasa run --query "..." --crawler_path http://localhost:8000/v1#pasa-7b-crawler --selector_path http://localhost:8001/v1
    # the released entry point and flags work as well
    python run_paper_agent.py --input_file q.jsonl --output_folder results/real --crawler_path ... --selector_path ...
    # no checkpoints, no key, no network: the whole loop on a tiny model and an embedded paper set
    pasa demo

Input records: ``question`` (required), ``answer`` (list of titles, optional, copied into the root's ``extra``),
``source_meta.published_time`` (``YYYYMMDD``; the end date is that minus 7 days, as released). Output: one
``<line index>.json`` per query (released naming: 0-based line index), written atomically.

Resuming and sharing a folder: a query whose file exists is skipped, so a killed batch resumes where it stopped;
a *degraded* result (one that records failed tool calls, ``root.extra["failures"]``) counts as done unless
``--redo_degraded`` is given. Each query is computed under a lock file (``<index>.json.lock``, O_EXCL, holding
the pid and host), so two ``pasa run`` on one output folder (or two machines on a shared disk) split the queries;
a lock left by a killed process on the same host is taken over.

Input is checked before any work (``pasa.checks``): bad flags, a missing checkpoint, an unreachable model server, an
output folder that is a file or read-only each give one line and exit status 2 (1 for a server down). A batch
stops after ``--max_consecutive_failures`` queries in a row failed with the same error.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pasa.agent import AgentConfig, PaperAgent
from pasa.checks import (
    CheckError,
    check_agent_knobs,
    check_end_date,
    check_index_dir,
    check_input_file,
    check_int_range,
    check_model_path,
    check_model_server,
    check_output_dir,
    check_selector_endpoint,
    is_http_url,
)
from pasa.io import ItemLock, iter_jsonl, load_json, remove_stale_temp_files, write_text_atomic
from pasa.paper import PaperNode, dumps_tree, is_degraded, normalize_arxiv_id
from pasa.tools.http import ServiceArgs

logger = logging.getLogger(__name__)

END_DATE_OFFSET_DAYS = 7  # released run_paper_agent.py: published_time - 7 days
# Where `pasa download` puts the released paper database; the released utils.py always opened these two files.
DEFAULT_PAPER_DB = os.path.join("data", "paper_database", "cs_paper_2nd.zip")
DEFAULT_ID2PAPER = os.path.join("data", "paper_database", "id2paper.json")
RUN_EXAMPLE = (
    'pasa run --query "Give me papers about retrieval-augmented generation" '
    "--crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector"
)


@dataclass
class QueryItem:
    """One query of a batch: its output index, text, end date and answers."""

    index: int
    question: str
    end_date: str | None = None
    answer: list[str] | None = None


@dataclass
class BatchArgs:
    """Input, output and paper source of a batch of queries (shared by ``pasa run`` and ``pasa baseline``)."""

    query: str | None = field(default=None, metadata={"help": "One user query (instead of --input_file)."})
    input_file: str | None = field(default=None, metadata={"help": "jsonl of queries (AutoScholarQuery format)."})
    end_date: str | None = field(default=None, metadata={"help": "YYYYMMDD cut-off for --query (default: none)."})
    output_dir: str = field(
        default="results",
        metadata={"help": "One JSON tree per query is written here (released name --output_folder accepted)."},
    )
    paper_db: str | None = field(
        default=None,
        metadata={
            "help": f"Released paper DB zip (default: {DEFAULT_PAPER_DB} with --id2paper {DEFAULT_ID2PAPER} when "
            "both files exist, as the released code; `pasa download` puts them there)."
        },
    )
    id2paper: str | None = field(default=None, metadata={"help": "Released id2paper.json beside the zip."})
    search_index: str | None = field(
        default=None, metadata={"help": "Offline search index folder (`pasa index`; old name --index)."}
    )
    title_index: str | None = field(
        default=None,
        metadata={"help": "Title index folder (`pasa build-db`): exact-title lookups tried before the arXiv API."},
    )
    online: bool | None = field(
        default=None, metadata={"help": "Use Serper/arXiv/ar5iv. Default: online iff SERPER_API_KEY is set."}
    )
    no_cache: bool = field(
        default=False, metadata={"help": "Do not use the on-disk HTTP cache (~/.cache/pasa; PASA_NO_CACHE=1 also)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "HTTP cache folder (default ~/.cache/pasa)."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N queries of --input_file."})
    redo_degraded: bool = field(
        default=False,
        metadata={
            "help": "Recompute results on disk that record failed tool calls (extra.failures), instead of "
            "skipping them as done."
        },
    )
    max_consecutive_failures: int = field(
        default=3,
        metadata={"help": "Stop the batch when this many queries in a row failed with the same error; 0 = never."},
    )
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})

    # Old attribute names, for code written against them (the flags are aliased in pasa.flags).
    @property
    def output_folder(self) -> str:
        return self.output_dir

    @output_folder.setter
    def output_folder(self, value: str) -> None:
        self.output_dir = value

    @property
    def index(self) -> str | None:
        return self.search_index


@dataclass
class RunArgs(BatchArgs):
    """Arguments of ``pasa run``: the batch, the two models (the released knobs are in ``AgentConfig``)."""

    crawler_path: str = field(
        default="checkpoints/pasa-7b-crawler",
        metadata={"help": "Crawler: checkpoint folder or OpenAI-compatible URL (http://host:port/v1#model)."},
    )
    selector_path: str = field(
        default="checkpoints/pasa-7b-selector",
        metadata={"help": "Selector: checkpoint folder or OpenAI-compatible URL (http://host:port/v1#model)."},
    )
    selector_endpoint: str = field(
        default="completions",
        metadata={"help": "Selector over HTTP: 'completions' (raw prompt; vLLM, SGLang) or 'chat' (OpenAI models)."},
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts per model call (HF backend)."})
    max_batch_tokens: int = field(
        default=16384,
        metadata={"help": "HF backend: most padded tokens per model call (prompts sorted by length); 0 = no limit."},
    )
    dtype: str = field(default="auto", metadata={"help": "HF backend dtype: auto, bfloat16, float32."})
    device: str | None = field(default=None, metadata={"help": "HF backend device (default: cuda if available)."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa (default) or flash_attention_2 (GPU, needs the `gpu` extra)."}
    )
    crawler_sample: bool = field(
        default=False,
        metadata={
            "help": "Sample the crawler (temperature 2.0, top-p 0.8, as the released RL) instead of greedy; "
            "two sampled runs differ, for the ensemble row (`pasa eval --ensemble`)."
        },
    )
    seed: int | None = field(default=None, metadata={"help": "Random seed (torch) for sampled runs."})
    progress: bool | None = field(
        default=None,
        metadata={"help": "Show each stage's counts while a query runs (default: on for --query, off for a batch)."},
    )

    @property
    def crawler(self) -> str:
        return self.crawler_path

    @crawler.setter
    def crawler(self, value: str) -> None:
        self.crawler_path = value

    @property
    def selector(self) -> str:
        return self.selector_path

    @selector.setter
    def selector(self, value: str) -> None:
        self.selector_path = value


# -- pure helpers -----------------------------------------------------------------------------------------------
def end_date_from_published(published_time: str | None, offset_days: int = END_DATE_OFFSET_DAYS) -> str | None:
    """``YYYYMMDD`` minus ``offset_days``; None when absent. Raises ``ValueError`` on another format.

    >>> end_date_from_published("20240110")
    '20240103'
    """
    if not published_time:
        return None
    day = datetime.strptime(str(published_time), "%Y%m%d") - timedelta(days=offset_days)
    return day.strftime("%Y%m%d")


def load_queries(path: str, limit: int | None = None) -> list[QueryItem]:
    """Read a query jsonl; malformed lines (bad UTF-8 included), records without ``question`` and bad dates are
    logged with their line number and skipped."""
    items: list[QueryItem] = []
    for lineno, record in iter_jsonl(path, required=("question",)):
        question = record["question"]
        if not isinstance(question, str) or not question.strip():
            logger.warning("%s:%d: empty or non-string 'question', skipped", path, lineno)
            continue
        meta = record.get("source_meta") or {}
        try:
            end_date = end_date_from_published(meta.get("published_time") if isinstance(meta, dict) else None)
        except ValueError:
            logger.warning(
                "%s:%d: bad source_meta.published_time %r, skipped", path, lineno, meta.get("published_time")
            )
            continue
        answer = record.get("answer")
        if answer is not None and not (isinstance(answer, list) and all(isinstance(a, str) for a in answer)):
            logger.warning("%s:%d: 'answer' is not a list of titles, skipped", path, lineno)
            continue
        items.append(QueryItem(index=lineno - 1, question=question, end_date=end_date, answer=answer))
        if limit is not None and len(items) >= limit:
            break
    return items


def output_path(folder: str, item: QueryItem) -> str:
    return os.path.join(folder, f"{item.index}.json")


@dataclass
class QueryResult:
    item: QueryItem
    status: str  # "done", "skipped" (already on disk), "locked" (another run is on it), "failed"
    seconds: float = 0.0
    crawled: int = 0
    selected: int = 0
    actions: int = 0
    error: str | None = None
    failures: dict[str, int] | None = None  # the tree's extra.failures (done and skipped results)

    @property
    def degraded(self) -> bool:
        return bool(self.failures) and any(n > 0 for n in self.failures.values())


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
    # is_degraded is the contract's rule; a tree it calls degraded always shows a count > 0 here
    if is_degraded(tree) and not any(counts.values()):
        counts["other"] = 1
    return counts


class ResultConflictError(ValueError):
    """The result file of a query's index holds another query's tree (the input file changed, or another --query
    was run into the same folder)."""


def read_done_result(path: str, question: str | None = None) -> dict[str, int] | None:
    """The failure counts of a finished result on disk, or None when the file is absent or unreadable (then the
    query is computed again; the atomic write never leaves half a file, so this is a file damaged by other means).

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
    return tree_failures(tree)


def format_failures(failures: dict[str, int] | None) -> str:
    """``search 1, lookup 3`` (kinds with a count > 0)."""
    return ", ".join(f"{k} {n}" for k, n in (failures or {}).items() if n)


def _failure_signature(err: BaseException) -> str:
    """``Type: message`` with object addresses blanked (a refused connection names a new one each time)."""
    return f"{type(err).__name__}: {re.sub(r'0x[0-9a-fA-F]+', '0x..', str(err))}"


def run_queries(
    agent: PaperAgent,
    items: list[QueryItem],
    output_folder: str,
    progress: bool = True,
    redo_degraded: bool = False,
    max_consecutive_failures: int = 0,
) -> list[QueryResult]:
    """Run the agent on each item not yet done; a failed query is logged and the batch goes on.

    Done means a result file exists (and, with ``redo_degraded``, records no failed tool call). Each query runs
    under an :class:`pasa.io.ItemLock`, so concurrent runs on one folder split the items; an item locked by
    another live run is reported as ``locked``. After ``max_consecutive_failures`` queries in a row failed with
    the same error (a model server gone, a full disk), the batch stops (0: never).
    """
    from tqdm.auto import tqdm

    os.makedirs(output_folder, exist_ok=True)
    remove_stale_temp_files(output_folder)
    results: list[QueryResult] = []
    last_error, same_errors = None, 0
    bar = tqdm(items, desc="queries", unit="query", disable=not progress)
    for item in bar:
        path = output_path(output_folder, item)
        try:
            failures = read_done_result(path, item.question)
        except ResultConflictError as err:
            logger.error("query %d: %s", item.index, err)
            results.append(QueryResult(item, "failed", error=str(err)))
            continue
        if failures is not None and not (redo_degraded and any(failures.values())):
            results.append(QueryResult(item, "skipped", failures=failures))
            continue
        lock = ItemLock(path)
        if not lock.acquire():
            logger.info("query %d: computed by another run (%s), skipped", item.index, lock.describe_owner())
            results.append(QueryResult(item, "locked", error=f"locked by {lock.describe_owner()}"))
            continue
        try:
            failures = read_done_result(path)  # another run may have finished it meanwhile
            if failures is not None and not (redo_degraded and any(failures.values())):
                results.append(QueryResult(item, "skipped", failures=failures))
                continue
            old_failures = failures
            if old_failures is not None:
                logger.info("query %d: redoing a degraded result (%s)", item.index, format_failures(old_failures))
            start = time.perf_counter()
            try:
                root = agent.run(item.question, end_date=item.end_date, answer=item.answer)
                failures = tree_failures({"extra": root.extra})
                if old_failures is not None and sum(failures.values()) > sum(old_failures.values()):
                    logger.warning(
                        "query %d: the new result has more failed calls (%s) than the one on disk (%s); kept that one",
                        item.index,
                        format_failures(failures),
                        format_failures(old_failures),
                    )
                    results.append(QueryResult(item, "skipped", failures=old_failures))
                    continue
                write_text_atomic(path, dumps_tree(root))
            except Exception as err:  # one bad query (or a failed write) must not end the batch
                signature = _failure_signature(err)
                logger.error("query %d failed: %s", item.index, signature)
                logger.debug("query %d traceback", item.index, exc_info=True)
                results.append(QueryResult(item, "failed", time.perf_counter() - start, error=signature))
                same_errors = same_errors + 1 if signature == last_error else 1
                last_error = signature
                if max_consecutive_failures and same_errors >= max_consecutive_failures:
                    logger.error(
                        "stopping the batch: the last %d queries failed with the same error (%s); fix it and run "
                        "again (finished queries are kept)",
                        same_errors,
                        signature,
                    )
                    break
                continue
            last_error, same_errors = None, 0
        finally:
            lock.release()
        crawled, selected, actions = summarize_tree(root)
        if any(failures.values()):
            logger.warning("query %d: degraded result (%s)", item.index, format_failures(failures))
        results.append(
            QueryResult(item, "done", time.perf_counter() - start, crawled, selected, actions, failures=failures)
        )
        bar.set_postfix(crawled=crawled, selected=selected)
    return results


def count_results(results: list[QueryResult]) -> dict[str, int]:
    counts = Counter(r.status for r in results)
    out = {s: counts.get(s, 0) for s in ("done", "skipped", "locked", "failed")}
    out["degraded"] = sum(r.degraded for r in results)
    return out


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
    from rich.table import Table

    table = Table(title=f"PaSa run -> {output_folder}")
    for col in ("#", "status", "crawled", "selected", "actions", "failures", "seconds", "query"):
        table.add_column(col)
    for r in results:
        q = r.item.question if len(r.item.question) < 60 else r.item.question[:57] + "..."
        status = r.status if r.error is None else f"{r.status}: {r.error[:40]}"
        if r.degraded:
            status += " (degraded)"
        table.add_row(
            str(r.item.index),
            status,
            str(r.crawled),
            str(r.selected),
            str(r.actions),
            format_failures(r.failures),
            f"{r.seconds:.1f}",
            q,
        )
    _console().print(table)
    print(summary_line(results, total))  # plain: one unwrapped line, for logs and scripts


def print_selected(root: PaperNode, top: int = 20) -> None:
    from rich.table import Table

    nodes = sorted(root.iter_nodes(), key=lambda n: n.select_score, reverse=True)
    table = Table(title=f"Top papers for: {root.title}")
    for col in ("score", "arXiv", "depth", "title"):
        table.add_column(col)
    for n in nodes[:top]:
        table.add_row(f"{n.select_score:.3f}", n.arxiv_id, str(n.depth), n.title)
    _console().print(table)


# -- stage progress of one query (issue 12 item 7) ---------------------------------------------------------------
class StageProgress:
    """Counts of the agent's stages while one query runs, per layer: layer 0 is the search (crawler queries,
    searches, id lookups, selector), layer N the N-th expansion (section fetches, crawler, citation lookups,
    selector).

    Fed by the wrappers below, which sit between the agent and its crawler, selector and paper source, so the agent
    needs no callback; they place each call in its layer from the papers it concerns (a paper found by search is at
    depth 0; one cited by a depth-d paper at depth d + 1). The agent streams, so layers overlap and all counts run
    at once. ``on_update`` (a live status) sees every change; ``write`` gets the lines at most every ``interval``
    seconds while counts change (for logs, where there is no live status) and once at the end.
    """

    def __init__(self, write=None, on_update=None, interval: float = 10.0):
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))
        self.on_update = on_update
        self.interval = interval
        self.counts: Counter = Counter()  # (layer, key) -> n
        self.started = time.perf_counter()
        self._last_write = self.started
        self._written = ""
        self._lock = threading.Lock()
        # what the wrappers learned about the run's papers (guarded by _lock)
        self.title_depth: dict[str, int] = {}  # paper title (and cited string) -> depth
        self.id_depth: dict[str, int] = {}  # arXiv id -> depth
        self.sections: dict[str, dict] = {}  # paper title -> its sections (section -> cited titles)
        self.section_ids: dict[str, dict] = {}  # paper title -> its cited arXiv ids, parallel to sections
        self.id_title: dict[str, str] = {}  # arXiv id -> title

    def add(self, key: str, n: int = 1, layer: int = 0) -> None:
        with self._lock:
            self.counts[(layer, key)] += n
            text = self.text()
            due = self.interval and time.perf_counter() - self._last_write >= self.interval
            if due:
                self._last_write = time.perf_counter()
        if self.on_update is not None:
            self.on_update(text)
        if due:
            self._emit(text)

    def learn(self, paper, depth: int) -> None:
        """Record a paper the source returned, at ``depth`` (the first depth seen wins, as ``touch_ids``)."""
        if paper is None:
            return
        with self._lock:
            self.title_depth.setdefault(paper.title, depth)
            if paper.arxiv_id:
                self.id_depth.setdefault(normalize_arxiv_id(paper.arxiv_id), depth)
                self.id_title.setdefault(normalize_arxiv_id(paper.arxiv_id), paper.title)
            if isinstance(paper.sections, dict):
                self.sections.setdefault(paper.title, paper.sections)
                if getattr(paper, "section_ids", None):
                    self.section_ids.setdefault(paper.title, paper.section_ids)

    def finish(self) -> None:
        with self._lock:
            text = self.text()
        self._emit(text)

    def _emit(self, text: str) -> None:
        if text != self._written:
            self._written = text
            self.write(text)

    def text(self) -> str:
        """One line per stage started::

        [12.3s] search: 5 queries, 5 calls -> 47 ids, 40 lookups; selector 38 scored, 6 selected
        [12.3s] layer 1: 30 sections fetched, crawler 30 papers -> 61 sections, 220 lookups -> 150 found; ...
        """
        c = self.counts
        elapsed = f"[{time.perf_counter() - self.started:.1f}s]"
        layers = sorted({layer for layer, _ in c})
        lines = []
        for layer in layers or [0]:
            if layer == 0:
                line = (
                    f"search: {c[0, 'queries']} queries, {c[0, 'search']} calls -> {c[0, 'ids']} ids, "
                    f"{c[0, 'lookup']} lookups"
                )
            else:
                line = (
                    f"layer {layer}: {c[layer, 'sections']} sections fetched, crawler {c[layer, 'crawler']} papers "
                    f"-> {c[layer, 'chosen']} sections, {c[layer, 'lookup']} lookups -> {c[layer, 'found']} found"
                )
            line += f"; selector {c[layer, 'scored']} scored, {c[layer, 'selected']} selected"
            if c[layer, "failed"]:
                line += f"; {c[layer, 'failed']} failed calls"
            lines.append(f"{elapsed} {line}")
        return "\n".join(lines)


class _Delegate:
    def __init__(self, inner, progress: StageProgress):
        self._inner, self._progress = inner, progress

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _ProgressCrawler(_Delegate):
    """Counts the crawler's search queries and expansions; marks the cited titles and ids of chosen sections."""

    def search_queries(self, *args, **kwargs):
        out = self._inner.search_queries(*args, **kwargs)
        self._progress.add("queries", len(out[0]) if isinstance(out, tuple) else len(out))
        return out

    def expand_sections(self, user_query, papers, *args, **kwargs):
        out = self._inner.expand_sections(user_query, papers, *args, **kwargs)
        p = self._progress
        per_layer: Counter = Counter()
        for item, (chosen, *_) in zip(papers, out, strict=False):
            title = item[0]
            with p._lock:
                layer = p.title_depth.get(title, 0) + 1
                sections, ids = p.sections.get(title) or {}, p.section_ids.get(title) or {}
                for section in chosen:
                    for cited in sections.get(section) or []:
                        if isinstance(cited, str):
                            p.title_depth.setdefault(cited, layer)
                    for arxiv_id in ids.get(section) or []:
                        if arxiv_id:
                            p.id_depth.setdefault(normalize_arxiv_id(arxiv_id), layer)
            per_layer[layer, "crawler"] += 1
            per_layer[layer, "chosen"] += len(chosen)
        for (layer, key), n in per_layer.items():
            p.add(key, n, layer)
        return out


class _ProgressSelector(_Delegate):
    def score(self, user_query, papers, *args, **kwargs):
        scores = self._inner.score(user_query, papers, *args, **kwargs)
        p = self._progress
        per_layer: Counter = Counter()
        for (title, *_), score in zip(papers, scores, strict=False):
            with p._lock:
                layer = p.title_depth.get(title, 0)
            per_layer[layer, "scored"] += 1
            per_layer[layer, "selected"] += bool(self._inner.is_selected(score))
        for (layer, key), n in per_layer.items():
            p.add(key, n, layer)
        return scores


class _ProgressSource(_Delegate):
    def _call(self, key: str, layer: int, method: str, *args, **kwargs):
        try:
            out = getattr(self._inner, method)(*args, **kwargs)
        except Exception:
            self._progress.add("failed", 1, layer)
            raise
        self._progress.add(key, 1, layer)
        return out

    def search(self, *args, **kwargs):
        ids = self._call("search", 0, "search", *args, **kwargs)
        self._progress.add("ids", len(ids or []))
        return ids

    def get_by_id(self, arxiv_id, *args, **kwargs):
        with self._progress._lock:  # a cited id (expansion) or a search result (layer 0)
            layer = self._progress.id_depth.get(normalize_arxiv_id(arxiv_id), 0)
        paper = self._call("lookup", layer, "get_by_id", arxiv_id, *args, **kwargs)
        if paper is not None and layer:
            self._progress.add("found", 1, layer)
        self._progress.learn(paper, layer)
        return paper

    def get_sections(self, arxiv_id, *args, **kwargs):
        p, key = self._progress, normalize_arxiv_id(arxiv_id)
        with p._lock:
            depth = p.id_depth.get(key, 0)
        sections = self._call("sections", depth + 1, "get_sections", arxiv_id, *args, **kwargs)
        with p._lock:
            if isinstance(sections, dict) and sections and key in p.id_title:
                p.sections[p.id_title[key]] = sections  # the agent expands these (fetched sections carry no ids)
                p.section_ids.pop(p.id_title[key], None)
        return sections

    def get_by_title(self, title, *args, **kwargs):
        with self._progress._lock:
            layer = self._progress.title_depth.get(title, 1)
        paper = self._call("lookup", layer, "get_by_title", title, *args, **kwargs)
        if paper is not None:
            self._progress.add("found", 1, layer)
        self._progress.learn(paper, layer)
        return paper


def with_stage_progress(agent: PaperAgent, progress: StageProgress) -> PaperAgent:
    """A copy of ``agent`` whose crawler, selector and source report to ``progress`` (same results)."""
    return PaperAgent(
        _ProgressCrawler(agent.crawler, progress),
        _ProgressSelector(agent.selector, progress),
        _ProgressSource(agent.source, progress),
        agent.config,
    )


def run_with_progress(agent: PaperAgent, item: QueryItem, output_folder: str, **kwargs) -> list[QueryResult]:
    """``run_queries`` for one query, showing the stages' counts live: a status line on a terminal, else a line on
    stderr every 10 s while they change; the final counts are printed in both cases."""
    from rich.console import Console

    console = Console(stderr=True)
    progress = StageProgress(write=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
    traced = with_stage_progress(agent, progress)
    if not console.is_terminal:
        try:
            return run_queries(traced, [item], output_folder, progress=False, **kwargs)
        finally:
            progress.finish()
    progress.interval = 0  # the live line shows everything; only the final counts stay on screen
    with console.status("starting") as status:
        progress.on_update = status.update
        try:
            return run_queries(traced, [item], output_folder, progress=False, **kwargs)
        finally:
            progress.on_update = None
    progress.finish()


# -- entry points -----------------------------------------------------------------------------------------------
def make_parser(prog: str = "pasa run"):
    from pasa.flags import make_parser as make_flag_parser

    return make_flag_parser(
        (RunArgs, AgentConfig, ServiceArgs),
        prog=prog,
        example=RUN_EXAMPLE,
        description="Run the PaSa agent (crawler + selector) on one query or a jsonl of queries.",
    )


def build_source(args: BatchArgs, released_behaviour: bool = False, service: ServiceArgs | None = None):
    """The paper source of a batch (``build_paper_source``) with the command line's HTTP cache and service settings
    (``ServiceArgs``; unset: the ``PASA_*`` environment) and the tools layer's released switch."""
    from pasa.tools.http import HttpClient
    from pasa.tools.sources import build_paper_source

    paper_db, id2paper = args.paper_db, args.id2paper
    if paper_db is None and id2paper is None and os.path.isfile(DEFAULT_PAPER_DB) and os.path.isfile(DEFAULT_ID2PAPER):
        logger.info("paper database: %s (the default location)", DEFAULT_PAPER_DB)
        paper_db, id2paper = DEFAULT_PAPER_DB, DEFAULT_ID2PAPER
    http = None
    if service is not None or args.no_cache or args.cache_dir:
        service = service if service is not None else ServiceArgs()
        http = HttpClient(service.http_config(cache=not args.no_cache, cache_dir=args.cache_dir))
    return build_paper_source(
        paper_db=paper_db,
        id2paper=id2paper,
        index=args.search_index,
        online=args.online,
        http=http,
        service=service,
        title_index=args.title_index,
        released_behaviour=released_behaviour,
    )


def build_agent(args: RunArgs, config: AgentConfig, source=None, service=None) -> PaperAgent:
    """Load the two models (one instance when both specs are the same) and the paper source."""
    from pasa.crawler import Crawler
    from pasa.llm import load_llm
    from pasa.selector import Selector

    if source is None:
        source = build_source(args, getattr(config, "released_behaviour", False), service)
    opts: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "dtype": args.dtype,
        "device": args.device,
    }
    opts["selector_endpoint"] = args.selector_endpoint  # load_llm keeps only what the backend's config has
    if service is not None:
        opts["timeout"] = service.llm_timeout
    if args.attn_implementation:
        opts["attn_implementation"] = args.attn_implementation
    crawler_llm = load_llm(args.crawler_path, **opts)
    selector_llm = crawler_llm if args.selector_path == args.crawler_path else load_llm(args.selector_path, **opts)
    if args.seed is not None:
        import torch

        torch.manual_seed(args.seed)
    return PaperAgent(Crawler(crawler_llm, sample=args.crawler_sample), Selector(selector_llm), source, config)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s"
    )


def check_batch_args(args: BatchArgs) -> None:
    """The checks every batch command shares (``pasa run``, ``pasa baseline``); raises ``CheckError``."""
    if bool(args.query) == bool(args.input_file):
        raise CheckError("pass exactly one of --query or --input_file")
    if args.input_file:
        check_input_file(args.input_file)
    check_end_date(args.end_date)
    if args.limit is not None:
        check_int_range(args.limit, "--limit", 1)
    check_int_range(args.max_consecutive_failures, "--max_consecutive_failures", 0)
    if args.search_index:
        check_index_dir(args.search_index)
    if args.title_index:
        check_index_dir(args.title_index, "--title_index", command="pasa build-db")
    for flag, path in (("--paper_db", args.paper_db), ("--id2paper", args.id2paper)):
        if path and not os.path.isfile(path):
            raise CheckError(f"{flag} {path!r} is not a file; run `pasa download --only data`")
    check_output_dir(args.output_dir)


def check_run_args(args: RunArgs, config: AgentConfig) -> None:
    """Everything ``pasa run`` can check before loading a model or computing a query; raises ``CheckError``."""
    check_batch_args(args)
    check_agent_knobs(config)
    check_int_range(args.batch_size, "--batch_size", 1)
    check_int_range(args.max_batch_tokens, "--max_batch_tokens", 0)
    check_selector_endpoint(args.selector_endpoint)
    for flag, spec in (("--crawler_path", args.crawler_path), ("--selector_path", args.selector_path)):
        check_model_path(spec, flag, allow_url=True)


def check_model_servers(args: RunArgs, timeout: float = 10.0) -> None:
    """One request to each model server named by URL, before the batch."""
    seen = set()
    for flag, spec in (("--crawler_path", args.crawler_path), ("--selector_path", args.selector_path)):
        if is_http_url(spec) and spec not in seen:
            seen.add(spec)
            check_model_server(spec, flag, timeout=timeout)


def load_items(args: BatchArgs, parser=None) -> list[QueryItem]:
    """The queries of ``--query`` or ``--input_file`` (exactly one); raises ``CheckError`` on bad input, or,
    given the command's ``parser``, prints it as one line and exits with status 2."""
    try:
        if bool(args.query) == bool(args.input_file):
            raise CheckError("pass exactly one of --query or --input_file")
        if not args.input_file:
            return [QueryItem(index=0, question=args.query, end_date=args.end_date)]
        check_input_file(args.input_file)
        items = load_queries(args.input_file, args.limit)
        print(f"{len(items)} queries from {args.input_file}")
        if not items:
            raise CheckError(f"--input_file {args.input_file!r} has no usable query (see the warnings above)")
        return items
    except CheckError as err:
        if parser is None:
            raise
        from pasa.checks import exit_with

        exit_with(err, parser.prog)


def parse_args(argv: list[str] | None, prog: str = "pasa run"):
    """``(RunArgs, AgentConfig, ServiceArgs)`` from a command line with old flag names rewritten; a bad
    value of a dataclass field (``ServiceArgs``' checks) is one line and exit status 2."""
    from pasa.checks import exit_with
    from pasa.flags import rewrite_argv

    parser = make_parser(prog)
    argv = rewrite_argv(argv, parser, prog=prog)
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:  # a dataclass __post_init__ refusing a value
        exit_with(CheckError(str(err).splitlines()[0] if str(err) else type(err).__name__), prog)
    return parsed[0], parsed[1], parsed[2]


def main(argv: list[str] | None = None, source=None, prog: str = "pasa run") -> int:
    from pasa.checks import exit_with

    args, config, service = parse_args(argv, prog)
    setup_logging(args.log_level)
    try:
        check_run_args(args, config)
        items = load_items(args)
        check_model_servers(args)
        agent = build_agent(args, config, source, service)
    except CheckError as err:
        exit_with(err, prog)
    except (ValueError, OSError) as err:  # no usable paper source, missing key, damaged index
        exit_with(CheckError(str(err).splitlines()[0] if str(err) else type(err).__name__), prog)
    show_stages = args.progress if args.progress is not None else bool(args.query)
    batch = {"redo_degraded": args.redo_degraded, "max_consecutive_failures": args.max_consecutive_failures}
    if show_stages and len(items) == 1:
        results = run_with_progress(agent, items[0], args.output_dir, **batch)
    else:
        results = run_queries(agent, items, args.output_dir, progress=len(items) > 1, **batch)
    print_summary(results, args.output_dir, total=len(items))
    if args.query and results and results[0].status in ("done", "skipped"):
        from pasa.paper import PaperNode

        print_selected(PaperNode.from_dict(load_json(output_path(args.output_dir, items[0]))))
    stopped = len(results) < len(items)
    return 1 if stopped or any(r.status == "failed" for r in results) else 0


DEMO_QUERY = "Give me papers about retrieval-augmented generation for language models"


def demo_main(argv: list[str] | None = None) -> int:
    """``pasa demo``: the whole loop offline, on a tiny model built on the spot and the embedded paper set."""
    import re
    import tempfile

    from pasa.flags import make_argparser, rewrite_argv

    parser = make_argparser(prog="pasa demo", example="pasa demo --query '...'", description=demo_main.__doc__)
    parser.add_argument("--query", default=DEMO_QUERY, help="The user query.")
    parser.add_argument(
        "--output_dir",
        default=os.path.join(tempfile.gettempdir(), "pasa-demo"),
        help="Tiny checkpoint and result tree go here.",
    )
    parser.add_argument("--log_level", default="WARNING", help="Logging level.")
    args = parser.parse_args(rewrite_argv(argv, parser))
    setup_logging(args.log_level)

    from pasa.crawler import Crawler
    from pasa.demo import build_tiny_checkpoint, demo_papers
    from pasa.llm.hf import HFLLM, HFLLMConfig
    from pasa.llm.scripted import ScriptedLLM, prompt_user_query
    from pasa.selector import Selector
    from pasa.tools.sources import InMemoryPaperSource

    papers = demo_papers()
    ckpt = os.path.join(args.output_dir, "tiny-qwen2")
    if not os.path.exists(os.path.join(ckpt, "config.json")):
        build_tiny_checkpoint(ckpt)
    selector_llm = HFLLM(HFLLMConfig(ckpt, device="cpu", max_new_tokens=16))

    def crawler_reply(prompt: str) -> str:
        query = prompt_user_query(prompt)
        if query is not None:  # search session: the query itself and its two halves
            words = re.findall(r"[\w-]+", query)
            half = len(words) // 2
            qs = [" ".join(words), " ".join(words[:half]), " ".join(words[half:])]
            return "".join(f"[Search] {q}\n" for q in qs) + "[StopSearch]"
        names = re.findall(r"'([^']*)'", prompt.rsplit("Sections:", 1)[-1])
        return "".join(f"[Expand] {n}\n" for n in names[:2]) + "[StopExpand]"

    print("PaSa demo -- what runs here:")
    print("  crawler : a rule-based stand-in (ScriptedLLM): searches the query and its halves, expands 2 sections")
    print(f"  selector: a tiny RANDOM Qwen2 ({ckpt}) through the real HF backend: P(True) is computed for real,")
    print("            but the scores are meaningless (untrained weights)")
    print(f"  papers  : {len(papers)} embedded papers (pasa/demo_data), bag-of-words search, in-memory citations")
    agent = PaperAgent(
        Crawler(ScriptedLLM(reply_fn=crawler_reply)),
        Selector(selector_llm),
        InMemoryPaperSource(papers),
        AgentConfig(search_papers=3, expand_papers=3),
    )
    item = QueryItem(index=0, question=args.query)
    out = os.path.join(args.output_dir, "results")
    if os.path.exists(output_path(out, item)):  # the demo always runs: no resume
        os.unlink(output_path(out, item))
    results = run_queries(agent, [item], out, progress=False)
    print_summary(results, out)
    if results[0].status == "done":
        with open(output_path(out, item), encoding="utf-8") as f:
            from pasa.paper import loads_tree

            print_selected(loads_tree(f.read()))
        print(f"result tree: {output_path(out, item)}")
        from pasa.demo import DEMO_NEXT_STEPS

        print(DEMO_NEXT_STEPS)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
