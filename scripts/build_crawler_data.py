"""Build Crawler SFT trajectories from AutoScholarQuery records and a paper database (DESIGN §1.3).

Each record (``question``, ``answer``: cited titles, optional ``answer_arxiv_id``, ``source_meta``) gives:

* one **search session**: the ``generate_query`` prompt -> ``[Search] q`` lines then ``[StopSearch]``. The queries
  come from a teacher model (``--teacher``, any ``pasa.llm.load_llm`` spec, e.g. ``http://host:8000/v1#gpt-4o``)
  or, without one, from the record (``search_queries`` when it has that list, else the question itself);
* **expand sessions**: for each candidate paper with sections -- the answer papers, the record's source paper
  (``source_meta.arxiv_id``/``title``) and, with ``--search_k``, the top search results of the session's queries --
  the ``select_section`` prompt -> ``[Expand] <section>`` for every section that cites an answer paper, in the
  paper's order, then ``[StopExpand]``. Papers citing no answer give ``[StopExpand]`` alone (stop sessions), at most
  ``--stop_sessions_ratio`` of them per expand session with targets.

Prompts are rendered with ``pasa.prompts.render_search_prompt``/``render_expand_prompt`` and every response is
checked to parse back (``parse_search_queries``/``parse_expand_sections``) to its targets, so the agent reads the
trained format exactly; queries and section names that cannot round-trip (a ``[`` inside) are dropped and counted.
Bad records are skipped and counted. Output: chat records (``messages``) for ``scripts/sft.py``, written atomically.

Launch lines::

    python scripts/build_crawler_data.py --input_file data/AutoScholarQuery/train.jsonl \\
        --paper_db data/paper_database/cs_paper_2nd.zip --id2paper data/paper_database/id2paper.json \\
        --teacher http://localhost:8000/v1#gpt-4o --output_file data/sft_crawler/built.jsonl
    python scripts/build_crawler_data.py --input_file data/AutoScholarQuery/train.jsonl \\
        --paper_db data/paper_database/cs_paper_2nd.zip --id2paper data/paper_database/id2paper.json \\
        --output_file data/sft_crawler/built.jsonl --max_records 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pasa.flags import make_argparser  # noqa: E402
from pasa.paper import Paper, normalize_arxiv_id, title_key  # noqa: E402
from pasa.prompts import (  # noqa: E402
    parse_expand_sections,
    parse_search_queries,
    render_expand_prompt,
    render_search_prompt,
)
from trl_ext.sft_data import iter_counted_jsonl  # noqa: E402

logger = logging.getLogger(__name__)

STOP_SEARCH = "[StopSearch]"
STOP_EXPAND = "[StopExpand]"
# Added to the generate_query prompt for a teacher that does not know the action format (e.g. GPT-4o).
TEACHER_SEARCH_SUFFIX = (
    "\n\nWrite each query on its own line as `[Search] <query>` and end with the line `[StopSearch]`."
)
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


@dataclass
class CrawlerDataConfig:
    """Knobs of the trajectory builder."""

    max_queries: int = field(default=5, metadata={"help": "Search queries kept per session (agent default: 5)."})
    search_k: int = field(
        default=0, metadata={"help": "Search results per query added as expand candidates (0: none)."}
    )
    max_expand_sessions: int = field(default=10, metadata={"help": "Expand sessions with targets per record."})
    stop_sessions_ratio: float = field(
        default=1.0, metadata={"help": "Stop-only expand sessions kept per expand session with targets."}
    )
    sections_style: str = field(
        default="dict_keys", metadata={"help": "Sections field style: 'dict_keys' (released inference) or 'json'."}
    )


# -- pure formatting ---------------------------------------------------------------------------------------------
def clean_query(query: str) -> str:
    """[pure] One line, no brackets (the parser cuts a query at the next ``[``).

    >>> clean_query("  graph [neural] networks\\n survey ")
    'graph (neural) networks survey'
    """
    return " ".join(query.replace("[", "(").replace("]", ")").split())


def format_search_response(queries: list[str]) -> str:
    """[pure] ``[Search] q`` lines then ``[StopSearch]`` (the released crawler's output form).

    >>> format_search_response(["gnn survey", "message passing"])
    '[Search] gnn survey\\n[Search] message passing\\n[StopSearch]'
    """
    return "".join(f"[Search] {q}\n" for q in queries) + STOP_SEARCH


def format_expand_response(sections: list[str]) -> str:
    """[pure] ``[Expand] section`` lines then ``[StopExpand]``.

    >>> format_expand_response(["2 Related Work"])
    '[Expand] 2 Related Work\\n[StopExpand]'
    """
    return "".join(f"[Expand] {s}\n" for s in sections) + STOP_EXPAND


def parse_teacher_queries(reply: str, limit: int) -> list[str]:
    """[pure] Queries in a teacher reply: ``[Search]`` actions, else one per non-empty line (list markers dropped).

    >>> parse_teacher_queries("1. gnn survey\\n- \\"message passing\\"\\n", 5)
    ['gnn survey', 'message passing']
    """
    queries = parse_search_queries(reply + "[")  # a trailing "[" keeps a last action without [StopSearch]
    if not queries:
        lines = [_LIST_MARKER_RE.sub("", line).strip().strip("\"'") for line in reply.splitlines()]
        queries = [line for line in lines if line and not line.startswith("[Stop")]
    out: list[str] = []
    for q in map(clean_query, queries):
        if q and q not in out:
            out.append(q)
    return out[:limit]


def chat_record(prompt: str, response: str, **meta) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], **meta}


def search_session(question: str, queries: list[str]) -> dict:
    """[pure] The search-session record; raises ``ValueError`` if the response does not parse back."""
    response = format_search_response(queries)
    if parse_search_queries(response) != queries:
        raise ValueError(f"search response does not parse back to its queries: {response!r}")
    return chat_record(render_search_prompt(question), response, session="search", question=question)


def expand_targets(sections: dict[str, list[str]], answer_keys: set[str]) -> tuple[list[str], int]:
    """[pure] Sections (in order) citing an answer title, and how many such sections cannot round-trip.

    >>> expand_targets({"1 Intro": ["A"], "2 Related [x]": ["B"], "3 Method": ["C"]}, {"b", "c"})
    (['3 Method'], 1)
    """
    targets, dropped = [], 0
    for name, cited in sections.items():
        if not any(title_key(t) in answer_keys for t in cited if isinstance(t, str)):
            continue
        if "[" in name or name != name.strip() or not name:
            dropped += 1  # the parser would cut or strip it: the agent could never expand it
            continue
        targets.append(name)
    return targets, dropped


def expand_session(question: str, paper: Paper, targets: list[str], sections_style: str = "dict_keys") -> dict:
    """[pure] The expand-session record of one paper; raises ``ValueError`` if the response does not parse back."""
    names = list(paper.sections or {})
    response = format_expand_response(targets)
    if parse_expand_sections(response, names) != targets:
        raise ValueError(f"expand response does not parse back to its sections: {response!r}")
    prompt = render_expand_prompt(question, paper.title, paper.abstract, names, sections_style)
    return chat_record(prompt, response, session="expand", question=question, arxiv_id=paper.arxiv_id)


# -- building ----------------------------------------------------------------------------------------------------
def check_query_record(record: dict) -> str | None:
    """[pure] What is wrong with an AutoScholarQuery record for this builder, or None."""
    if not isinstance(record.get("question"), str) or not record["question"].strip():
        return "missing or empty 'question'"
    answer = record.get("answer")
    if not isinstance(answer, list) or not answer or not all(isinstance(a, str) for a in answer):
        return "'answer' must be a non-empty list of titles"
    meta = record.get("source_meta", {})
    if meta is not None and not isinstance(meta, dict):
        return "'source_meta' must be an object"
    return None


def _end_date(record: dict) -> str | None:
    from pasa.runner import end_date_from_published

    meta = record.get("source_meta") or {}
    try:
        return end_date_from_published(meta.get("published_time"))
    except ValueError:
        return None


def _candidates(record: dict, queries: list[str], source, config: CrawlerDataConfig) -> list[Paper]:
    """Answer papers, the source paper and (optionally) search results, deduplicated, in that order."""
    found: list[Paper | None] = []
    ids = record.get("answer_arxiv_id")
    if isinstance(ids, list):
        found += [source.get_by_id(i) for i in ids if isinstance(i, str)]
    found += [source.get_by_title(t) for t in record["answer"]]
    meta = record.get("source_meta") or {}
    if isinstance(meta.get("arxiv_id"), str):
        found.append(source.get_by_id(meta["arxiv_id"]))
    if isinstance(meta.get("title"), str):
        found.append(source.get_by_title(meta["title"]))
    if config.search_k > 0:
        end_date = _end_date(record)
        for q in queries:
            found += [source.get_by_id(i) for i in source.search(q, config.search_k, end_date)]
    papers, seen = [], set()
    for p in found:
        if p is not None and normalize_arxiv_id(p.arxiv_id) not in seen:
            seen.add(normalize_arxiv_id(p.arxiv_id))
            papers.append(p)
    return papers


def build_record_sessions(record: dict, source, teacher, config: CrawlerDataConfig, counts: Counter) -> list[dict]:
    """All sessions of one valid record (search first). ``counts`` gathers what was built and dropped."""
    question = record["question"].strip()
    if teacher is not None:
        (reply,) = teacher.generate([render_search_prompt(question) + TEACHER_SEARCH_SUFFIX], chat=True)
        queries = parse_teacher_queries(reply, config.max_queries)
        if not queries:
            counts["teacher_replies_without_queries"] += 1
            logger.warning("teacher gave no search queries for %r: %r", question, reply[:200])
    else:
        given = record.get("search_queries")
        given = given if isinstance(given, list) and all(isinstance(q, str) for q in given) else [question]
        queries = [q for q in dict.fromkeys(map(clean_query, given)) if q][: config.max_queries]
    sessions = []
    if queries:
        sessions.append(search_session(question, queries))
        counts["search_sessions"] += 1

    answer_keys = {title_key(t) for t in record["answer"]}
    with_targets, stops = [], []
    for paper in _candidates(record, queries, source, config):
        sections = paper.sections or source.get_sections(paper.arxiv_id)
        if not sections:
            counts["candidates_without_sections"] += 1
            continue
        paper = Paper(paper.arxiv_id, paper.title, paper.abstract, sections, paper.source, paper.published)
        targets, dropped = expand_targets(sections, answer_keys)
        counts["target_sections_dropped"] += dropped
        if targets and len(with_targets) < config.max_expand_sessions:
            with_targets.append(expand_session(question, paper, targets, config.sections_style))
        elif not targets and not dropped:
            stops.append(expand_session(question, paper, [], config.sections_style))
    stops = stops[: int(config.stop_sessions_ratio * len(with_targets))]
    counts["expand_sessions"] += len(with_targets)
    counts["stop_sessions"] += len(stops)
    return sessions + with_targets + stops


def build_crawler_data(
    query_path: str,
    source,
    teacher=None,
    config: CrawlerDataConfig | None = None,
    max_records: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[list[dict], Counter]:
    """Sessions for every valid record of an AutoScholarQuery jsonl; bad records are logged, skipped, counted.

    ``progress(1)`` is called once per record read (a tqdm bar's ``update``).
    """
    config = config or CrawlerDataConfig()
    counts: Counter = Counter()
    out: list[dict] = []
    for lineno, record in iter_counted_jsonl(query_path, counts):
        if max_records is not None and counts["records"] >= max_records:
            break
        counts["records"] += 1
        if progress is not None:
            progress(1)
        problem = check_query_record(record)
        if problem is not None:
            counts["bad_records"] += 1
            logger.warning("%s:%d: %s, skipped", query_path, lineno, problem)
            continue
        try:
            out += build_record_sessions(record, source, teacher, config, counts)
        except Exception as err:  # a failing teacher or source skips one record, never the whole build
            counts["failed_records"] += 1
            logger.warning("%s:%d: %s: %s, skipped", query_path, lineno, type(err).__name__, err)
    return out, counts


EXAMPLE = (
    "python scripts/build_crawler_data.py --input_file data/AutoScholarQuery/train.jsonl "
    "--paper_db data/paper_database/cs_paper_2nd.zip --id2paper data/paper_database/id2paper.json "
    "--output_file data/sft_crawler/built.jsonl"
)


def count_lines(path: str) -> int:
    """Lines of a file (the progress bar's total)."""
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def make_parser() -> argparse.ArgumentParser:
    p = make_argparser(
        "scripts/build_crawler_data.py",
        example=EXAMPLE,
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--input_file", required=True, help="AutoScholarQuery-format jsonl (question, answer, source_meta)."
    )
    p.add_argument("--paper_db", required=True, help="Paper database zip (released cs_paper_2nd.zip format).")
    p.add_argument("--id2paper", required=True, help="id2paper.json of the paper database.")
    p.add_argument("--output_file", required=True, help="Output jsonl (chat records for scripts/sft.py).")
    p.add_argument("--teacher", default=None, help="LLM spec for search queries (e.g. http://host/v1#gpt-4o).")
    p.add_argument("--max_records", type=int, default=None, help="Read at most this many records.")
    for name, f in CrawlerDataConfig.__dataclass_fields__.items():
        p.add_argument(f"--{name}", type=type(f.default), default=f.default, help=f.metadata["help"])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    from pasa.checks import check_builder_inputs

    check_builder_inputs(args, parser.prog)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm.auto import tqdm

    from pasa.io import write_text_atomic
    from pasa.llm import load_llm
    from pasa.tools.sources import PaperDBSource

    config = CrawlerDataConfig(**{k: getattr(args, k) for k in CrawlerDataConfig.__dataclass_fields__})
    source = PaperDBSource(args.paper_db, args.id2paper)
    teacher = load_llm(args.teacher) if args.teacher else None
    total = count_lines(args.input_file)
    if args.max_records is not None:
        total = min(total, args.max_records)
    with tqdm(total=total, desc="records", unit="record") as bar:
        records, counts = build_crawler_data(
            args.input_file, source, teacher, config, args.max_records, progress=bar.update
        )
    if not records:  # nothing to train on: say why, and leave no empty output behind
        for key in sorted(counts):
            print(f"  {key:32s} {counts[key]}")
        why = f"{counts['failed_records']} record(s) failed (see the warnings)" if counts["failed_records"] else ""
        print(
            f"{parser.prog}: no sessions built from {args.input_file}; {why or 'no usable records'}", file=sys.stderr
        )
        return 1
    write_text_atomic(args.output_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(f"wrote {len(records)} sessions to {args.output_file}")
    for key in sorted(counts):
        print(f"  {key:32s} {counts[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
