"""Run the PaSa agent on one query or a jsonl of queries (``pasa run``, ``run_paper_agent.py``), and the offline demo.

Launch lines::

    # one query, released checkpoints, Google through Serper (SERPER_API_KEY set)
    pasa run --query "Give me papers about ..." --crawler checkpoints/pasa-7b-crawler --selector checkpoints/pasa-7b-selector
    # a benchmark file (AutoScholarQuery / RealScholarQuery format), resumable, one JSON per query
    pasa run --input_file data/RealScholarQuery/test.jsonl --output_folder results/real \\
        --crawler checkpoints/pasa-7b-crawler --selector checkpoints/pasa-7b-selector
    # models served elsewhere (vLLM / SGLang / OpenAI-compatible)
    pasa run --query "..." --crawler http://localhost:8000/v1#pasa-7b-crawler --selector http://localhost:8001/v1
    # no checkpoints, no key, no network: the whole loop on a tiny model and an embedded paper set
    pasa demo

Input records: ``question`` (required), ``answer`` (list of titles, optional, copied into the root's ``extra``),
``source_meta.published_time`` (``YYYYMMDD``; the end date is that minus 7 days, as released). Output: one
``<line index>.json`` per query (released naming: 0-based line index), written atomically; existing files are
skipped, so a killed batch resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pasa.agent import AgentConfig, PaperAgent
from pasa.io import iter_jsonl, write_text_atomic
from pasa.paper import PaperNode, dumps_tree

logger = logging.getLogger(__name__)

END_DATE_OFFSET_DAYS = 7  # released run_paper_agent.py: published_time - 7 days


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
    output_folder: str = field(default="results", metadata={"help": "One JSON tree per query is written here."})
    paper_db: str | None = field(default=None, metadata={"help": "Released paper DB zip (cs_paper_2nd.zip)."})
    id2paper: str | None = field(default=None, metadata={"help": "Released id2paper.json beside the zip."})
    index: str | None = field(default=None, metadata={"help": "Offline search index folder (`pasa index`)."})
    online: bool | None = field(
        default=None, metadata={"help": "Use Serper/arXiv/ar5iv. Default: online iff SERPER_API_KEY is set."}
    )
    no_cache: bool = field(
        default=False, metadata={"help": "Do not use the on-disk HTTP cache (~/.cache/pasa; PASA_NO_CACHE=1 also)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "HTTP cache folder (default ~/.cache/pasa)."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N queries of --input_file."})
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})


@dataclass
class RunArgs(BatchArgs):
    """Arguments of ``pasa run``: the batch, the two models (the released knobs are in ``AgentConfig``)."""

    crawler: str = field(
        default="checkpoints/pasa-7b-crawler",
        metadata={"help": "Crawler: checkpoint directory or OpenAI-compatible URL (http://host:port/v1#model)."},
    )
    selector: str = field(
        default="checkpoints/pasa-7b-selector",
        metadata={"help": "Selector: checkpoint directory or OpenAI-compatible URL (http://host:port/v1#model)."},
    )
    selector_endpoint: str = field(
        default="completions",
        metadata={"help": "Selector over HTTP: 'completions' (raw prompt; vLLM, SGLang) or 'chat' (OpenAI models)."},
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts per model call (HF backend)."})
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
    """Read a query jsonl; malformed lines, records without ``question`` and bad dates are logged and skipped."""
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
    status: str  # "done", "skipped" (already on disk), "failed"
    seconds: float = 0.0
    crawled: int = 0
    selected: int = 0
    actions: int = 0
    error: str | None = None


def summarize_tree(root: PaperNode) -> tuple[int, int, int]:
    """(crawled papers, selected papers, actions) of a result tree."""
    actions = len(root.child) + sum(len(n.child) for n in root.iter_nodes())
    return len(root.extra.get("crawler_recall_papers", [])), len(root.extra.get("recall_papers", [])), actions


def run_queries(
    agent: PaperAgent, items: list[QueryItem], output_folder: str, progress: bool = True
) -> list[QueryResult]:
    """Run the agent on each item not yet on disk; a failed query is logged and the batch goes on."""
    from tqdm.auto import tqdm

    os.makedirs(output_folder, exist_ok=True)
    results: list[QueryResult] = []
    bar = tqdm(items, desc="queries", unit="query", disable=not progress)
    for item in bar:
        path = output_path(output_folder, item)
        if os.path.exists(path):
            results.append(QueryResult(item, "skipped"))
            continue
        start = time.perf_counter()
        try:
            root = agent.run(item.question, end_date=item.end_date, answer=item.answer)
        except Exception as err:  # one bad query must not end the batch
            logger.exception("query %d failed: %s", item.index, err)
            results.append(
                QueryResult(item, "failed", time.perf_counter() - start, error=f"{type(err).__name__}: {err}")
            )
            continue
        write_text_atomic(path, dumps_tree(root))
        crawled, selected, actions = summarize_tree(root)
        results.append(QueryResult(item, "done", time.perf_counter() - start, crawled, selected, actions))
        bar.set_postfix(crawled=crawled, selected=selected)
    return results


def print_summary(results: list[QueryResult], output_folder: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PaSa run -> {output_folder}")
    for col in ("#", "status", "crawled", "selected", "actions", "seconds", "query"):
        table.add_column(col)
    for r in results:
        q = r.item.question if len(r.item.question) < 60 else r.item.question[:57] + "..."
        status = r.status if r.error is None else f"failed: {r.error[:40]}"
        table.add_row(
            str(r.item.index), status, str(r.crawled), str(r.selected), str(r.actions), f"{r.seconds:.1f}", q
        )
    console = Console()
    console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    console.print(f"done {counts['done']}, already on disk {counts['skipped']}, failed {counts['failed']}")


def print_selected(root: PaperNode, top: int = 20) -> None:
    from rich.console import Console
    from rich.table import Table

    nodes = sorted(root.iter_nodes(), key=lambda n: n.select_score, reverse=True)
    table = Table(title=f"Top papers for: {root.title}")
    for col in ("score", "arXiv", "depth", "title"):
        table.add_column(col)
    for n in nodes[:top]:
        table.add_row(f"{n.select_score:.3f}", n.arxiv_id, str(n.depth), n.title)
    Console().print(table)


# -- entry points -----------------------------------------------------------------------------------------------
def make_parser():
    from transformers import HfArgumentParser

    return HfArgumentParser((RunArgs, AgentConfig))


def build_source(args: BatchArgs):
    """The paper source of a batch (``build_paper_source``), with the HTTP cache settings of the command line."""
    from pasa.tools.sources import build_paper_source

    http = None
    if args.no_cache or args.cache_dir:
        from pasa.tools.http import HttpClient, HttpConfig

        http = HttpClient(HttpConfig(cache=not args.no_cache, cache_dir=args.cache_dir))
    return build_paper_source(
        paper_db=args.paper_db, id2paper=args.id2paper, index=args.index, online=args.online, http=http
    )


def build_agent(args: RunArgs, config: AgentConfig, source=None) -> PaperAgent:
    """Load the two models (one instance when both specs are the same) and the paper source."""
    from pasa.crawler import Crawler
    from pasa.llm import load_llm
    from pasa.selector import Selector

    if source is None:
        source = build_source(args)
    opts = {"batch_size": args.batch_size, "dtype": args.dtype, "device": args.device}
    opts["selector_endpoint"] = args.selector_endpoint  # load_llm keeps only what the backend's config has
    if args.attn_implementation:
        opts["attn_implementation"] = args.attn_implementation
    crawler_llm = load_llm(args.crawler, **opts)
    selector_llm = crawler_llm if args.selector == args.crawler else load_llm(args.selector, **opts)
    if args.seed is not None:
        import torch

        torch.manual_seed(args.seed)
    return PaperAgent(Crawler(crawler_llm, sample=args.crawler_sample), Selector(selector_llm), source, config)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s"
    )


def load_items(args: BatchArgs, parser) -> list[QueryItem]:
    """The queries of ``--query`` or ``--input_file`` (exactly one); usage errors go through ``parser.error``."""
    if bool(args.query) == bool(args.input_file):
        parser.error("pass exactly one of --query or --input_file")
    if args.input_file:
        if not os.path.exists(args.input_file):
            parser.error(f"--input_file {args.input_file!r} does not exist")
        items = load_queries(args.input_file, args.limit)
        print(f"{len(items)} queries from {args.input_file}")
        return items
    return [QueryItem(index=0, question=args.query, end_date=args.end_date)]


def main(argv: list[str] | None = None, source=None) -> int:
    parser = make_parser()
    args, config = parser.parse_args_into_dataclasses(args=argv)
    setup_logging(args.log_level)
    items = load_items(args, parser)
    try:
        agent = build_agent(args, config, source)
    except ValueError as err:  # no usable paper source, missing key, bad model spec
        parser.error(str(err))
    results = run_queries(agent, items, args.output_folder, progress=len(items) > 1)
    print_summary(results, args.output_folder)
    if args.query and results[0].status != "failed":
        with open(output_path(args.output_folder, items[0]), encoding="utf-8") as f:
            from pasa.paper import loads_tree

            print_selected(loads_tree(f.read()))
    return 1 if any(r.status == "failed" for r in results) else 0


DEMO_QUERY = "Give me papers about retrieval-augmented generation for language models"


def demo_main(argv: list[str] | None = None) -> int:
    """``pasa demo``: the whole loop offline, on a tiny model built on the spot and the embedded paper set."""
    import argparse
    import re
    import tempfile

    parser = argparse.ArgumentParser(prog="pasa demo", description=demo_main.__doc__)
    parser.add_argument("--query", default=DEMO_QUERY)
    parser.add_argument("--output_folder", default=os.path.join(tempfile.gettempdir(), "pasa-demo"))
    parser.add_argument("--log_level", default="WARNING")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    from pasa.crawler import Crawler
    from pasa.demo import build_tiny_checkpoint, demo_papers
    from pasa.llm.hf import HFLLM, HFLLMConfig
    from pasa.llm.scripted import ScriptedLLM, prompt_user_query
    from pasa.selector import Selector
    from pasa.tools.sources import InMemoryPaperSource

    papers = demo_papers()
    ckpt = os.path.join(args.output_folder, "tiny-qwen2")
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
    print("  For real runs: pasa run --crawler checkpoints/pasa-7b-crawler --selector checkpoints/pasa-7b-selector")
    agent = PaperAgent(
        Crawler(ScriptedLLM(reply_fn=crawler_reply)),
        Selector(selector_llm),
        InMemoryPaperSource(papers),
        AgentConfig(search_papers=3, expand_papers=3),
    )
    item = QueryItem(index=0, question=args.query)
    out = os.path.join(args.output_folder, "results")
    if os.path.exists(output_path(out, item)):  # the demo always runs: no resume
        os.unlink(output_path(out, item))
    results = run_queries(agent, [item], out, progress=False)
    print_summary(results, out)
    if results[0].status == "done":
        with open(output_path(out, item), encoding="utf-8") as f:
            from pasa.paper import loads_tree

            print_selected(loads_tree(f.read()))
        print(f"result tree: {output_path(out, item)}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
