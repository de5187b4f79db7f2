"""A local title -> arXiv paper index built from arXiv's metadata snapshot: title lookups without the network.

Every cited title the agent cannot find in its paper database goes to the arXiv API, which arXiv's terms limit to
one call per 3 s (361 lookups, a typical expansion layer, would take 18 minutes). arXiv publishes its whole catalogue as a
metadata snapshot (Kaggle "Cornell-University/arxiv", ``arxiv-metadata-oai-snapshot.json``: one JSON record per
line with ``id``, ``title``, ``abstract``, ``versions`` (dates), ``categories``); this module indexes it once, and
``TitleIndex(path).get_by_title(title)`` answers in microseconds with the same exact-title matching as the arXiv
lookup (``pasa.tools.arxiv_api.match_title``: ``title_key`` equality, letters only, lower case).
``build_paper_source(..., title_index=DIR)`` asks it before the arXiv API.

Storage, chosen by measurement (``bench/title_index.py``, ``docs/build_db.md``): one SQLite file with two
tables, ``papers(arxiv_id PRIMARY KEY, title, abstract, published, categories)`` and ``titles(tkey PRIMARY KEY,
arxiv_id) WITHOUT ROWID``. A lookup is one B-tree probe per table; nothing is loaded at open time,
so any number of processes share the file through the OS page cache. When several papers share a title key the
first one in the snapshot (the earliest id) keeps it, and the others are counted (``manifest.json``).

Built by ``pasa build-db --metadata SNAPSHOT --output_dir DIR`` (into ``DIR/title_index``; with no unarXive
input it builds only this index), or ``build_title_index`` from Python.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from pasa.io import make_temp_dir, write_json_atomic
from pasa.paper import Paper, normalize_arxiv_id, title_key

logger = logging.getLogger(__name__)

FORMAT = "pasa-title-index"
FORMAT_VERSION = 1
DB_NAME = "title_index.sqlite"
MANIFEST = "manifest.json"
SOURCE_NAME = "SearchFrom:arxiv_metadata"  # source tag of papers found here (the released tag for the API: :arxiv)
BATCH = 20_000


@dataclass
class MetadataRecord:
    """One paper of the arXiv metadata snapshot."""

    arxiv_id: str
    title: str
    abstract: str
    published: str | None  # YYYYMMDD of v1
    categories: str  # space-separated, as in the snapshot


def _fold(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_version_date(created: str) -> str | None:
    """[pure] ``YYYYMMDD`` of a snapshot version date (RFC 2822), ``None`` when unreadable.

    >>> parse_version_date("Mon, 2 Apr 2007 19:18:42 GMT")
    '20070402'
    """
    try:
        return parsedate_to_datetime(created).strftime("%Y%m%d")
    except (TypeError, ValueError, IndexError):
        return None


def parse_metadata_record(record: dict) -> MetadataRecord:
    """[pure] A snapshot record -> ``MetadataRecord``; ``ValueError`` naming the missing field.

    >>> parse_metadata_record({"id": "1706.03762", "title": "Attention Is All\\n  You Need", "abstract": " The ...",
    ...     "versions": [{"version": "v1", "created": "Mon, 12 Jun 2017 17:57:34 GMT"}], "categories": "cs.CL cs.LG"})
    MetadataRecord(arxiv_id='1706.03762', title='Attention Is All You Need', abstract='The ...', published='20170612', categories='cs.CL cs.LG')
    """
    arxiv_id, title = record.get("id"), record.get("title")
    if not isinstance(arxiv_id, str) or not arxiv_id.strip():
        raise ValueError("missing or empty 'id'")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("missing or empty 'title'")
    versions = record.get("versions") or []
    first = versions[0] if versions and isinstance(versions[0], dict) else {}
    published = parse_version_date(first.get("created", "")) if first else None
    if published is None and isinstance(record.get("update_date"), str):
        published = record["update_date"].replace("-", "")[:8] or None
    categories = record.get("categories") or ""
    return MetadataRecord(
        arxiv_id=normalize_arxiv_id(arxiv_id),
        title=_fold(title),
        abstract=_fold(record.get("abstract") if isinstance(record.get("abstract"), str) else ""),
        published=published,
        categories=categories if isinstance(categories, str) else " ".join(categories),
    )


def open_text(path: str):
    """A text stream of a plain or gzipped file (by its ``.gz`` suffix)."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_metadata(path: str, problems: list[str] | None = None) -> Iterator[MetadataRecord]:
    """Records of a metadata snapshot (plain or ``.gz``); malformed lines are logged as ``file:line`` and skipped."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                yield parse_metadata_record(record)
            except ValueError as err:
                message = f"{path}:{lineno}: {err}; skipped"
                if problems is not None:
                    problems.append(message)
                    if len(problems) > 20:
                        continue
                logger.warning("%s", message)


def _db_path(path: str) -> str:
    return os.path.join(path, DB_NAME) if os.path.isdir(path) else path


def build_title_index(records: Iterable[MetadataRecord], out_dir: str, source: object = None) -> dict:
    """Write the index folder ``out_dir`` (``title_index.sqlite`` + ``manifest.json``) atomically; returns the
    manifest. Repeated ids keep their first record; a title key already taken keeps its first paper."""
    t0 = time.perf_counter()
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = make_temp_dir(parent, prefix=".title-index-tmp-")  # the umask's mode, not 0700
    try:
        n_in, n_papers, n_titles = _write_title_db(records, os.path.join(tmp_dir, DB_NAME))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "records_read": n_in,
            "papers": n_papers,
            "title_keys": n_titles,
            "duplicate_ids": n_in - n_papers,
            # papers whose title key another (earlier) paper already holds, or whose title has no letters
            "titles_not_indexed": n_papers - n_titles,
            "build_seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source,
        }
        write_json_atomic(os.path.join(tmp_dir, MANIFEST), manifest)
        _replace_index_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    logger.info("title index: %d papers, %d title keys in %.1f s", n_papers, n_titles, manifest["build_seconds"])
    return manifest


def _write_title_db(records: Iterable[MetadataRecord], path: str) -> tuple[int, int, int]:
    """The SQLite file of the index: every record by id, every title key to the first id that has it. Returns
    (records read, papers kept, title keys kept)."""
    con = sqlite3.connect(path)
    try:
        con.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;"
            "CREATE TABLE papers(arxiv_id TEXT PRIMARY KEY, title TEXT NOT NULL, abstract TEXT NOT NULL,"
            " published TEXT, categories TEXT NOT NULL);"  # rowid table: WITHOUT ROWID packs ~1 KB rows badly (4x)
            "CREATE TABLE titles(tkey TEXT PRIMARY KEY, arxiv_id TEXT NOT NULL) WITHOUT ROWID;"
        )
        n_in = 0
        for batch in _batches(records, BATCH):
            n_in += len(batch)
            con.executemany(
                "INSERT OR IGNORE INTO papers VALUES (?, ?, ?, ?, ?)",
                [(r.arxiv_id, r.title, r.abstract, r.published, r.categories) for r in batch],
            )
            keys = ((title_key(r.title), r.arxiv_id) for r in batch)
            con.executemany("INSERT OR IGNORE INTO titles VALUES (?, ?)", [k for k in keys if k[0]])
        con.commit()
        n_papers = con.execute("SELECT COUNT(*) FROM papers").fetchone()[0]
        n_titles = con.execute("SELECT COUNT(*) FROM titles").fetchone()[0]
    finally:
        con.close()
    return n_in, n_papers, n_titles


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _replace_index_dir(tmp_dir: str, out_dir: str) -> None:
    """Move the finished ``tmp_dir`` to ``out_dir``, replacing an older title index there (never anything else)."""
    if not os.path.isdir(out_dir):
        os.replace(tmp_dir, out_dir)
        return
    if set(os.listdir(out_dir)) - {DB_NAME, MANIFEST}:
        raise FileExistsError(f"{out_dir} exists and is not a title index; refusing to overwrite it")
    trash = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out_dir)), prefix=".old-title-index-")
    os.replace(out_dir, os.path.join(trash, "old"))
    os.replace(tmp_dir, out_dir)
    shutil.rmtree(trash, ignore_errors=True)


class TitleIndex:
    """Read-only lookups in a title index folder (or its ``title_index.sqlite``); thread-safe (one read-only
    SQLite connection per thread). Implements the lookup half of ``PaperSource``."""

    def __init__(self, path: str):
        db = _db_path(path)
        if not os.path.isfile(db):
            raise FileNotFoundError(
                f"{path} is not a title index (no {DB_NAME}); build it with `pasa build-db --metadata`"
            )
        self.path = path
        self._uri = f"file:{os.path.abspath(db)}?mode=ro"
        self._local = threading.local()
        manifest_path = os.path.join(os.path.dirname(os.path.abspath(db)), MANIFEST)
        try:
            with open(manifest_path, encoding="utf-8") as f:
                self.manifest = json.load(f)
        except (OSError, json.JSONDecodeError):
            self.manifest = {}

    def _db(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._local.con = con
        return con

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM papers").fetchone()[0])

    def get_record(self, arxiv_id: str) -> MetadataRecord | None:
        """The snapshot record of an arXiv id (any version, ``arXiv:`` prefix allowed), categories included."""
        row = (
            self._db()
            .execute(
                "SELECT arxiv_id, title, abstract, published, categories FROM papers WHERE arxiv_id = ?",
                (normalize_arxiv_id(arxiv_id),),
            )
            .fetchone()
        )
        return MetadataRecord(*row) if row else None

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        rec = self.get_record(arxiv_id)
        if rec is None:
            return None
        return Paper(rec.arxiv_id, rec.title, rec.abstract, None, SOURCE_NAME, rec.published)

    def get_id_by_title(self, title: str) -> str | None:
        """The arXiv id of the paper titled ``title`` (``title_key`` equality), or ``None``."""
        key = title_key(title)
        if not key:
            return None
        row = self._db().execute("SELECT arxiv_id FROM titles WHERE tkey = ?", (key,)).fetchone()
        return row[0] if row else None

    def get_by_title(self, title: str) -> Paper | None:
        """The paper whose title matches ``title`` exactly, letters only and case-insensitively (as
        ``arxiv_api.match_title``); sections are unknown (``None``)."""
        arxiv_id = self.get_id_by_title(title)
        return self.get_by_id(arxiv_id) if arxiv_id else None

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
