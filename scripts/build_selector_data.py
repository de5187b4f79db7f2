"""Label (query, paper) pairs with a teacher model into Selector SFT records (the released ``sft_selector`` format).

Pairs come from AutoScholarQuery records and a paper database: each record's answer papers (found by title, or
``answer_arxiv_id``) up to ``--positives_per_query``, and ``--negatives_per_query`` other papers drawn at random
from the database (seeded per query), or from ``--pairs``, a jsonl of explicit ``{"question", "title",
"abstract"}`` pairs (e.g. papers a crawler found). The teacher (any ``pasa.llm.load_llm`` spec; in practice an
OpenAI-compatible server, ``http://host:8000/v1#gpt-4o``) answers the Selector prompt (``render_select_prompt``) as
one user turn; its decision and reason become the assistant turn ``True\\nReason: ...`` (the prompt ends in
``Decision:``, so the reply starts with the decision token the Selector's score reads). Replies without a
decision are skipped and counted (a rerun retries them).

Resumable: the output is append-only, one record per line, flushed as labelled; a rerun skips pairs already
present. Each record also keeps ``query``, ``title``, ``arxiv_id``, ``label`` (the teacher's) and
``in_answer`` (whether the paper is one of the record's answers). A progress bar and a token/cost estimate
(characters / 4; prices per million tokens with ``--price_in``/``--price_out``) are printed.

Launch lines::

    export OPENAI_API_KEY=...
    python scripts/build_selector_data.py --input_file data/AutoScholarQuery/train.jsonl \\
        --paper_db data/paper_database/cs_paper_2nd.zip --id2paper data/paper_database/id2paper.json \\
        --teacher https://api.openai.com/v1#gpt-4o --output_file data/sft_selector/built.jsonl \\
        --max_queries 5000 --price_in 2.5 --price_out 10
    python scripts/build_selector_data.py --pairs crawled_pairs.jsonl --teacher http://localhost:8000/v1#qwen \\
        --output_file data/sft_selector/built.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pasa.flags import make_argparser  # noqa: E402
from pasa.paper import normalize_arxiv_id, title_key  # noqa: E402
from pasa.prompts import render_select_prompt  # noqa: E402
from trl_ext.sft_data import (  # noqa: E402
    format_selector_target,
    iter_counted_jsonl,
    parse_selector_decision,
    parse_selector_reason,
)

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0  # rough English average for BPE tokenizers; the report says "estimate"


@dataclass(frozen=True)
class Pair:
    """One (query, paper) pair to label."""

    query: str
    title: str
    abstract: str
    arxiv_id: str = ""
    in_answer: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return pair_key(self.query, self.title)


def pair_key(query: str, title: str) -> tuple[str, str]:
    """[pure] Identity of a pair for resuming: the query text and the normalised title."""
    return " ".join(query.split()), title_key(title)


def selector_record(pair: Pair, decision: bool, reason: str) -> dict:
    """[pure] One output record: the chat example plus the pair's fields."""
    return {
        "messages": [
            {"role": "user", "content": render_select_prompt(pair.query, pair.title, pair.abstract)},
            {"role": "assistant", "content": format_selector_target(decision, reason)},
        ],
        "query": pair.query,
        "title": pair.title,
        "arxiv_id": pair.arxiv_id,
        "label": decision,
        "in_answer": pair.in_answer,
    }


def estimate_tokens(text: str) -> int:
    """[pure] A rough token count (characters / 4)."""
    return int(len(text) / CHARS_PER_TOKEN + 0.5)


# -- pairs -------------------------------------------------------------------------------------------------------
def pairs_from_queries(
    query_path: str,
    source,
    candidate_ids: list[str],
    positives_per_query: int,
    negatives_per_query: int,
    seed: int,
    counts: Counter,
    max_queries: int | None = None,
) -> Iterator[Pair]:
    """Answer papers (positives) and random other papers (negatives) of each AutoScholarQuery record.

    Negatives are drawn from ``candidate_ids`` with a generator seeded by ``seed`` and the question, so a rerun
    draws the same ones. Records without a ``question`` or a list ``answer`` are skipped and counted.
    """
    for lineno, record in iter_counted_jsonl(query_path, counts):
        if max_queries is not None and counts["queries"] >= max_queries:
            return
        question, answer = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, list):
            counts["bad_records"] += 1
            logger.warning("%s:%d: needs a 'question' string and an 'answer' list, skipped", query_path, lineno)
            continue
        counts["queries"] += 1
        answer_keys = {title_key(t) for t in answer if isinstance(t, str)}
        ids = record.get("answer_arxiv_id") if isinstance(record.get("answer_arxiv_id"), list) else []
        found = [source.get_by_id(i) for i in ids if isinstance(i, str)]
        found += [source.get_by_title(t) for t in answer if isinstance(t, str)]
        positives, seen = [], set()
        for p in found:
            if p is not None and title_key(p.title) not in seen:
                seen.add(title_key(p.title))
                positives.append(p)
        counts["answers_not_in_db"] += max(0, len(answer_keys) - len(positives))
        for p in positives[:positives_per_query]:
            yield Pair(question, p.title, p.abstract, normalize_arxiv_id(p.arxiv_id), True)
        rng = random.Random(f"{seed}:{question}")
        wanted, tries = negatives_per_query, 0
        while wanted > 0 and candidate_ids and tries < 10 * negatives_per_query:
            tries += 1
            p = source.get_by_id(rng.choice(candidate_ids))
            if p is None or title_key(p.title) in answer_keys or title_key(p.title) in seen:
                continue
            seen.add(title_key(p.title))
            wanted -= 1
            yield Pair(question, p.title, p.abstract, normalize_arxiv_id(p.arxiv_id), False)


def pairs_from_file(path: str, counts: Counter) -> Iterator[Pair]:
    """Explicit pairs: ``question`` (or ``query``), ``title``, ``abstract``; optional ``arxiv_id``, ``in_answer``."""
    for lineno, r in iter_counted_jsonl(path, counts):
        query, title, abstract = r.get("question", r.get("query")), r.get("title"), r.get("abstract", "")
        if not all(isinstance(x, str) for x in (query, title, abstract)) or not query.strip() or not title.strip():
            counts["bad_records"] += 1
            logger.warning("%s:%d: needs 'question', 'title' and 'abstract' strings, skipped", path, lineno)
            continue
        in_answer = r.get("in_answer") if isinstance(r.get("in_answer"), bool) else None
        yield Pair(query, title, abstract, str(r.get("arxiv_id") or ""), in_answer)


# -- labelling ---------------------------------------------------------------------------------------------------
def done_keys(output_path: str) -> set[tuple[str, str]]:
    """Pairs already labelled in an existing output (for resuming)."""
    from pasa.io import iter_jsonl

    if not os.path.exists(output_path):
        return set()
    return {
        pair_key(r["query"], r["title"])
        for _, r in iter_jsonl(output_path)
        if isinstance(r.get("query"), str) and isinstance(r.get("title"), str)
    }


def _open_for_append(path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    f = open(path, "a+", encoding="utf-8")
    f.seek(0, os.SEEK_END)
    if f.tell() > 0:  # a run killed mid-line left a partial record: start on a fresh line
        f.seek(f.tell() - 1)
        last = f.read(1)
        f.seek(0, os.SEEK_END)
        if last != "\n":
            f.write("\n")
    return f


LABELLED = ("labelled_true", "labelled_false")


class TeacherError(RuntimeError):
    """The teacher failed; ``labelled`` pairs were written before it did."""

    def __init__(self, message: str, labelled: int):
        super().__init__(message)
        self.labelled = labelled


def label_pairs(pairs, teacher, output_path: str, batch_size: int = 16, progress=None) -> Counter:
    """Label pairs not yet in ``output_path`` with ``teacher`` and append them; returns the counts.

    ``progress``: an optional callable taking the number of pairs just processed (a tqdm ``update``).
    """
    counts: Counter = Counter()
    done = done_keys(output_path)
    counts["already_done"] = 0
    with _open_for_append(output_path) as out:

        def flush(batch: list[Pair]) -> None:
            prompts = [render_select_prompt(p.query, p.title, p.abstract) for p in batch]
            try:
                replies = teacher.generate(prompts, chat=True)
            except Exception as err:  # the teacher went away mid-build: what was labelled stays, a rerun resumes
                raise TeacherError(f"{type(err).__name__}: {err}", labelled=sum(counts[k] for k in LABELLED)) from err
            for pair, prompt, reply in zip(batch, prompts, replies, strict=True):
                counts["prompt_tokens_est"] += estimate_tokens(prompt)
                counts["completion_tokens_est"] += estimate_tokens(reply)
                decision = parse_selector_decision(reply)
                if decision is None:
                    counts["unparsed_replies"] += 1
                    logger.warning("no decision in the teacher's reply for %r: %r", pair.title, reply[:200])
                    continue
                out.write(json.dumps(selector_record(pair, decision, parse_selector_reason(reply))) + "\n")
                counts["labelled_true" if decision else "labelled_false"] += 1
                if pair.in_answer is not None and pair.in_answer != decision:
                    counts["disagree_with_answer_set"] += 1
            out.flush()
            if progress is not None:
                progress(len(batch))

        batch: list[Pair] = []
        for pair in pairs:
            if pair.key in done:
                counts["already_done"] += 1
                if progress is not None:
                    progress(1)
                continue
            done.add(pair.key)
            batch.append(pair)
            if len(batch) >= batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    return counts


EXAMPLE = (
    "python scripts/build_selector_data.py --input_file data/AutoScholarQuery/train.jsonl "
    "--paper_db data/paper_database/cs_paper_2nd.zip --id2paper data/paper_database/id2paper.json "
    "--teacher https://api.openai.com/v1#gpt-4o --output_file data/sft_selector/built.jsonl"
)


def make_parser() -> argparse.ArgumentParser:
    p = make_argparser("scripts/build_selector_data.py", example=EXAMPLE, description=__doc__.split("\n\n")[0])
    p.add_argument("--input_file", help="AutoScholarQuery-format jsonl (question, answer).")
    p.add_argument("--paper_db", help="Paper database zip (released cs_paper_2nd.zip format).")
    p.add_argument("--id2paper", help="id2paper.json of the paper database.")
    p.add_argument("--pairs", help="Instead of --input_file: jsonl of {question, title, abstract} pairs.")
    p.add_argument("--teacher", required=True, help="LLM spec of the teacher, e.g. https://api.openai.com/v1#gpt-4o.")
    p.add_argument("--output_file", required=True, help="Output jsonl (appended to; rerun to resume).")
    p.add_argument("--positives_per_query", type=int, default=5, help="Answer papers labelled per query.")
    p.add_argument("--negatives_per_query", type=int, default=5, help="Random database papers labelled per query.")
    p.add_argument("--max_queries", type=int, default=None, help="Read at most this many query records.")
    p.add_argument("--batch_size", type=int, default=16, help="Prompts per teacher call.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the negative sampling.")
    p.add_argument("--price_in", type=float, default=None, help="USD per million prompt tokens (for the estimate).")
    p.add_argument("--price_out", type=float, default=None, help="USD per million completion tokens.")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    from pasa.checks import check_builder_inputs

    check_builder_inputs(args, parser.prog)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    from pasa.llm import load_llm

    counts: Counter = Counter()
    if args.pairs:
        pairs = list(pairs_from_file(args.pairs, counts))
    elif args.input_file and args.paper_db and args.id2paper:
        from pasa.tools.sources import PaperDBSource

        source = PaperDBSource(args.paper_db, args.id2paper)
        pairs = list(
            pairs_from_queries(
                args.input_file,
                source,
                sorted(source.db.id2title),
                args.positives_per_query,
                args.negatives_per_query,
                args.seed,
                counts,
                args.max_queries,
            )
        )
    else:
        parser.error("give --pairs, or --input_file with --paper_db and --id2paper")
    teacher = load_llm(args.teacher)
    try:
        with tqdm(total=len(pairs), desc="labelling", unit="pair") as bar:
            counts.update(label_pairs(pairs, teacher, args.output_file, args.batch_size, progress=bar.update))
    except TeacherError as err:
        print(
            f"{parser.prog}: the teacher failed after {err.labelled} pair(s) labelled ({str(err)[:300]}); "
            f"rerun the same command to resume",
            file=sys.stderr,
        )
        return 1
    print(f"{len(pairs)} pairs; output {args.output_file}")
    for key in sorted(counts):
        print(f"  {key:28s} {counts[key]}")
    if args.price_in is not None and args.price_out is not None:
        cost = (counts["prompt_tokens_est"] * args.price_in + counts["completion_tokens_est"] * args.price_out) / 1e6
        print(f"  estimated cost (USD)         {cost:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
