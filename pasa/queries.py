"""Queries to run: the ``QueryItem`` record and the one reader of query files (AutoScholarQuery format).

A query file is JSONL, one object per line: ``question`` (required), ``answer`` (list of titles, optional),
``source_meta.published_time`` (the source paper's date; the end date of the search is that minus 7 days, as in
the released ``run_paper_agent.py``), ``seed_papers`` (arXiv ids queued before the search results, optional). ``pasa run``, the baselines, ``pasa reproduce`` and the PPO script read them
through :func:`load_queries`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from pasa.io import iter_jsonl

logger = logging.getLogger(__name__)

END_DATE_OFFSET_DAYS = 7  # released run_paper_agent.py: published_time - 7 days
# YYYYMMDD or YYYY-MM-DD, optionally followed by a time ("2024-01-10T08:00:00Z"): the dates the datasets carry.
PUBLISHED_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ].*)?")


@dataclass
class QueryItem:
    """One query of a batch: its output index, text, end date, answers and the arXiv ids it starts from."""

    index: int
    question: str
    end_date: str | None = None
    answer: list[str] | None = None
    seed_papers: list[str] | None = None


def end_date_from_published(published_time: str | int | None, offset_days: int = END_DATE_OFFSET_DAYS) -> str | None:
    """``YYYYMMDD`` of ``published_time`` minus ``offset_days``; None when absent. Raises ``ValueError`` on a value
    that is not a date.

    >>> end_date_from_published("20240110"), end_date_from_published("2024-01-10")
    ('20240103', '20240103')
    """
    if published_time is None or str(published_time).strip() == "":
        return None
    match = PUBLISHED_RE.fullmatch(str(published_time).strip())
    if match is None:
        raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {published_time!r}")
    day = datetime.strptime("".join(match.groups()), "%Y%m%d") - timedelta(days=offset_days)
    return day.strftime("%Y%m%d")


def seed_papers_of_record(value) -> list[str] | None:
    """A record's ``seed_papers``: a list of arXiv ids (or one comma-separated string), without versions; None when
    absent or empty. Raises ``ValueError`` naming the entry that is not an arXiv id.

    >>> seed_papers_of_record(["1706.03762v5", "hep-th/9901001"]), seed_papers_of_record(None)
    (['1706.03762', 'hep-th/9901001'], None)
    """
    from pasa.tools.arxiv_api import parse_arxiv_ids

    if value is None or value == [] or value == "":
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of arXiv ids")
    return parse_arxiv_ids(",".join(value)) or None


def load_queries(
    path: str,
    limit: int | None = None,
    require_answer: bool = False,
    offset_days: int = END_DATE_OFFSET_DAYS,
    skipped: Counter | None = None,
) -> list[QueryItem]:
    """Read a query jsonl. Malformed lines (bad UTF-8 included), records without ``question`` (or, with
    ``require_answer``, without ``answer``), bad dates and answers that are not lists of titles are logged with
    their line number and skipped; ``skipped`` (a Counter), when given, counts them by reason.

    The item's index is its 0-based line number (the released output naming ``<index>.json``).
    """
    skipped = Counter() if skipped is None else skipped
    items: list[QueryItem] = []
    required = ("question", "answer") if require_answer else ("question",)
    for lineno, record in iter_jsonl(path, required=required, counts=skipped):
        question = record["question"]
        if not isinstance(question, str) or not question.strip():
            logger.warning("%s:%d: empty or non-string 'question', skipped", path, lineno)
            skipped["bad_question"] += 1
            continue
        meta = record.get("source_meta") or {}
        published = meta.get("published_time") if isinstance(meta, dict) else None
        try:
            end_date = end_date_from_published(published, offset_days)
        except ValueError:
            logger.warning("%s:%d: bad source_meta.published_time %r, skipped", path, lineno, published)
            skipped["bad_date"] += 1
            continue
        answer = record.get("answer")
        if answer is not None and not (isinstance(answer, list) and all(isinstance(a, str) for a in answer)):
            logger.warning("%s:%d: 'answer' is not a list of titles, skipped", path, lineno)
            skipped["bad_answer"] += 1
            continue
        seeds = record.get("seed_papers")
        try:
            seed_papers = seed_papers_of_record(seeds)
        except ValueError as err:
            logger.warning("%s:%d: bad 'seed_papers' (%s), skipped", path, lineno, err)
            skipped["bad_seed_papers"] += 1
            continue
        items.append(QueryItem(lineno - 1, question, end_date, answer, seed_papers))
        if limit is not None and len(items) >= limit:
            break
    return items


def describe_skipped(skipped: Counter) -> str:
    """The reasons lines were skipped, with their counts (``no lines`` when none was).

    >>> describe_skipped(Counter(malformed_lines=2, missing_fields=1))
    '2 malformed lines, 1 missing a required field'
    """
    words = {
        "malformed_lines": "malformed lines",
        "missing_fields": "missing a required field",
        "bad_question": "with an empty question",
        "bad_date": "with a bad published_time",
        "bad_answer": "with an answer that is not a list of titles",
        "bad_seed_papers": "with seed_papers that are not arXiv ids",
    }
    parts = [f"{skipped[k]} {w}" for k, w in words.items() if skipped.get(k)]
    return ", ".join(parts) if parts else "no lines"
