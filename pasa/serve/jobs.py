"""The searches of ``pasa serve``: checked requests, their records on disk, and the queue that runs them.

The output folder has the ``pasa run`` layout, one JSON tree per search, plus one record per search::

    <id>.json              the result tree (released JSON), written atomically when the search ends
    <id>.json.lock         while the search runs (``pasa.io.ItemLock``: one search never runs twice at once,
                           also across servers sharing the folder)
    searches/<id>.json     the record: query, end date, seed papers, status, times, stage counts, error

A search id is its index in that layout (``3`` -> ``3.json``), so ``pasa eval`` reads the folder as it is. On start
the queue reads the records back: finished searches are served from disk, queued and running ones queue again.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pasa.io import ItemLock, file_mode, load_json, remove_stale_temp_files, write_json_atomic
from pasa.paper import ARXIV_ID_RE, is_degraded, normalize_arxiv_id
from pasa.serve.results import paper_counts, stage_counts, tree_papers

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000
MAX_SEED_PAPERS = 50
REQUEST_FIELDS = ("query", "end_date", "seed_papers")
STATUSES = ("queued", "running", "done", "failed")
RECORD_DIR = "searches"
LOCKED_RETRY_S = 5.0  # a search another server is running is looked at again after this long
_TREE_NAME_RE = re.compile(r"^(\d+)\.json$")


class BadRequestError(ValueError):
    """A search request that cannot run; the message is one line naming what is wrong."""


class QueueFullError(RuntimeError):
    """Too many searches are waiting."""


@dataclass(frozen=True)
class SearchRequest:
    """A checked search request: the query (stripped), its end date and its seed papers (normalized arXiv ids)."""

    query: str
    end_date: str | None = None
    seed_papers: tuple[str, ...] = ()


def parse_search_request(body: Any) -> SearchRequest:
    """Check a ``POST /api/search`` body; raises ``BadRequestError`` with one line.

    >>> parse_search_request({"query": " RAG ", "seed_papers": ["arXiv:2005.11401v2"]})
    SearchRequest(query='RAG', end_date=None, seed_papers=('2005.11401',))
    >>> parse_search_request({"query": "RAG", "end_date": "2024-01-01"})
    Traceback (most recent call last):
    ...
    pasa.serve.jobs.BadRequestError: 'end_date' must be a date as YYYYMMDD, e.g. "20240131"; got '2024-01-01'
    """
    if not isinstance(body, dict):
        raise BadRequestError('the body must be a JSON object, e.g. {"query": "papers about ..."}')
    unknown = [k for k in body if k not in REQUEST_FIELDS]
    if unknown:
        raise BadRequestError(f"unknown field {unknown[0]!r}; the fields are {', '.join(REQUEST_FIELDS)}")
    query = body.get("query")
    if not isinstance(query, str):
        raise BadRequestError("'query' must be a string describing the papers you are looking for")
    query = query.strip()
    if not query:
        raise BadRequestError("'query' is empty; describe the papers you are looking for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequestError(f"'query' has {len(query)} characters; the most is {MAX_QUERY_CHARS}")
    end_date = body.get("end_date")
    if end_date is not None:
        if not isinstance(end_date, str) or not _is_yyyymmdd(end_date):
            raise BadRequestError(f"'end_date' must be a date as YYYYMMDD, e.g. \"20240131\"; got {end_date!r}")
    seeds = body.get("seed_papers")
    if seeds is None:
        seeds = []
    if not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds):
        raise BadRequestError("'seed_papers' must be a list of arXiv ids, e.g. [\"2005.11401\"]")
    ids: list[str] = []
    for seed in seeds:
        arxiv_id = normalize_arxiv_id(seed)
        if not ARXIV_ID_RE.match(arxiv_id):
            raise BadRequestError(f"'seed_papers': {seed!r} is not an arXiv id (e.g. 2005.11401 or hep-th/9901001)")
        if arxiv_id not in ids:
            ids.append(arxiv_id)
    if len(ids) > MAX_SEED_PAPERS:
        raise BadRequestError(f"'seed_papers' has {len(ids)} ids; the most is {MAX_SEED_PAPERS}")
    return SearchRequest(query, end_date, tuple(ids))


def _is_yyyymmdd(text: str) -> bool:
    if not re.fullmatch(r"\d{8}", text):
        return False
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return True


@dataclass
class Search:
    """One search: what was asked, where it stands, and (once done) its ranked papers."""

    id: str
    query: str
    end_date: str | None = None
    seed_papers: list[str] = field(default_factory=list)
    status: str = "queued"
    error: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    progress: dict[str, dict[str, int]] = field(default_factory=dict)  # stage counts (results.stage_counts)
    # not in the record: read from the tree on first use, and a change counter for event streams
    papers: list[dict[str, Any]] | None = field(default=None, repr=False)
    degraded: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    version: int = 0

    RECORD_KEYS = ("id", "query", "end_date", "seed_papers", "status", "error", "created", "started", "finished")

    def record(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.RECORD_KEYS}
        out["progress"] = self.progress
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Search:
        kept = {k: record[k] for k in (*cls.RECORD_KEYS, "progress") if k in record}
        return cls(**kept)


def default_run_search(agent, item, output_dir: str, on_counts: Callable[[dict], None]):
    """Run one search as the batch runner runs a query (``pasa.batch.run_query``: under the item's lock, the tree
    written atomically at ``<output_dir>/<index>.json``); ``on_counts`` gets the stage counts as they change.
    Returns the ``QueryResult``."""
    from pasa.batch import run_query
    from pasa.progress import StageProgress

    progress = StageProgress(write=lambda text: None, interval=0)
    progress.on_update = lambda text: on_counts(stage_counts(progress.counts))
    try:
        return run_query(agent, item, output_dir, on_event=progress.on_event)
    finally:
        on_counts(stage_counts(progress.counts))


class SearchQueue:
    """Runs searches ``max_concurrent`` at a time in worker threads (the models are shared, loaded once) and keeps
    each search's record in ``output_dir``.

    ``run_search(agent, item, output_dir, on_counts) -> QueryResult`` runs one search (default: the batch runner's).
    """

    def __init__(
        self,
        agent,
        output_dir: str,
        max_concurrent: int = 1,
        max_queued: int = 100,
        run_search: Callable | None = None,
        locked_retry_s: float = LOCKED_RETRY_S,
    ):
        self.agent = agent
        self.output_dir = output_dir
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.run_search = run_search or default_run_search
        self.locked_retry_s = locked_retry_s
        self.searches: dict[str, Search] = {}
        self._lock = threading.Lock()
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._closing = threading.Event()
        self._next_index = 0

    # -- start and stop ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the records back (finished searches served from disk, the others queued again), start the workers."""
        os.makedirs(os.path.join(self.output_dir, RECORD_DIR), exist_ok=True)
        for folder in (self.output_dir, os.path.join(self.output_dir, RECORD_DIR)):
            remove_stale_temp_files(folder)  # half-written files of a killed server
        requeued = []
        for search in self._read_records():
            self.searches[search.id] = search
            tree_missing = search.status == "done" and not os.path.exists(self.tree_path(search.id))
            if search.status in ("queued", "running") or tree_missing:
                search.status, search.started, search.finished = "queued", None, None
                requeued.append(search)
        for search in sorted(requeued, key=lambda s: int(s.id)):
            self._save(search)
            self._pending.put(search.id)
        if requeued:
            logger.info("queued again after a restart: %d searches", len(requeued))
        self._next_index = self._first_free_index()
        for n in range(self.max_concurrent):
            worker = threading.Thread(target=self._work, name=f"pasa-serve-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking searches and wait up to ``timeout`` for the running ones; one still running then (or failing
        because the process stops under it) keeps a record that queues it again at the next start."""
        self._closing.set()
        for _ in self._workers:
            self._pending.put(None)
        for worker in self._workers:
            worker.join(timeout)
        self._workers = []

    # -- the API's view ------------------------------------------------------------------------------------------
    def submit(self, request: SearchRequest) -> Search:
        """Queue a search; raises ``QueueFullError`` when ``max_queued`` searches are waiting."""
        with self._lock:
            waiting = sum(s.status == "queued" for s in self.searches.values())
            if waiting >= self.max_queued:
                raise QueueFullError(f"the queue is full ({waiting} searches waiting); try again later")
            search = Search(
                id=self._claim_id(),
                query=request.query,
                end_date=request.end_date,
                seed_papers=list(request.seed_papers),
                created=time.time(),
            )
            self.searches[search.id] = search
        self._save(search)
        self._pending.put(search.id)
        logger.info("search %s queued: %r", search.id, search.query)
        return search

    def get(self, search_id: str) -> Search | None:
        search = self.searches.get(search_id)
        if search is not None and search.status == "done" and search.papers is None:
            self._load_tree(search)
        return search

    def recent(self, limit: int = 50) -> list[Search]:
        with self._lock:
            searches = list(self.searches.values())
        newest = sorted(searches, key=lambda s: (s.created, int(s.id)), reverse=True)[:limit]
        return [self.get(s.id) for s in newest]

    def limits(self) -> dict[str, int]:
        return {"max_concurrent_searches": self.max_concurrent, "max_queued_searches": self.max_queued}

    def counts(self) -> dict[str, int]:
        with self._lock:
            statuses = [s.status for s in self.searches.values()]
        return {status: statuses.count(status) for status in STATUSES}

    def tree_path(self, search_id: str) -> str:
        return os.path.join(self.output_dir, f"{search_id}.json")

    # -- running ---------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            search_id = self._pending.get()
            if search_id is None:
                return
            search = self.searches[search_id]
            try:
                self._run(search)
            except Exception as err:  # the server outlives any search
                self._fail(search, f"{type(err).__name__}: {err}")
                logger.error("search %s failed: %s: %s", search.id, type(err).__name__, err)

    def _run(self, search: Search) -> None:
        from pasa.queries import QueryItem

        with self._lock:
            search.status, search.started, search.error = "running", time.time(), None
            search.version += 1
        self._save(search)
        seeds = list(search.seed_papers) or None
        item = QueryItem(index=int(search.id), question=search.query, end_date=search.end_date, seed_papers=seeds)
        result = self.run_search(self.agent, item, self.output_dir, lambda counts: self._set_progress(search, counts))
        if result.status in ("done", "skipped"):  # skipped: another server finished it meanwhile
            self._finish(search, "done")
        elif result.status == "locked":  # another server is running it: look again later
            with self._lock:
                search.status = "queued"
                search.version += 1
            self._save(search)
            retry = threading.Timer(self.locked_retry_s, self._pending.put, (search.id,))
            retry.daemon = True
            retry.start()
        else:
            self._fail(search, result.error or "the search failed")

    def _fail(self, search: Search, error: str) -> None:
        if self._closing.is_set():  # the server is stopping under it: run it again at the next start
            with self._lock:
                search.status, search.started = "queued", None
                search.version += 1
            self._save(search)
            logger.info("search %s stopped with the server; it runs again at the next start", search.id)
            return
        self._finish(search, "failed", error=error)

    def _set_progress(self, search: Search, counts: dict[str, dict[str, int]]) -> None:
        with self._lock:
            search.progress = counts
            search.version += 1

    def _finish(self, search: Search, status: str, error: str | None = None) -> None:
        if status == "done":
            self._load_tree(search)
        with self._lock:
            search.status, search.error, search.finished = status, error, time.time()
            search.version += 1
        self._save(search)
        if status == "done":
            n = paper_counts(search.papers or [])
            logger.info(
                "search %s done: %d papers, %d selected%s",
                search.id,
                n["papers"],
                n["selected"],
                " (degraded)" if search.degraded else "",
            )

    def _load_tree(self, search: Search) -> None:
        try:
            tree = load_json(self.tree_path(search.id))
        except (OSError, ValueError) as err:
            logger.warning("search %s: result tree unreadable (%s)", search.id, err)
            tree = {}
        failures = (tree.get("extra") or {}).get("failures") or {}
        search.failures = {k: v for k, v in failures.items() if isinstance(v, int) and v}
        search.degraded = is_degraded(tree)
        search.papers = tree_papers(tree)

    # -- records on disk ---------------------------------------------------------------------------------------
    def _record_path(self, search_id: str) -> str:
        return os.path.join(self.output_dir, RECORD_DIR, f"{search_id}.json")

    def _save(self, search: Search) -> None:
        with self._lock:
            record = search.record()
        write_json_atomic(self._record_path(search.id), record)

    def _read_records(self) -> list[Search]:
        searches = []
        folder = os.path.join(self.output_dir, RECORD_DIR)
        for name in os.listdir(folder):
            if not _TREE_NAME_RE.match(name):
                continue
            try:
                search = Search.from_record(load_json(os.path.join(folder, name)))
            except (OSError, ValueError, TypeError) as err:
                logger.warning("%s: unreadable search record (%s), skipped", os.path.join(folder, name), err)
                continue
            if search.status not in STATUSES or search.id != name[: -len(".json")]:
                logger.warning("%s: not a search record, skipped", os.path.join(folder, name))
                continue
            searches.append(search)
        return searches

    def _first_free_index(self) -> int:
        """One past every index used in the folder: records, and trees of ``pasa run`` (never overwritten)."""
        used = [int(m.group(1)) for m in map(_TREE_NAME_RE.match, os.listdir(self.output_dir)) if m]
        used += [int(s) for s in self.searches]
        return max(used, default=-1) + 1

    def _claim_id(self) -> str:
        """The next free index, claimed by creating its record file exclusively (servers may share the folder)."""
        while True:
            index, self._next_index = self._next_index, self._next_index + 1
            if os.path.exists(self.tree_path(str(index))) or os.path.exists(ItemLock(self.tree_path(str(index))).path):
                continue
            try:
                fd = os.open(self._record_path(str(index)), os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
            except FileExistsError:
                continue
            os.close(fd)
            return str(index)
