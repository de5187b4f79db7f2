"""``pasa build-db``: a PaSa paper database from unarXive full text (+ the arXiv metadata snapshot).

The released database (``cs_paper_2nd.zip`` + ``id2paper.json``) maps each paper to *section name -> cited
titles*; its builder was never released. This command rebuilds the same layout from unarXive (one jsonl line per
arXiv paper: section-tagged paragraphs with ``{{cite:<id>}}`` spans, and ``bib_entries`` with the raw reference
string and, where unarXive resolved it, the cited arXiv id), so the existing ``--paper_db/--id2paper`` paths and
the data builders read it unchanged::

    pasa build-db data/unarXive/ --metadata data/arxiv-metadata-oai-snapshot.json --categories 'cs.*' \\
        --output_dir data/paper_database_unarxive --workers 8
    pasa build-db --metadata data/arxiv-metadata-oai-snapshot.json --output_dir data/arxiv_titles  # title index only
    pasa run --query "..." --paper_db data/paper_database_unarxive/paper_db.zip \\
        --id2paper data/paper_database_unarxive/id2paper.json --search_index data/paper_database_unarxive/search_index

Output folder:

    paper_db.zip        one JSON entry per paper named by ``title_key(title)`` (the released key):
                        ``{title, abstract, sections: {name: [cited titles]}, section_ids: {name: [id|null]},
                        published}``; ``section_ids`` (parallel to ``sections``) is beyond the released format
    id2paper.json       arXiv id -> title (released)
    search_index/       the offline BM25 index of these papers (``pasa.tools.local_search``), cached for this zip
    title_index/        with ``--metadata``: every arXiv title -> id (``pasa.tools.title_index``)
    build_report.json   counts of everything kept and skipped; written last (its presence = a finished build)
    problems.log        one ``file:line: kind: detail`` line per skipped or damaged item
    .build/             per-input-file shards + their done-markers (resume state; ``--keep_work false`` deletes)

Sections follow the released ar5iv semantics (DESIGN §1.1, ``pasa.tools.ar5iv``): the key is ``"<section>"`` for
a section's own paragraphs and ``"<section> <subsection>"`` for a subsection and everything below it; sections
named like references/acknowledgements/appendix are dropped; a section that cites nothing is dropped; cited titles
keep first-citation order without repeats. A cited title comes from the metadata snapshot when the reference has an
arXiv id (unarXive's resolved id, or the only arXiv id written in the string), else from the raw string
(``pasa.tools.citations.extract_title``); references with neither are counted and left out.

Scale: each input file is converted by a worker process into a gzipped shard (one paper at a time, so memory does
not grow with the file) and marked done; a killed build re-run with the same arguments skips finished files.
The final assembly streams the shards into the zip (deduplicating ids and title keys) and writes every output
atomically. Numbers: ``bench/build_db.py``, ``docs/build_db.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from pasa.paper import Paper, normalize_arxiv_id, title_key
from pasa.tools.ar5iv import STOP_WORDS
from pasa.tools.citations import extract_title
from pasa.tools.title_index import MetadataRecord, open_text, parse_version_date

logger = logging.getLogger(__name__)

ZIP_NAME = "paper_db.zip"
ID2PAPER_NAME = "id2paper.json"
SEARCH_INDEX_DIR = "search_index"
TITLE_INDEX_DIR = "title_index"
REPORT_NAME = "build_report.json"
PROBLEMS_NAME = "problems.log"
WORK_DIR = ".build"
SHARD_FORMAT = 1  # bump when a shard's content changes: finished shards of an older format are rebuilt
INPUT_SUFFIXES = (".jsonl", ".jsonl.gz")  # what a folder contributes (unarXive: arXiv_src_YYMM_NNN.jsonl)
MAX_WARNINGS = 20  # problems logged as warnings before the rest go to problems.log only

# Counted events (build_report.json "counts"); the ones marked * are logged with file:line in problems.log.
COUNT_HELP = {
    "lines": "input lines read",
    "malformed_line": "* lines that are not a JSON object",
    "no_id_or_title": "* papers without an arXiv id or a title",
    "unreadable_record": "* records the converter failed on (unexpected shapes; skipped)",
    "truncated_input": "* input files that end mid-stream (a cut .gz); the papers before the cut are kept",
    "category_filtered": "papers outside --categories",
    "no_body_text": "* papers with no paragraphs (kept, without sections)",
    "no_cited_sections": "* papers whose sections cite nothing resolvable (kept, without sections)",
    "duplicate_id": "* papers whose arXiv id an earlier paper has (skipped)",
    "title_key_collision": "* papers whose title key an earlier paper's title has (skipped: the zip is keyed by it)",
    "title_without_letters": "* papers whose title has no letters (no zip key; skipped)",
    "papers_written": "papers in the database",
    "cites": "citation markers in kept sections",
    "cite_without_bib_entry": "citation markers pointing at no bibliography entry",
    "bib_without_text": "* cited bibliography entries with no text and no arXiv id",
    "bib_no_title": "cited entries whose raw string yields no title (e.g. 'Phys. Rev. D 104, 1 (2021)')",
    "cited_id_without_title": "cited entries with an arXiv id but no title (id not in --metadata, no title in text)",
    "titles_from_metadata": "cited titles taken from the metadata snapshot (by arXiv id)",
    "titles_extracted": "cited titles read from the raw reference string",
    "cited_with_id": "cited titles that carry an arXiv id (section_ids not null)",
}
LOGGED = {k for k, v in COUNT_HELP.items() if v.startswith("*")}


# -- one paper (pure) -------------------------------------------------------------------------------------------------
@dataclass
class ConvertedPaper:
    arxiv_id: str
    title: str
    abstract: str
    published: str | None
    categories: str
    sections: dict[str, list[str]]
    section_ids: dict[str, list[str | None]]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (count kind, detail)
    counts: Counter = field(default_factory=Counter)

    def to_entry(self) -> dict:
        """The zip entry JSON (released keys first)."""
        entry = {"title": self.title, "abstract": self.abstract, "sections": self.sections}
        entry["section_ids"] = self.section_ids
        if self.published:
            entry["published"] = self.published
        return entry


def _fold(text) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


def _stopped(name: str) -> bool:
    low = name.lower()
    return any(word in low for word in STOP_WORDS)


def cited_arxiv_id(bib: dict) -> str | None:
    """[pure] The arXiv id of a bibliography entry: unarXive's resolved one, else the only id written in it.

    >>> cited_arxiv_id({"ids": {"arxiv_id": "2104.06921"}})
    '2104.06921'
    >>> cited_arxiv_id({"ids": {"arxiv_id": ""}, "contained_arXiv_ids": [{"id": "2002.11768v2"}]})
    '2002.11768'
    """
    ids = bib.get("ids") if isinstance(bib.get("ids"), dict) else {}
    if isinstance(ids.get("arxiv_id"), str) and ids["arxiv_id"].strip():
        return normalize_arxiv_id(ids["arxiv_id"])
    contained = bib.get("contained_arXiv_ids") or []
    found = {normalize_arxiv_id(c["id"]) for c in contained if isinstance(c, dict) and isinstance(c.get("id"), str)}
    return found.pop() if len(found) == 1 else None


def section_keys(body_text: list[dict]) -> Iterator[tuple[str | None, dict]]:
    """[pure] (section key, paragraph) in document order, with the released ar5iv keys.

    ``sec_type`` ``section`` opens a top-level section; ``subsection`` a ``"<section> <subsection>"`` key; anything
    deeper (``subsubsection``, paragraph headings) stays in the open key. Paragraphs before any named section get
    ``None``; sections named like references/acknowledgements/appendix (and what is below them) get ``None``.

    >>> paras = [{"section": "Intro", "sec_type": "section"}, {"section": "Setup", "sec_type": "subsection"},
    ...          {"section": "Detail", "sec_type": "subsubsection"}, {"section": "Acknowledgments", "sec_type": "section"}]
    >>> [k for k, _ in section_keys(paras)]
    ['Intro', 'Intro Setup', 'Intro Setup', None]
    """
    top: str | None = None
    sub: str | None = None
    for para in body_text:
        if not isinstance(para, dict):
            continue
        name = _fold(para.get("section"))
        kind = para.get("sec_type") or ""
        if kind == "section" and name:
            top, sub = name, None
        elif kind == "subsection" and name:
            sub = name
        elif name and top is None and sub is None:
            top = name  # a heading below section level with no section open: the best name there is
        if top is None and sub is None:
            yield None, para
            continue
        if (top and _stopped(top)) or (sub and _stopped(sub)):
            yield None, para
            continue
        key = top if sub is None else (f"{top} {sub}" if top else sub)
        yield key, para


def convert_paper(record: dict, lookup: Callable[[str], MetadataRecord | None] | None = None) -> ConvertedPaper | None:
    """[pure] One unarXive record -> the database entry (``None`` when it has no id or no title).

    ``lookup`` maps an arXiv id to its metadata snapshot record (``TitleIndex.get_record``); without it titles,
    abstracts and dates come from the record itself and every cited title from its raw string.
    """
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    raw_id = record.get("paper_id") or meta.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        return None
    arxiv_id = normalize_arxiv_id(raw_id)
    snap = lookup(arxiv_id) if lookup else None
    title = snap.title if snap else _fold(meta.get("title"))
    if not title:
        return None
    abstract = snap.abstract if snap else _fold(meta.get("abstract"))
    if not abstract and isinstance(record.get("abstract"), dict):
        abstract = _fold(record["abstract"].get("text"))
    published = snap.published if snap else None
    if published is None and meta.get("versions"):
        first = meta["versions"][0]
        published = parse_version_date(first.get("created", "")) if isinstance(first, dict) else None
    categories = snap.categories if snap else _fold(meta.get("categories"))
    paper = ConvertedPaper(arxiv_id, title, abstract, published, categories, {}, {})
    counts = paper.counts

    body = record.get("body_text") if isinstance(record.get("body_text"), list) else []
    bib_entries = record.get("bib_entries") if isinstance(record.get("bib_entries"), dict) else {}
    if not body:
        counts["no_body_text"] += 1
        paper.problems.append(("no_body_text", "no paragraphs"))
        return paper

    resolved: dict[str, tuple[str, str | None] | None] = {}  # bib key -> (title, arxiv id), None = unusable

    def resolve(ref_id: str) -> tuple[str, str | None] | None:
        if ref_id in resolved:
            return resolved[ref_id]
        bib = bib_entries.get(ref_id)
        result = None
        if not isinstance(bib, dict):
            counts["cite_without_bib_entry"] += 1
        else:
            cited_id = cited_arxiv_id(bib)
            raw = _fold(bib.get("bib_entry_raw"))
            cited = lookup(cited_id) if (lookup and cited_id) else None
            if cited is not None:
                counts["titles_from_metadata"] += 1
                result = (cited.title, cited_id)
            elif not raw:
                if cited_id:
                    counts["cited_id_without_title"] += 1
                else:
                    counts["bib_without_text"] += 1
                    paper.problems.append(("bib_without_text", f"bib entry {ref_id} has no text"))
            else:
                extracted = extract_title(raw)
                if extracted:
                    counts["titles_extracted"] += 1
                    result = (extracted, cited_id)
                elif cited_id:
                    counts["cited_id_without_title"] += 1
                else:
                    counts["bib_no_title"] += 1
        resolved[ref_id] = result
        return result

    seen_keys: dict[str, set[str]] = {}  # section -> title keys already listed (no repeats inside a section)
    for key, para in section_keys(body):
        if key is None:
            continue
        spans = para.get("cite_spans") if isinstance(para.get("cite_spans"), list) else []
        for span in spans:
            ref_id = span.get("ref_id") if isinstance(span, dict) else None
            if not isinstance(ref_id, str):
                continue
            counts["cites"] += 1
            hit = resolve(ref_id)
            if hit is None:
                continue
            cited_title, cited_id = hit
            cited_key = title_key(cited_title)
            seen = seen_keys.setdefault(key, set())
            if cited_key in seen:
                continue
            seen.add(cited_key)
            paper.sections.setdefault(key, []).append(cited_title)
            paper.section_ids.setdefault(key, []).append(cited_id)
    counts["cited_with_id"] += sum(i is not None for v in paper.section_ids.values() for i in v)
    if not paper.sections:
        counts["no_cited_sections"] += 1
        paper.problems.append(("no_cited_sections", "no section cites a resolvable reference"))
    return paper


def matches_categories(categories: str, patterns: list[str]) -> bool:
    """[pure] Whether any of a paper's space-separated categories matches any glob (``cs.*``).

    >>> matches_categories("math.PR cs.LG", ["cs.*"]), matches_categories("math.PR", ["cs.*", "stat.ML"])
    (True, False)
    """
    return any(fnmatch.fnmatchcase(c, p) for c in categories.split() for p in patterns)


# -- one input file (worker process) -------------------------------------------------------------------------------
@dataclass
class ShardJob:
    path: str
    shard: str  # finished shard path (.jsonl.gz); its .done.json marks it finished
    title_index: str | None
    categories: list[str]


_LOOKUP_CACHE: dict[str, object] = {}


def _lines(src, path: str, counts: Counter, problems: list[str]) -> Iterator[tuple[int, str]]:
    """Numbered lines of an input; a file cut short (a truncated .gz) ends the file, counted, not the build."""
    lineno = 0
    try:
        for lineno, line in enumerate(src, start=1):  # noqa: B007 (lineno is read after the loop)
            yield lineno, line
    except (EOFError, OSError, zlib.error) as err:
        counts["truncated_input"] += 1
        problems.append(f"{path}:{lineno + 1}: truncated_input: {type(err).__name__}: {err}")


def _lookup_for(title_index: str | None):
    if not title_index:
        return None
    index = _LOOKUP_CACHE.get(title_index)
    if index is None:
        from pasa.tools.title_index import TitleIndex

        index = _LOOKUP_CACHE[title_index] = TitleIndex(title_index)
    return index.get_record


def process_file(job: ShardJob) -> dict:
    """Convert one input file into a shard; returns its done-marker (counts, problems, timing). Streams: one paper
    in memory at a time. Writes ``<shard>.part`` and renames it, then writes the marker."""
    t0 = time.perf_counter()
    lookup = _lookup_for(job.title_index)
    counts: Counter = Counter()
    problems: list[str] = []
    part = job.shard + ".part"
    with open_text(job.path) as src, gzip.open(part, "wt", encoding="utf-8", compresslevel=3) as out:
        for lineno, line in _lines(src, job.path, counts, problems):
            if not line.strip():
                continue
            counts["lines"] += 1
            loc = f"{job.path}:{lineno}"
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except ValueError as err:
                counts["malformed_line"] += 1
                problems.append(f"{loc}: malformed_line: {str(err)[:200]}")
                continue
            if job.categories:  # filter before the expensive part when the record says its categories
                meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
                own = meta.get("categories") if isinstance(meta.get("categories"), str) else None
                if own is not None and lookup is None and not matches_categories(own, job.categories):
                    counts["category_filtered"] += 1
                    continue
            try:
                paper = convert_paper(record, lookup)
            except Exception as err:  # a shape the converter does not expect: one paper lost, never the build
                counts["unreadable_record"] += 1
                problems.append(f"{loc}: unreadable_record: {type(err).__name__}: {str(err)[:200]}")
                continue
            if paper is None:
                counts["no_id_or_title"] += 1
                problems.append(f"{loc}: no_id_or_title: {str(record.get('paper_id'))[:40]!r}")
                continue
            if job.categories and not matches_categories(paper.categories, job.categories):
                counts["category_filtered"] += 1
                continue
            counts.update(paper.counts)
            for kind, detail in paper.problems:
                problems.append(f"{loc}: {kind}: {paper.arxiv_id}: {detail}")
            row = {"arxiv_id": paper.arxiv_id, "loc": loc, "title": paper.title, **paper.to_entry()}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(part, job.shard)
    marker = {
        "format": SHARD_FORMAT,
        "input": job.path,
        "fingerprint": _fingerprint(job.path),
        "settings": _settings(job.title_index, job.categories),
        "counts": dict(counts),
        "problems": problems,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    _write_json(job.shard + ".done.json", marker)
    return marker


# -- helpers ---------------------------------------------------------------------------------------------------------
def _write_json(path: str, obj) -> None:
    from pasa.io import write_json_atomic

    write_json_atomic(path, obj)


def _fingerprint(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _settings(title_index: str | None, categories: list[str]) -> dict:
    """What a shard depends on besides its input: a finished shard built with other settings is rebuilt."""
    manifest = None
    if title_index:
        try:
            with open(os.path.join(title_index, "manifest.json"), encoding="utf-8") as f:
                manifest = json.load(f).get("source")
        except (OSError, json.JSONDecodeError):
            manifest = "unreadable"
    return {"title_index": manifest, "categories": sorted(categories)}


def expand_inputs(inputs: Iterable[str], skip: str | None = None) -> list[str]:
    """Input files: files as given, folders walked for ``*.jsonl[.gz]`` (hidden folders and ``skip``, the output
    folder, left out); sorted, unique."""
    files: list[str] = []
    skip = os.path.abspath(skip) if skip else None
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, names in os.walk(item):
                dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.abspath(os.path.join(root, d)) != skip]
                files += [os.path.join(root, n) for n in names if n.endswith(INPUT_SUFFIXES)]
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item!r} does not exist")
    return sorted(dict.fromkeys(os.path.abspath(f) for f in files))


def shard_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".gz", ".jsonl", ".json"):
        base = base.removesuffix(suffix)
    return f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:10]}.jsonl.gz"


def _is_done(shard: str, path: str, settings: dict) -> dict | None:
    try:
        with open(shard + ".done.json", encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    ok = (
        marker.get("format") == SHARD_FORMAT
        and marker.get("fingerprint") == _fingerprint(path)
        and marker.get("settings") == settings
        and os.path.isfile(shard)
    )
    return marker if ok else None


def iter_shard(shard: str) -> Iterator[dict]:
    with gzip.open(shard, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


# -- the build -------------------------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    output_dir: str
    counts: Counter
    problems_logged: int
    seconds: float
    files: int
    files_resumed: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def _log_problem(problems_file, message: str, shown: list[int]) -> None:
    problems_file.write(message + "\n")
    shown[0] += 1
    if shown[0] <= MAX_WARNINGS:
        logger.warning("%s", message)


def build_database(
    inputs: list[str],
    output_dir: str,
    metadata: str | None = None,
    categories: list[str] | None = None,
    workers: int = 1,
    title_index: str | None = None,
    search_index: bool = True,
    keep_work: bool = True,
    progress: bool = False,
) -> BuildResult:
    """Build the database in ``output_dir`` (see the module docstring). Resumes a killed build of the same inputs
    and settings; never aborts on bad input (counted, logged to ``problems.log``)."""
    t0 = time.perf_counter()
    categories = list(categories or [])
    os.makedirs(output_dir, exist_ok=True)
    if metadata:
        title_index = title_index or os.path.join(output_dir, TITLE_INDEX_DIR)
        _ensure_title_index(metadata, title_index, progress)
    files = expand_inputs(inputs, skip=output_dir)
    counts: Counter = Counter()
    report = {"inputs": files, "metadata": metadata, "categories": categories, "title_index": title_index}
    if not files:
        counts["papers_written"] = 0
        _write_json(os.path.join(output_dir, REPORT_NAME), {**report, "counts": {}})
        return BuildResult(output_dir, counts, 0, time.perf_counter() - t0, 0, 0)

    # 1. one shard per input file, in parallel, skipping finished ones
    timings = {"title_index": time.perf_counter() - t0}
    t_stage = time.perf_counter()
    work = os.path.join(output_dir, WORK_DIR)
    os.makedirs(work, exist_ok=True)
    settings = _settings(title_index, categories)
    jobs, markers = [], {}
    for path in files:
        shard = os.path.join(work, shard_name(path))
        marker = _is_done(shard, path, settings)
        if marker is not None:
            markers[path] = marker
        else:
            jobs.append(ShardJob(path, shard, title_index, categories))
    resumed = len(markers)
    if resumed:
        logger.info("resuming: %d of %d input files already converted", resumed, len(files))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), initial=resumed, desc="converting files", unit=" file", file=sys.stderr)
    papers_seen = sum(m["counts"].get("lines", 0) for m in markers.values())
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no fork of a process holding threads/SQLite handles
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for marker in pool.imap_unordered(process_file, jobs):
                markers[marker["input"]] = marker
                papers_seen += marker["counts"].get("lines", 0)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(papers=papers_seen)
    else:
        for job in jobs:
            marker = process_file(job)
            markers[job.path] = marker
            papers_seen += marker["counts"].get("lines", 0)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(papers=papers_seen)
    if bar is not None:
        bar.close()

    # 2. assembly: stream the shards in input order into the zip; first paper wins an id or a title key
    timings["convert"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    shown = [0]
    problems_path = os.path.join(output_dir, PROBLEMS_NAME)
    zip_path = os.path.join(output_dir, ZIP_NAME)
    id2paper_path = os.path.join(output_dir, ID2PAPER_NAME)
    report_path = os.path.join(output_dir, REPORT_NAME)
    if os.path.exists(report_path):
        os.remove(report_path)  # the report marks a finished build; it comes back last
    tmp_zip = tempfile.mkstemp(dir=output_dir, prefix=".paper_db-", suffix=".zip.tmp")[1]
    tmp_ids = tempfile.mkstemp(dir=output_dir, prefix=".id2paper-", suffix=".json.tmp")[1]
    seen_ids: set[str] = set()
    key_owner: dict[str, str] = {}
    written = 0
    try:
        with open(problems_path, "w", encoding="utf-8") as problems_file:
            for path in files:
                marker = markers[path]
                counts.update(marker["counts"])
                for message in marker["problems"]:
                    _log_problem(problems_file, message, shown)
            with (
                zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf,
                open(tmp_ids, "w", encoding="utf-8") as ids_file,
            ):
                ids_file.write("{")
                for path in files:
                    for row in iter_shard(os.path.join(work, shard_name(path))):
                        arxiv_id, loc, title = row.pop("arxiv_id"), row.pop("loc"), row["title"]
                        key = title_key(title)
                        if arxiv_id in seen_ids:
                            counts["duplicate_id"] += 1
                            _log_problem(problems_file, f"{loc}: duplicate_id: {arxiv_id}", shown)
                            continue
                        seen_ids.add(arxiv_id)
                        if not key:
                            counts["title_without_letters"] += 1
                            _log_problem(problems_file, f"{loc}: title_without_letters: {arxiv_id}: {title!r}", shown)
                            continue
                        if key in key_owner:
                            counts["title_key_collision"] += 1
                            _log_problem(
                                problems_file,
                                f"{loc}: title_key_collision: {arxiv_id} {title!r} has the key of {key_owner[key]}",
                                shown,
                            )
                            continue
                        key_owner[key] = arxiv_id
                        zf.writestr(key, json.dumps(row, ensure_ascii=False))
                        ids_file.write(
                            ("" if written == 0 else ",")
                            + f"\n{json.dumps(arxiv_id)}: {json.dumps(title, ensure_ascii=False)}"
                        )
                        written += 1
                ids_file.write("\n}\n")
        from pasa.io import current_umask

        for tmp in (tmp_zip, tmp_ids):  # mkstemp makes 0600 files; the outputs get the user's umask
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp_zip, zip_path)
        os.replace(tmp_ids, id2paper_path)
    finally:
        for tmp in (tmp_zip, tmp_ids):
            if os.path.exists(tmp):
                os.remove(tmp)
    del seen_ids, key_owner
    counts["papers_written"] = written

    # 3. the offline search index, cached for exactly these files (LocalSearchIndex.from_paper_db reuses it)
    timings["assemble"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    if search_index and written:
        from pasa.tools.local_search import LocalSearchIndex

        index = LocalSearchIndex.from_paper_db(zip_path, id2paper_path, os.path.join(output_dir, SEARCH_INDEX_DIR))
        index.close()
    timings["search_index"] = time.perf_counter() - t_stage
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t0
    timings = {k: round(v, 3) for k, v in timings.items()}
    _write_json(report_path, {**report, "counts": dict(counts), "seconds": round(seconds, 3), "timings": timings,
                              "count_help": COUNT_HELP})  # fmt: skip
    return BuildResult(output_dir, counts, shown[0], seconds, len(files), resumed, timings)


def _ensure_title_index(metadata: str, out_dir: str, progress: bool = False) -> None:
    """Build the title index of a metadata snapshot unless ``out_dir`` already holds one built from that file."""
    from pasa.tools.local_search import fingerprint_files
    from pasa.tools.title_index import MANIFEST, build_title_index, iter_metadata

    source = {"metadata": fingerprint_files(metadata)}
    try:
        with open(os.path.join(out_dir, MANIFEST), encoding="utf-8") as f:
            if json.load(f).get("source") == source:
                logger.info("using the title index in %s", out_dir)
                return
    except (OSError, json.JSONDecodeError):
        pass
    logger.info("indexing the metadata snapshot %s into %s", metadata, out_dir)
    problems: list[str] = []
    records = iter_metadata(metadata, problems)
    if progress:
        from tqdm import tqdm

        records = tqdm(records, desc="indexing arXiv metadata", unit=" records", file=sys.stderr, mininterval=1.0)
    build_title_index(records, out_dir, source=source)
    if problems:
        logger.warning("%d malformed metadata lines skipped", len(problems))


def paper_from_entry(arxiv_id: str, entry: dict) -> Paper:
    """[pure] A zip entry of this database as a ``Paper`` (``section_ids`` included)."""
    from pasa.tools.paper_db import parse_db_record

    return parse_db_record(arxiv_id, entry)


# -- `pasa build-db` --------------------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasa build-db",
        description="Build a PaSa paper database (released zip + id2paper.json layout, with cited arXiv ids) from "
        "unarXive jsonl files, and the offline search and title indexes.",
        epilog="examples:\n"
        "  pasa build-db data/unarXive/ --metadata data/arxiv-metadata-oai-snapshot.json --categories 'cs.*' "
        "--output_dir data/paper_database_unarxive --workers 8\n"
        "  pasa build-db --metadata data/arxiv-metadata-oai-snapshot.json --output_dir data/arxiv_titles",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", help="unarXive .jsonl / .jsonl.gz files, or folders of them.")
    parser.add_argument("--output_dir", "--output_folder", "--output", dest="output_dir", required=True,
                        help="Folder for paper_db.zip, id2paper.json, search_index/, title_index/, the report.")  # fmt: skip
    parser.add_argument("--metadata", help="arXiv metadata snapshot (arxiv-metadata-oai-snapshot.json[.gz]): titles, "
                        "abstracts, dates and categories by id; also builds OUTPUT/title_index.")  # fmt: skip
    parser.add_argument("--categories", default="", help="Comma-separated category globs to keep, e.g. 'cs.*' "
                        "(the released DB is computer science); default all.")  # fmt: skip
    parser.add_argument("--title_index", help="An existing title index folder to read metadata from (instead of "
                        "building one from --metadata).")  # fmt: skip
    parser.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                        help="Processes converting input files in parallel (default: CPUs - 1, at most 8).")  # fmt: skip
    parser.add_argument("--no_search_index", action="store_true", help="Skip the offline BM25 index.")
    parser.add_argument("--keep_work", default="true", choices=["true", "false"],
                        help="Keep the per-file shards in OUTPUT/.build (resume state) after a finished build.")  # fmt: skip
    return parser


def check_arguments(args: argparse.Namespace) -> str | None:
    """The one-line reason the build cannot start, or None; checked before the output folder is created."""
    if not args.inputs and not args.metadata:
        return "give unarXive inputs, --metadata, or both"
    if args.title_index and args.metadata:
        return "give --metadata (to build a title index) or --title_index, not both"
    if args.metadata and not os.path.isfile(args.metadata):
        return f"--metadata {args.metadata!r} is not a file; download the arXiv metadata snapshot (docs/build_db.md)"
    if args.title_index and not os.path.isdir(args.title_index):
        return f"--title_index {args.title_index!r} is not a folder; build one with --metadata"
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        return f"--output_dir {args.output_dir!r} is a file; pass a folder"
    if args.inputs:
        try:
            files = expand_inputs(args.inputs, skip=args.output_dir)
        except FileNotFoundError as err:
            return str(err)
        if not files:
            return (
                f"no unarXive files ({', '.join('*' + s for s in INPUT_SUFFIXES)}) in {', '.join(args.inputs)}; "
                "pass the unarXive release's files or folder"
            )
    return None


def _remove_if_empty(folder: str) -> None:
    """Remove a folder this run created when a failed build left nothing in it (empty subfolders included)."""
    for _root, _, names in os.walk(folder):
        if names:
            return
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``pasa build-db``. Exit 2 on bad arguments or a failed build (one line), 0 otherwise (bad input lines are
    counted, never fatal)."""
    args = make_parser().parse_args(argv)
    problem = check_arguments(args)
    if problem:
        print(f"pasa build-db: {problem}", file=sys.stderr)
        return 2
    created = not os.path.exists(args.output_dir)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    try:
        result = build_database(
            args.inputs,
            args.output_dir,
            metadata=args.metadata,
            categories=categories,
            workers=max(1, args.workers),
            title_index=args.title_index,
            search_index=not args.no_search_index,
            keep_work=args.keep_work == "true",
            progress=True,
        )
    except (OSError, ValueError) as err:
        if created:
            _remove_if_empty(args.output_dir)
        print(f"pasa build-db: {err}", file=sys.stderr)
        return 2
    print_summary(result)
    return 0


def print_summary(result: BuildResult) -> None:
    out = os.path.abspath(result.output_dir)
    c = result.counts
    print(f"database: {out}  ({result.files} input files, {result.files_resumed} resumed, {result.seconds:.1f} s)")
    if result.files:
        print(f"papers: {c['papers_written']} written of {c['lines']} lines")
        for key, help_ in COUNT_HELP.items():
            if key not in ("lines", "papers_written") and c.get(key):
                print(f"  {key:<24} {c[key]:>9}  {help_.lstrip('* ')}")
        cited = c["titles_from_metadata"] + c["titles_extracted"]
        if cited:
            print(f"cited titles: {cited} ({c['cited_with_id']} with an arXiv id)")
        if result.problems_logged > MAX_WARNINGS:
            print(f"({result.problems_logged - MAX_WARNINGS} more problems in {os.path.join(out, PROBLEMS_NAME)})")
    if os.path.isdir(os.path.join(out, TITLE_INDEX_DIR)):
        print(f"title index: {os.path.join(out, TITLE_INDEX_DIR)}")
