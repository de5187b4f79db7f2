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

What goes into one paper's entry (sections, cited titles and ids) is ``pasa.unarxive``.

Scale: each input file is converted by a worker process into a gzipped shard (one paper at a time, so memory does
not grow with the file) and marked done; a killed build re-run with the same arguments skips finished files.
The final assembly streams the shards into the zip (deduplicating ids and title keys) and writes every output
atomically. Numbers: ``bench/build_db.py``, ``docs/build_db.md``.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pasa.paper import title_key
from pasa.tools.title_index import open_text
from pasa.unarxive import convert_paper, matches_categories

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
            row = _convert_line(line, f"{job.path}:{lineno}", job.categories, lookup, counts, problems)
            if row is not None:
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


def _convert_line(line: str, loc: str, categories: list[str], lookup, counts: Counter, problems: list[str]):
    """One input line -> its shard row (the zip entry with ``arxiv_id`` and ``loc``), or None when the paper is
    skipped; what is skipped or damaged is counted, and logged as ``loc: kind: detail``."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    except ValueError as err:
        counts["malformed_line"] += 1
        problems.append(f"{loc}: malformed_line: {str(err)[:200]}")
        return None
    if categories:  # filter before the expensive part when the record says its categories
        meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        own = meta.get("categories") if isinstance(meta.get("categories"), str) else None
        if own is not None and lookup is None and not matches_categories(own, categories):
            counts["category_filtered"] += 1
            return None
    try:
        paper = convert_paper(record, lookup)
    except Exception as err:  # a shape the converter does not expect: one paper lost, never the build
        counts["unreadable_record"] += 1
        problems.append(f"{loc}: unreadable_record: {type(err).__name__}: {str(err)[:200]}")
        return None
    if paper is None:
        counts["no_id_or_title"] += 1
        problems.append(f"{loc}: no_id_or_title: {str(record.get('paper_id'))[:40]!r}")
        return None
    if categories and not matches_categories(paper.categories, categories):
        counts["category_filtered"] += 1
        return None
    counts.update(paper.counts)
    problems.extend(f"{loc}: {kind}: {paper.arxiv_id}: {detail}" for kind, detail in paper.problems)
    return {"arxiv_id": paper.arxiv_id, "loc": loc, "title": paper.title, **paper.to_entry()}


# -- shards and their done-markers ---------------------------------------------------------------------------------
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


class _ProblemLog:
    """``problems.log``: every problem one line; the first ``MAX_WARNINGS`` also logged as warnings."""

    def __init__(self, file):
        self.file = file
        self.count = 0

    def add(self, message: str) -> None:
        self.file.write(message + "\n")
        self.count += 1
        if self.count <= MAX_WARNINGS:
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
    report = {"inputs": files, "metadata": metadata, "categories": categories, "title_index": title_index}
    report_path = os.path.join(output_dir, REPORT_NAME)
    if not files:
        _write_json(report_path, {**report, "counts": {}})
        return BuildResult(output_dir, Counter(papers_written=0), 0, time.perf_counter() - t0, 0, 0)
    timings = {"title_index": time.perf_counter() - t0}

    # 1. one shard per input file, in parallel, skipping finished ones
    t_stage = time.perf_counter()
    work = os.path.join(output_dir, WORK_DIR)
    markers, resumed = convert_files(files, work, title_index, categories, workers, progress)
    timings["convert"] = time.perf_counter() - t_stage

    # 2. assembly: stream the shards in input order into the zip; first paper wins an id or a title key
    t_stage = time.perf_counter()
    if os.path.exists(report_path):
        os.remove(report_path)  # the report marks a finished build; it comes back last
    with open(os.path.join(output_dir, PROBLEMS_NAME), "w", encoding="utf-8") as problems_file:
        problems = _ProblemLog(problems_file)
        counts: Counter = Counter()
        for path in files:
            counts.update(markers[path]["counts"])
            for message in markers[path]["problems"]:
                problems.add(message)
        shards = [os.path.join(work, shard_name(path)) for path in files]
        counts["papers_written"] = assemble(shards, output_dir, counts, problems)
    timings["assemble"] = time.perf_counter() - t_stage

    # 3. the offline search index, cached for exactly these files (LocalSearchIndex.from_paper_db reuses it)
    t_stage = time.perf_counter()
    if search_index and counts["papers_written"]:
        from pasa.tools.local_search import LocalSearchIndex

        zip_path, id2paper_path = os.path.join(output_dir, ZIP_NAME), os.path.join(output_dir, ID2PAPER_NAME)
        LocalSearchIndex.from_paper_db(zip_path, id2paper_path, os.path.join(output_dir, SEARCH_INDEX_DIR)).close()
    timings["search_index"] = time.perf_counter() - t_stage

    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t0
    timings = {k: round(v, 3) for k, v in timings.items()}
    _write_json(report_path, {**report, "counts": dict(counts), "seconds": round(seconds, 3), "timings": timings,
                              "count_help": COUNT_HELP})  # fmt: skip
    return BuildResult(output_dir, counts, problems.count, seconds, len(files), resumed, timings)


def convert_files(
    files: list[str], work: str, title_index: str | None, categories: list[str], workers: int, progress: bool
) -> tuple[dict[str, dict], int]:
    """Stage 1: each input file converted into its shard in ``work`` by :func:`process_file` (``workers``
    processes), except files whose shard is already done with these settings. Returns the done-marker of every
    file (by input path) and how many were resumed."""
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
    for marker in _run_jobs(jobs, workers):
        markers[marker["input"]] = marker
        papers_seen += marker["counts"].get("lines", 0)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(papers=papers_seen)
    if bar is not None:
        bar.close()
    return markers, resumed


def _run_jobs(jobs: list[ShardJob], workers: int) -> Iterator[dict]:
    """The done-marker of each job as it finishes: in a pool of ``workers`` processes, or here when one is enough."""
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no fork of a process holding threads/SQLite handles
        with ctx.Pool(min(workers, len(jobs))) as pool:
            yield from pool.imap_unordered(process_file, jobs)
    else:
        for job in jobs:
            yield process_file(job)


def assemble(shards: list[str], output_dir: str, counts: Counter, problems: _ProblemLog) -> int:
    """Stage 2: the shards' rows, in order, into ``paper_db.zip`` and ``id2paper.json`` (both written to temporary
    files and renamed into place). The first paper wins an arXiv id or a title key; later ones are counted and
    logged. Returns the number of papers written."""
    from pasa.io import current_umask

    tmp_zip = tempfile.mkstemp(dir=output_dir, prefix=".paper_db-", suffix=".zip.tmp")[1]
    tmp_ids = tempfile.mkstemp(dir=output_dir, prefix=".id2paper-", suffix=".json.tmp")[1]
    try:
        with (
            zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf,
            open(tmp_ids, "w", encoding="utf-8") as ids_file,
        ):
            written = 0
            ids_file.write("{")
            for arxiv_id, key, title, row in _unique_papers(shards, counts, problems):
                zf.writestr(key, json.dumps(row, ensure_ascii=False))
                separator = "" if written == 0 else ","
                ids_file.write(f"{separator}\n{json.dumps(arxiv_id)}: {json.dumps(title, ensure_ascii=False)}")
                written += 1
            ids_file.write("\n}\n")
        for tmp in (tmp_zip, tmp_ids):  # mkstemp makes 0600 files; the outputs get the user's umask
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp_zip, os.path.join(output_dir, ZIP_NAME))
        os.replace(tmp_ids, os.path.join(output_dir, ID2PAPER_NAME))
    finally:
        for tmp in (tmp_zip, tmp_ids):
            if os.path.exists(tmp):
                os.remove(tmp)
    return written


def _unique_papers(shards: list[str], counts: Counter, problems: _ProblemLog) -> Iterator[tuple[str, str, str, dict]]:
    """``(arxiv_id, title key, title, zip entry)`` of each shard row whose id and title key no earlier row has, and whose
    title has a key; the others are counted and logged."""
    seen_ids: set[str] = set()
    key_owner: dict[str, str] = {}
    for shard in shards:
        for row in iter_shard(shard):
            arxiv_id, loc, title = row.pop("arxiv_id"), row.pop("loc"), row["title"]
            key = title_key(title)
            if arxiv_id in seen_ids:
                counts["duplicate_id"] += 1
                problems.add(f"{loc}: duplicate_id: {arxiv_id}")
                continue
            seen_ids.add(arxiv_id)
            if not key:
                counts["title_without_letters"] += 1
                problems.add(f"{loc}: title_without_letters: {arxiv_id}: {title!r}")
                continue
            if key in key_owner:
                counts["title_key_collision"] += 1
                problems.add(f"{loc}: title_key_collision: {arxiv_id} {title!r} has the key of {key_owner[key]}")
                continue
            key_owner[key] = arxiv_id
            yield arxiv_id, key, title, row


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


# -- `pasa build-db` --------------------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    from pasa.flags import make_argparser

    parser = make_argparser(
        "pasa build-db",
        example="pasa build-db data/unarXive/ --metadata data/arxiv-metadata-oai-snapshot.json --categories 'cs.*' "
        "--output_dir data/paper_database_unarxive --workers 8\n"
        "  pasa build-db --metadata data/arxiv-metadata-oai-snapshot.json --output_dir data/arxiv_titles",
        description="Build a PaSa paper database (released zip + id2paper.json layout, with cited arXiv ids) from "
        "unarXive jsonl files, and the offline search and title indexes.",
    )
    parser.add_argument("inputs", nargs="*", help="unarXive .jsonl / .jsonl.gz files, or folders of them.")
    parser.add_argument("--output_dir", required=True,
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
