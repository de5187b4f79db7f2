"""Offline search engine over a paper database: BM25 over title + abstract, persisted to a folder.

The default paper source when no ``SERPER_API_KEY`` is set, and the one the PPO environment trains against.
``LocalSearchIndex`` implements ``PaperSource`` (``pasa.tools.sources``): ``search(query, k, end_date)`` returns
arXiv ids best first in about a millisecond over 100k records (``bench/local_search.py``), and the lookups
(``get_by_id``, ``get_by_title``, ``get_sections``) read the records lazily from SQLite.

Engine, chosen by measurement (``docs/local_search.md``): **bm25s** ranks, SQLite stores the records. SQLite FTS5
alone was 5-20x slower per query (it scores every document matching any query word, no top-k pruning) and tantivy
was as fast as bm25s but is one more compiled dependency; bm25s is already one.

Index folder (``pasa index --output_dir DIR``)::

    manifest.json     format version, tokenizer, record counts, build time, fingerprint of the source files
    records.sqlite    one row per paper (row = BM25 document number): id, title, abstract, sections, date
    bm25/             the bm25s matrix (memory-mapped on load) and vocabulary
    published.npy     int32 YYYYMMDD per document (0 = unknown), for the end-date mask

Ranking: BM25 (Lucene variant, k1=1.5, b=0.75) over the title repeated ``TITLE_WEIGHT`` times plus the abstract;
words are lower-cased letter/digit runs, English stopwords dropped, plurals folded by the S-stemmer (Harman 1991).
Ties go to the earlier record. End-date rule (``published_before``): papers with a known date after ``end_date``
never come back; papers with an unknown date do.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import weakref
from array import array
from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

from pasa.io import make_temp_dir
from pasa.paper import Paper, Sections, normalize_arxiv_id, title_key

logger = logging.getLogger(__name__)

FORMAT = "pasa-local-search"
FORMAT_VERSION = 2  # 2: records carry section_ids (cited arXiv ids, `pasa build-db`)
TOKENIZER = "words-stopwords-sstem-v1"  # bump when tokenize() changes: cached indexes are then rebuilt
TITLE_WEIGHT = 2  # the title's words count this many times (a title match outranks an abstract match)
MANIFEST = "manifest.json"
RECORDS = "records.sqlite"
BM25_DIR = "bm25"
PUBLISHED = "published.npy"
INDEX_SOURCE = "SearchFrom:local_index"  # source tag of papers indexed from a jsonl without their own tag
MAX_SKIP_WARNINGS = 20  # one warning per skipped record up to this many, then a summary
INDEX_FILES = frozenset({MANIFEST, RECORDS, BM25_DIR, PUBLISHED})  # everything an index folder holds


class SearchIndexError(ValueError):
    """A search index folder is missing, damaged (truncated records, lost files) or not an index; one line."""


# Lucene's English stopwords plus common connectives of search queries ("... for ...", "... via ...").
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with we our via using based from can which its than also".split()
)
_WORD_RE = re.compile(r"[^\W_]+")
_DATE_RE = re.compile(r"^\d{8}$")


@lru_cache(maxsize=1 << 18)
def _stem(word: str) -> str:
    """S-stemmer (Harman 1991): fold English plurals only, so "networks" matches "network"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """[pure] The index and query tokenizer.

    >>> tokenize("Graph Neural Networks for Molecules, via 3D queries")
    ['graph', 'neural', 'network', 'molecule', '3d', 'query']
    """
    return [_stem(w) for w in _WORD_RE.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


def normalize_date(value) -> str | None:
    """[pure] ``YYYYMMDD`` from ``YYYYMMDD``/``YYYY-MM-DD``(...)/an int; ``None`` for empty; ``ValueError`` otherwise.

    >>> normalize_date("2023-12-18T00:00:00Z"), normalize_date(20170612), normalize_date("")
    ('20231218', '20170612', None)
    """
    if value is None or value == "":
        return None
    text = str(value).replace("-", "")[:8]
    if not _DATE_RE.match(text):
        raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {value!r}")
    return text


# -- loaders ---------------------------------------------------------------------------------------------------------
def _note_skip(skipped: list[str] | None, message: str) -> None:
    if skipped is not None:
        skipped.append(message)
        if len(skipped) > MAX_SKIP_WARNINGS:
            logger.debug("%s", message)
            return
    logger.warning("%s", message)


def paper_from_record(record: dict) -> Paper:
    """[pure] A jsonl record -> Paper; ``ValueError`` naming the bad field."""
    arxiv_id, title = record.get("arxiv_id"), record.get("title")
    if not isinstance(arxiv_id, str) or not arxiv_id.strip():
        raise ValueError("missing or empty 'arxiv_id'")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("missing or empty 'title'")
    abstract = record.get("abstract") or ""
    if not isinstance(abstract, str):
        raise ValueError("'abstract' is not a string")
    sections = record.get("sections")
    if sections in ("", None):
        sections = None
    elif not (
        isinstance(sections, dict)
        and all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in sections.values())
    ):
        raise ValueError("'sections' is not a mapping of section name -> list of cited titles")
    return Paper(
        arxiv_id=normalize_arxiv_id(arxiv_id),
        title=title.replace("\n", " ").strip(),
        abstract=abstract,
        sections=sections,
        source=record.get("source") or INDEX_SOURCE,
        published=normalize_date(record.get("published")),
    )


def load_papers_jsonl(path: str, skipped: list[str] | None = None) -> Iterator[Paper]:
    """Papers from a jsonl of ``arxiv_id, title, abstract, sections, published`` records.

    Malformed lines (bad JSON, not UTF-8, missing id or title, wrong types, bad dates) are logged with their line
    number, appended to ``skipped`` when given, and skipped.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:  # one bad byte skips its line, not the build
                _note_skip(skipped, f"{path}:{lineno}: not UTF-8 ({err.reason} at byte {err.start}); skipped")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                paper = paper_from_record(record)
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                _note_skip(skipped, f"{path}:{lineno}: {err}; skipped")
                continue
            yield paper


def iter_paper_db(zip_path: str, id2paper_path: str, skipped: list[str] | None = None) -> Iterator[Paper]:
    """Papers of the released paper DB in ``id2paper.json`` order; ids without a readable entry are logged and
    skipped (appended to ``skipped`` when given)."""
    from pasa.tools.paper_db import PaperDB

    db = PaperDB(zip_path, id2paper_path)
    for arxiv_id, title in db.id2title.items():
        paper = db.get_by_id(arxiv_id)
        if paper is None:
            _note_skip(skipped, f"{zip_path}: {arxiv_id} ({title!r}) has no readable entry; skipped")
            continue
        yield paper


def fingerprint_files(*paths: str) -> list[dict]:
    """Cheap identity of source files for the cache check: name, size, mtime and a hash of both ends."""
    import hashlib

    out = []
    for path in paths:
        st = os.stat(path)
        h = hashlib.sha1()
        with open(path, "rb") as f:
            h.update(f.read(1 << 16))
            if st.st_size > 1 << 17:
                f.seek(-(1 << 16), os.SEEK_END)
                h.update(f.read())
        out.append(
            {
                "name": os.path.basename(path),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha1_ends": h.hexdigest(),
            }
        )
    return out


# -- the index ------------------------------------------------------------------------------------------------------
def _read_manifest(index_dir: str) -> dict | None:
    try:
        with open(os.path.join(index_dir, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _compatible(manifest: dict | None) -> bool:
    return (
        manifest is not None
        and manifest.get("format") == FORMAT
        and manifest.get("format_version") == FORMAT_VERSION
        and manifest.get("tokenizer") == TOKENIZER
        and manifest.get("title_weight") == TITLE_WEIGHT
    )


def _not_ours(path: str) -> str | None:
    """Why ``path`` may not be replaced by an index, or ``None`` when it is an index this module wrote.

    Ours: an empty folder; a folder holding only index files whose manifest carries our format marker; or, for a
    damaged index whose manifest is lost or unreadable, only index files including the records and the BM25
    matrix. Anything else (someone's ``manifest.json``, an index folder with other files in it) is refused.
    """
    if not os.path.isdir(path):
        return "it is a file"
    names = set(os.listdir(path))
    if not names:
        return None
    others = sorted(names - INDEX_FILES)
    if others:
        return f"it holds files an index does not write ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
    manifest = _read_manifest(path)
    if manifest is not None:
        return None if manifest.get("format") == FORMAT else f"its {MANIFEST} is not a {FORMAT} manifest"
    if {RECORDS, BM25_DIR} <= names:
        return None  # a damaged index of ours (manifest lost or cut short)
    return "it has no index manifest"


def _replace_dir(tmp_dir: str, index_dir: str) -> None:
    """Move a finished index folder into place; an index this module wrote is replaced, anything else refused.
    Another process that puts its index there between the check and the move (two jobs building the same missing
    index) is replaced like any older index."""
    if os.path.lexists(index_dir):
        why = _not_ours(index_dir)
        if why is not None:
            raise FileExistsError(f"{index_dir} is not a search index ({why}); refusing to overwrite it")
        trash = tempfile.mkdtemp(dir=os.path.dirname(index_dir), prefix=".old-index-")
        os.replace(index_dir, os.path.join(trash, "index"))
        os.replace(tmp_dir, index_dir)
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        os.replace(tmp_dir, index_dir)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not os.path.isdir(index_dir):
            raise
        _replace_dir(tmp_dir, index_dir)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best positive scores, score descending, ties by index (deterministic)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        kth = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= kth]
    order = np.lexsort((positive, -scores[positive]))
    return positive[order[:k]]


def _write_records(
    papers: Iterable[Paper], path: str, skipped: list[str]
) -> tuple[list[array], dict[str, int], array]:
    """The records table (SQLite at ``path``, row = BM25 document number) of every paper with an arXiv id, a title
    and a readable date, first of an id only; the others are noted in ``skipped``. Returns the BM25 documents (token
    ids per paper), the vocabulary and the publication dates (``YYYYMMDD``, 0 unknown) in row order."""
    con = sqlite3.connect(path)
    con.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
        "CREATE TABLE papers(row INTEGER PRIMARY KEY, arxiv_id TEXT NOT NULL, title TEXT NOT NULL,"
        " abstract TEXT NOT NULL, sections TEXT, published TEXT, source TEXT, tkey TEXT NOT NULL, section_ids TEXT);"
    )
    vocab: dict[str, int] = {}
    doc_tokens: list[array] = []
    published = array("i")
    seen: set[str] = set()
    batch: list[tuple] = []
    for paper in papers:
        arxiv_id = normalize_arxiv_id(paper.arxiv_id or "")
        title = (paper.title or "").replace("\n", " ").strip()
        if not arxiv_id or not title:
            _note_skip(skipped, f"record {arxiv_id or '?'!r} ({title!r}) has no arXiv id or no title; skipped")
            continue
        if arxiv_id in seen:
            _note_skip(skipped, f"record {arxiv_id!r} ({title!r}) repeats an arXiv id; skipped")
            continue
        try:
            date = normalize_date(paper.published)
        except ValueError as err:
            _note_skip(skipped, f"record {arxiv_id!r}: {err}; skipped")
            continue
        seen.add(arxiv_id)
        words = tokenize(title) * TITLE_WEIGHT + tokenize(paper.abstract or "")
        doc_tokens.append(array("I", [vocab.setdefault(w, len(vocab)) for w in words]))
        published.append(int(date) if date else 0)
        sections = json.dumps(paper.sections, ensure_ascii=False) if paper.sections is not None else None
        row = len(doc_tokens) - 1  # the BM25 document number
        batch.append((row, arxiv_id, title, paper.abstract or "", sections, date, paper.source or INDEX_SOURCE,
                      title_key(title), json.dumps(paper.section_ids) if paper.section_ids else None))  # fmt: skip
        if len(batch) >= 10_000:
            con.executemany("INSERT INTO papers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    con.executemany("INSERT INTO papers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    if not doc_tokens:
        con.close()
        raise ValueError(f"no valid records to index ({len(skipped)} skipped)")
    con.executescript(
        "CREATE UNIQUE INDEX papers_id ON papers(arxiv_id); CREATE INDEX papers_tkey ON papers(tkey, row);"
    )
    con.commit()
    con.close()
    return doc_tokens, vocab, published


class LocalSearchIndex:
    """BM25 search + record lookups over a persisted index folder; implements ``PaperSource``.

    Make one with ``build`` (papers -> index), ``load`` (a folder written by ``build``/``save``/``pasa index``) or
    ``from_paper_db`` (cached beside the released DB, rebuilt when the DB changes). Reads are thread-safe: the BM25
    matrix is read-only numpy, and each thread gets its own read-only SQLite connection.
    """

    def __init__(self, index_dir: str, _owned_tmp: bool = False):
        """Open ``index_dir``; prefer ``load``."""
        import bm25s

        rebuild = f"rebuild it with `pasa index --output_dir {index_dir} ...`"
        if not os.path.exists(index_dir):
            raise SearchIndexError(f"search index {index_dir} does not exist; build it with `pasa index`")
        if not os.path.isdir(index_dir):
            raise SearchIndexError(f"search index {index_dir} is a file; pass the folder `pasa index` wrote")
        manifest = _read_manifest(index_dir)
        if manifest is None:
            raise SearchIndexError(f"{index_dir} is not a search index (no readable {MANIFEST}); {rebuild}")
        if not _compatible(manifest):
            raise SearchIndexError(
                f"the index in {index_dir} was built by another version (format {manifest.get('format_version')}, "
                f"tokenizer {manifest.get('tokenizer')!r}); {rebuild}"
            )
        self.index_dir = index_dir
        self.manifest = manifest
        self._db_uri = f"file:{os.path.abspath(os.path.join(index_dir, RECORDS))}?mode=ro"
        try:
            self._bm25 = bm25s.BM25.load(os.path.join(index_dir, BM25_DIR), mmap=True)
            self._vocab: dict[str, int] = self._bm25.vocab_dict
            self._published = np.load(os.path.join(index_dir, PUBLISHED), mmap_mode="r")
            rows = self._count_records()
        except SearchIndexError:
            raise
        except Exception as err:  # a lost or cut file: one line naming it, not a traceback or 0 results
            raise SearchIndexError(
                f"the index in {index_dir} is damaged ({type(err).__name__}: {err}); {rebuild}"
            ) from err
        expected = int(manifest.get("records", -1))
        if rows != expected or len(self._published) != expected:
            raise SearchIndexError(
                f"the index in {index_dir} is damaged ({RECORDS} has {rows} records, {PUBLISHED} "
                f"{len(self._published)}, the manifest says {expected}); {rebuild}"
            )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if _owned_tmp:  # an index built without a folder lives in a temporary one until garbage-collected
            self._finalizer = weakref.finalize(self, shutil.rmtree, index_dir, True)

    def _count_records(self) -> int:
        """Rows in ``records.sqlite`` (a truncated or empty file raises: it has no readable ``papers`` table)."""
        if not os.path.isfile(os.path.join(self.index_dir, RECORDS)):
            raise SearchIndexError(f"the index in {self.index_dir} has no {RECORDS}")
        con = sqlite3.connect(self._db_uri, uri=True)
        try:
            (rows,) = con.execute("SELECT count(*) FROM papers").fetchone()
            con.execute("SELECT max(row), min(row) FROM papers").fetchone()
        except sqlite3.DatabaseError as err:
            raise SearchIndexError(f"the index in {self.index_dir} is damaged ({RECORDS}: {err})") from err
        finally:
            con.close()
        return int(rows)

    # -- construction -----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, index_dir: str) -> LocalSearchIndex:
        """Open a persisted index (fast: the BM25 matrix is memory-mapped, records are read on demand)."""
        return cls(index_dir)

    @classmethod
    def build(
        cls,
        papers: Iterable[Paper],
        index_dir: str | None = None,
        source: object = None,
        skipped: list[str] | None = None,
    ) -> LocalSearchIndex:
        """Index ``papers``; save to ``index_dir`` (replacing an index there) or to a temporary folder.

        Args:
            papers: any iterable of ``Paper``; records without an id or title, and repeated ids (the first wins),
                are logged and skipped.
            index_dir: where to persist the index; ``None`` keeps it in a temporary folder (``save`` it later).
            source: JSON-able description of where the papers came from, kept in the manifest (``from_paper_db``
                compares it to decide whether a cached index is stale).
            skipped: a list that receives one message per skipped record (the caller's loader may share it; the
                manifest records its final length).
        """
        skipped = [] if skipped is None else skipped
        parent = os.path.dirname(os.path.abspath(index_dir)) if index_dir else None
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp_dir = make_temp_dir(parent, prefix=".index-tmp-" if parent else "pasa-index-")  # umask, not 0700
        try:
            cls._write(papers, tmp_dir, source, skipped)
            if index_dir is None:
                return cls(tmp_dir, _owned_tmp=True)
            _replace_dir(tmp_dir, index_dir)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return cls(index_dir)

    @staticmethod
    def _write(papers: Iterable[Paper], out_dir: str, source: object, skipped: list[str]) -> None:
        import bm25s

        t0 = time.perf_counter()
        doc_tokens, vocab, published = _write_records(papers, os.path.join(out_dir, RECORDS), skipped)
        retriever = bm25s.BM25()
        # compact uint32 arrays go in as they are (bm25s only iterates them): lists of ints would take ~8x the memory
        retriever.index((doc_tokens, vocab), show_progress=False)
        del doc_tokens
        retriever.save(os.path.join(out_dir, BM25_DIR))
        np.save(os.path.join(out_dir, PUBLISHED), np.frombuffer(published, dtype=np.int32))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "engine": f"bm25s {bm25s.__version__} + sqlite {sqlite3.sqlite_version}",
            "tokenizer": TOKENIZER,
            "title_weight": TITLE_WEIGHT,
            "records": len(published),
            "skipped": len(skipped),
            "vocabulary": len(vocab),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source,
        }
        from pasa.io import write_json_atomic

        write_json_atomic(os.path.join(out_dir, MANIFEST), manifest)  # last: a folder without it is unfinished
        logger.info(
            "indexed %d records (%d skipped) in %.1f s", len(published), len(skipped), time.perf_counter() - t0
        )

    @classmethod
    def from_paper_db(cls, zip_path: str, id2paper_path: str, index_dir: str | None = None) -> LocalSearchIndex:
        """The index of a released paper DB: the cached one in ``index_dir`` when it was built from these very
        files (same names, sizes, mtimes, hashed ends) by this format version, else built now (and saved there)."""
        source = {"paper_db": fingerprint_files(zip_path, id2paper_path)}
        if index_dir is not None:
            manifest = _read_manifest(index_dir)
            if _compatible(manifest) and manifest.get("source") == source:
                logger.info("using the cached search index in %s (%d papers)", index_dir, manifest["records"])
                return cls.load(index_dir)
            if manifest is not None:
                logger.info("the search index in %s is stale (paper DB or format changed); rebuilding", index_dir)
        logger.info("building the search index of %s (once; this may take minutes for a large DB)", zip_path)
        return cls.build(iter_paper_db(zip_path, id2paper_path), index_dir, source=source)

    def save(self, index_dir: str) -> None:
        """Persist to ``index_dir`` (replacing an index there); the index keeps reading from where it was."""
        if os.path.abspath(index_dir) == os.path.abspath(self.index_dir):
            return
        parent = os.path.dirname(os.path.abspath(index_dir))
        os.makedirs(parent, exist_ok=True)
        tmp_dir = make_temp_dir(parent, prefix=".index-tmp-")  # the user's umask, not 0700
        try:
            shutil.copytree(self.index_dir, tmp_dir, dirs_exist_ok=True)
            _replace_dir(tmp_dir, index_dir)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise

    # -- reads ------------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["records"])

    def _db(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self._db_uri, uri=True)
            self._local.con = con
            with self._lock:
                self._connections.append(con)
        return con

    def close(self) -> None:
        """Close the SQLite connections (those of other threads too; call when no search is in flight)."""
        with self._lock:
            for con in self._connections:
                try:
                    con.close()
                except sqlite3.ProgrammingError:  # made in another thread; it closes with its thread
                    pass
            self._connections.clear()
        self._local = threading.local()

    def search(self, query: str, k: int, end_date: str | None = None) -> list[str]:
        """Up to ``k`` arXiv ids for ``query``, best BM25 score first; with ``end_date`` (``YYYYMMDD``), papers
        with a known later publication date are left out (unknown dates pass, as ``published_before``)."""
        if k <= 0:
            return []
        term_ids = list(dict.fromkeys(self._vocab[w] for w in tokenize(query) if w in self._vocab))
        if not term_ids:
            return []
        scores = self._bm25.get_scores_from_ids(term_ids)
        if end_date:
            end = int(normalize_date(end_date))
            scores = np.where((self._published == 0) | (self._published <= end), scores, 0)
        rows = [int(r) for r in _top_k(scores, k)]
        if not rows:
            return []
        found = dict(
            self._db().execute(f"SELECT row, arxiv_id FROM papers WHERE row IN ({','.join('?' * len(rows))})", rows)
        )
        return [found[r] for r in rows]

    def _paper(self, where: str, arg: str) -> Paper | None:
        row = (
            self._db()
            .execute(
                f"SELECT arxiv_id, title, abstract, sections, source, published, section_ids FROM papers WHERE {where}",
                (arg,),
            )
            .fetchone()
        )
        if row is None:
            return None
        arxiv_id, title, abstract, sections, source, published, section_ids = row
        return Paper(arxiv_id, title, abstract, json.loads(sections) if sections else None, source, published,
                     section_ids=json.loads(section_ids) if section_ids else None)  # fmt: skip

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        """The paper with this arXiv id (any version, ``arXiv:`` prefix allowed)."""
        return self._paper("arxiv_id = ?", normalize_arxiv_id(arxiv_id))

    def get_by_title(self, title: str) -> Paper | None:
        """The paper whose ``title_key`` equals this title's (the first indexed one if several do)."""
        key = title_key(title)
        return self._paper("tkey = ? ORDER BY row LIMIT 1", key) if key else None

    def get_sections(self, arxiv_id: str) -> Sections | None:
        paper = self.get_by_id(arxiv_id)
        return paper.sections if paper is not None and paper.sections else None


# -- `pasa index` ------------------------------------------------------------------------------------------------------
def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def make_parser() -> argparse.ArgumentParser:
    from pasa.flags import make_argparser

    parser = make_argparser(
        prog="pasa index",
        description="Build the offline BM25 search index (the default paper source without SERPER_API_KEY).",
        example="pasa index --paper_db data/paper_database/cs_paper_2nd.zip "
        "--id2paper data/paper_database/id2paper.json --output_dir data/paper_database/search_index\n"
        "  pasa index --jsonl papers.jsonl --output_dir data/search_index",
    )
    parser.add_argument("--paper_db", help="The released paper DB zip (cs_paper_2nd.zip); needs --id2paper.")
    parser.add_argument("--id2paper", help="The released id2paper.json (arXiv id -> title).")
    parser.add_argument("--jsonl", help="A jsonl of {arxiv_id, title, abstract, sections, published} records.")
    parser.add_argument(
        "--output_dir",
        required=True,
        help="Index folder to write (old name --output). An index this command wrote there is replaced; any other "
        "folder is refused.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``pasa index``: build an index, print progress and stats. Exit code 2 on bad arguments or no records."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.jsonl is None and args.paper_db is None:
        print("pasa index: give --paper_db ZIP --id2paper JSON, or --jsonl FILE", file=sys.stderr)
        return 2
    if args.jsonl is not None and args.paper_db is not None:
        print("pasa index: give either --paper_db/--id2paper or --jsonl, not both", file=sys.stderr)
        return 2
    if (args.paper_db is None) != (args.id2paper is None):
        print("pasa index: --paper_db and --id2paper go together", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:  # a script: show this module's info and every library's warnings
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger().handlers[0].setLevel(logging.INFO)  # bm25s sets its own logger to DEBUG
    from tqdm import tqdm

    skipped: list[str] = []
    try:
        if args.jsonl is not None:
            papers, total = load_papers_jsonl(args.jsonl, skipped), None
            source = {"jsonl": fingerprint_files(args.jsonl)}
        else:
            with open(args.id2paper, encoding="utf-8") as f:
                total = len(json.load(f))
            papers = iter_paper_db(args.paper_db, args.id2paper, skipped)
            source = {"paper_db": fingerprint_files(args.paper_db, args.id2paper)}
        t0 = time.perf_counter()
        with tqdm(papers, total=total, desc="reading papers", unit=" papers", file=sys.stderr) as progress:
            index = LocalSearchIndex.build(progress, args.output_dir, source=source, skipped=skipped)
        seconds = time.perf_counter() - t0
    except (OSError, ValueError) as err:
        print(f"pasa index: {err}", file=sys.stderr)
        return 2
    if len(skipped) > MAX_SKIP_WARNINGS:
        print(f"({len(skipped) - MAX_SKIP_WARNINGS} more skipped records not shown)", file=sys.stderr)
    print(f"index: {os.path.abspath(args.output_dir)}")
    print(f"records: {len(index)}  skipped: {len(skipped)}  vocabulary: {index.manifest['vocabulary']}")
    print(f"build: {seconds:.1f} s  size: {_dir_bytes(args.output_dir) / 2**20:.1f} MiB")
    index.close()
    return 0
