"""``pasa run``: the PaSa agent on one query or a jsonl of queries (``run_paper_agent.py`` is the released name).

Launch lines::

    # one query, released checkpoints, Google through Serper (SERPER_API_KEY set)
    pasa run --query "Give me papers about ..." \\
        --crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector
    # a benchmark file (AutoScholarQuery / RealScholarQuery format), resumable, one JSON per query
    pasa run --input_file data/RealScholarQuery/test.jsonl --output_dir results/real \\
        --crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector
    # models served elsewhere (vLLM / SGLang / OpenAI-compatible)
    pasa run --query "..." --crawler_path http://localhost:8000/v1#pasa-7b-crawler --selector_path http://localhost:8001/v1

The command line is three dataclasses parsed by ``HfArgumentParser``: :class:`RunArgs` (input, output, models),
``pasa.agent.AgentConfig`` (the released knobs) and ``pasa.tools.http.HttpConfig`` (services, timeouts, cache).
Everything that can be checked is checked before a model is loaded (``pasa.checks``): bad flags, a missing
checkpoint, a Hub name that is not downloaded, an unreachable model server or search service, an output folder
holding other queries' results each give one line and a non-zero exit status.

The modules beside this one: ``pasa.queries`` (the query file), ``pasa.batch`` (the resumable batch, its locks and
summary table), ``pasa.progress`` (the live stage counts), ``pasa.demo`` (``pasa demo``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from pasa.agent import AgentConfig, PaperAgent
from pasa.batch import (  # noqa: F401 - the batch's names, importable from here as well
    QueryResult,
    ResultConflictError,
    count_results,
    format_failures,
    output_path,
    print_selected,
    print_summary,
    read_done_result,
    read_done_tree,
    run_queries,
    run_query,
    summarize_tree,
    summary_line,
    tree_failures,
)
from pasa.checks import (
    CheckError,
    check_agent_knobs,
    check_end_date,
    check_index_dir,
    check_int_range,
    check_jsonl_file,
    check_model_server,
    check_output_dir,
    check_search_service,
    check_selector_endpoint,
    exit_with,
    is_http_url,
    resolve_model,
)
from pasa.progress import StageProgress
from pasa.queries import (  # noqa: F401
    END_DATE_OFFSET_DAYS,
    QueryItem,
    describe_skipped,
    end_date_from_published,
    load_queries,
)
from pasa.tools.http import HttpConfig

logger = logging.getLogger(__name__)

# Where `pasa download` puts the released paper database; the released utils.py always opened these two files.
DEFAULT_PAPER_DB = os.path.join("data", "paper_database", "cs_paper_2nd.zip")
DEFAULT_ID2PAPER = os.path.join("data", "paper_database", "id2paper.json")
DEFAULT_RESULTS = "results"
RUN_EXAMPLE = (
    'pasa run --query "Give me papers about retrieval-augmented generation" '
    "--crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector"
)


@dataclass
class BatchArgs:
    """Input, output and paper source of a batch of queries (shared by ``pasa run`` and ``pasa baseline``)."""

    query: str | None = field(default=None, metadata={"help": "One user query (instead of --input_file)."})
    input_file: str | None = field(default=None, metadata={"help": "JSONL of queries (AutoScholarQuery format)."})
    end_date: str | None = field(default=None, metadata={"help": "YYYYMMDD cut-off for --query (default: none)."})
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "One JSON tree per query goes here (default: results/ for --input_file, a folder of its own "
            "per query under results/ for --query) (released: --output_folder, run_paper_agent.py takes it)."
        },
    )
    paper_db: str | None = field(
        default=None,
        metadata={
            "help": f"Released paper DB zip (default: {DEFAULT_PAPER_DB} with --id2paper {DEFAULT_ID2PAPER} when "
            "both files exist, where `pasa download` puts them)."
        },
    )
    id2paper: str | None = field(default=None, metadata={"help": "Released id2paper.json beside the zip."})
    search_index: str | None = field(default=None, metadata={"help": "Offline search index folder (`pasa index`)."})
    title_index: str | None = field(
        default=None,
        metadata={"help": "Title index folder (`pasa build-db`): exact-title lookups tried before the arXiv API."},
    )
    online: bool | None = field(
        default=None, metadata={"help": "Use Serper/arXiv/ar5iv (default: online iff SERPER_API_KEY is set)."}
    )
    limit: int | None = field(default=None, metadata={"help": "Only the first N queries of --input_file."})
    redo_degraded: bool = field(
        default=False,
        metadata={"help": "Recompute results on disk that record failed tool calls instead of skipping them."},
    )
    max_consecutive_failures: int = field(
        default=3,
        metadata={"help": "Stop the batch when this many queries in a row failed with the same error; 0 = never."},
    )
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})


@dataclass
class RunArgs(BatchArgs):
    """Arguments of ``pasa run``: the batch and the two models (the released knobs are in ``AgentConfig``)."""

    crawler_path: str = field(
        default="checkpoints/pasa-7b-crawler",
        metadata={
            "help": "Crawler: checkpoint folder, downloaded Hub name or server URL (http://host:port/v1#model)."
        },
    )
    selector_path: str = field(
        default="checkpoints/pasa-7b-selector",
        metadata={
            "help": "Selector: checkpoint folder, downloaded Hub name or server URL (http://host:port/v1#model)."
        },
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
    gguf_file: str | None = field(
        default=None,
        metadata={
            "help": "HF backend: load this GGUF file (its name inside each local model folder, e.g. "
            "SmolLM2-135M-Instruct.Q4_1.gguf) instead of a transformers checkpoint; dequantized on every load, needs "
            "the `gguf` package (docs/mini.md)."
        },
    )
    device: str | None = field(default=None, metadata={"help": "HF backend device (default: cuda if available)."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa (default) or flash_attention_2 (GPU, needs the `gpu` extra)."}
    )
    crawler_sample: bool = field(
        default=False,
        metadata={
            "help": "Sample the crawler (temperature 2.0, top-p 0.8, as the released RL) instead of greedy, so two "
            "runs differ for the ensemble row."
        },
    )
    seed: int | None = field(default=None, metadata={"help": "Random seed (torch) for sampled runs."})
    progress: bool | None = field(
        default=None,
        metadata={"help": "Show each stage's counts while a query runs (default: on for --query, off for a batch)."},
    )
    # online search: the engine, seed papers, how cited titles are read (pasa.tools.sources, docs/paper_sources.md)
    search_engine: str | None = field(
        default=None,
        metadata={
            "help": "serper (Google through Serper, needs SERPER_API_KEY; the paper's setting), arxiv (the arXiv API's "
            "search, no key; not the paper's setting) or local (the offline index). Default: serper when "
            "SERPER_API_KEY is set, else local when an index or paper DB is given."
        },
    )
    seed_papers: str | None = field(
        default=None,
        metadata={
            "help": "arXiv ids, comma-separated, queued at depth 0 and scored like any other paper before the search "
            "results (input records may carry a 'seed_papers' list instead)."
        },
    )
    title_extractor: str = field(
        default="rules",
        metadata={
            "help": "How cited titles are read from fetched pages: rules, or llm (the rules, then one model call "
            "per page for the references they cannot read)."
        },
    )
    title_llm: str | None = field(
        default=None,
        metadata={"help": "Model of --title_extractor llm: checkpoint or server URL (default: the crawler)."},
    )


def default_output_dir(query: str | None, end_date: str | None = None) -> str:
    """``results/`` for a query file; for one query, a folder of its own under it, named after the query, so two
    one-off queries never meet in one folder.

    >>> default_output_dir("Give me papers about RAG!")
    'results/query-give-me-papers-about-rag-b7203c74'
    """
    if not query:
        return DEFAULT_RESULTS
    slug = "-".join(re.findall(r"[a-z0-9]+", query.lower()))[:48].rstrip("-") or "query"
    digest = hashlib.sha1(f"{query.strip()}\n{end_date or ''}".encode()).hexdigest()[:8]
    return os.path.join(DEFAULT_RESULTS, f"query-{slug}-{digest}")


# -- building the run -------------------------------------------------------------------------------------------
def make_parser(prog: str = "pasa run"):
    from pasa.flags import make_parser as make_flag_parser

    return make_flag_parser(
        (RunArgs, AgentConfig, HttpConfig),
        prog=prog,
        example=RUN_EXAMPLE,
        description="Run the PaSa agent (crawler + selector) on one query or a jsonl of queries.",
    )


def build_source(args: BatchArgs, released_behaviour: bool = False, http: HttpConfig | None = None):
    """The paper source of a batch (``build_paper_source``) with the command line's HTTP settings (``HttpConfig``;
    unset: from the ``PASA_*`` environment) and the tools layer's released switch."""
    from pasa.tools.sources import build_paper_source

    paper_db, id2paper = args.paper_db, args.id2paper
    if paper_db is None and id2paper is None and os.path.isfile(DEFAULT_PAPER_DB) and os.path.isfile(DEFAULT_ID2PAPER):
        logger.info("paper database: %s (the default location)", DEFAULT_PAPER_DB)
        paper_db, id2paper = DEFAULT_PAPER_DB, DEFAULT_ID2PAPER
    return build_paper_source(
        paper_db=paper_db,
        id2paper=id2paper,
        index=args.search_index,
        online=args.online,
        service=http if http is not None else HttpConfig(),  # its HTTP client is made only for online search
        title_index=args.title_index,
        released_behaviour=released_behaviour,
        search_engine=getattr(args, "search_engine", None),
    )


def build_agent(args: RunArgs, config: AgentConfig, source=None, http: HttpConfig | None = None) -> PaperAgent:
    """Load the two models (one instance when both specs are the same) over ``source`` (default: built from the
    arguments)."""
    from pasa.crawler import Crawler
    from pasa.llm import load_llm
    from pasa.selector import Selector

    if source is None:
        source = build_source(args, getattr(config, "released_behaviour", False), http)
    opts: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "dtype": args.dtype,
        "gguf_file": args.gguf_file,
        "device": args.device,
        "selector_endpoint": args.selector_endpoint,  # load_llm keeps only what the backend's config has
    }
    if http is not None:
        opts["timeout"] = http.llm_timeout
    if args.attn_implementation:
        opts["attn_implementation"] = args.attn_implementation
    crawler_spec = resolve_model(args.crawler_path, "--crawler_path", gguf_file=args.gguf_file)
    selector_spec = resolve_model(args.selector_path, "--selector_path", gguf_file=args.gguf_file)
    crawler_llm = load_llm(crawler_spec, **opts)
    selector_llm = crawler_llm if selector_spec == crawler_spec else load_llm(selector_spec, **opts)
    if getattr(args, "title_extractor", "rules") == "llm":
        from pasa.tools.sources import use_title_llm

        title_spec = (
            resolve_model(args.title_llm, "--title_llm", gguf_file=args.gguf_file) if args.title_llm else crawler_spec
        )
        title_llm = crawler_llm if title_spec == crawler_spec else load_llm(title_spec, **opts)
        if not use_title_llm(source, title_llm):
            logger.warning("--title_extractor llm: no online full text in this run (or released mode); rules only")
    if args.seed is not None:
        import torch

        torch.manual_seed(args.seed)
    return PaperAgent(Crawler(crawler_llm, sample=args.crawler_sample), Selector(selector_llm), source, config)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s"
    )


# -- checks before any work ---------------------------------------------------------------------------------------
def check_batch_args(args: BatchArgs) -> None:
    """The checks every batch command shares (``pasa run``, ``pasa baseline``); raises ``CheckError``."""
    if bool(args.query) == bool(args.input_file):
        raise CheckError("pass exactly one of --query or --input_file")
    if args.input_file:
        check_jsonl_file(args.input_file)
    check_end_date(args.end_date)
    if args.output_dir is None:
        args.output_dir = default_output_dir(args.query, args.end_date)
    if args.limit is not None:
        check_int_range(args.limit, "--limit", 1)
    check_int_range(args.max_consecutive_failures, "--max_consecutive_failures", 0)
    check_source_args(args)
    check_output_dir(args.output_dir)


def check_source_args(args: BatchArgs) -> None:
    """The offline index, title index and paper database paths exist; raises ``CheckError``."""
    if args.search_index:
        check_index_dir(args.search_index)
    if args.title_index:
        check_index_dir(args.title_index, "--title_index", command="pasa build-db")
    for flag, path in (("--paper_db", args.paper_db), ("--id2paper", args.id2paper)):
        if path and not os.path.isfile(path):
            raise CheckError(f"{flag} {path!r} is not a file; run `pasa download --only data`")


def check_online_args(args: RunArgs) -> None:
    """``--search_engine``, ``--seed_papers``, ``--title_extractor``: one line naming what is wrong."""
    from pasa.tools.arxiv_api import parse_arxiv_ids
    from pasa.tools.sources import SEARCH_ENGINES

    if args.search_engine is not None and args.search_engine not in SEARCH_ENGINES:
        raise CheckError(f"--search_engine must be one of {', '.join(SEARCH_ENGINES)}, not {args.search_engine!r}")
    if args.title_extractor not in ("rules", "llm"):
        raise CheckError(f"--title_extractor must be rules or llm, not {args.title_extractor!r}")
    if args.title_llm and args.title_extractor != "llm":
        raise CheckError("--title_llm is the model of --title_extractor llm; add --title_extractor llm")
    if args.seed_papers is not None:
        try:
            if not parse_arxiv_ids(args.seed_papers):
                raise ValueError("no arXiv id given")
        except ValueError as err:
            raise CheckError(f"--seed_papers: {err}") from err


def check_run_args(args: RunArgs, config: AgentConfig) -> None:
    """Everything ``pasa run`` can check before loading a model or computing a query; raises ``CheckError``."""
    check_batch_args(args)
    check_online_args(args)
    check_model_args(args, config)


def check_model_args(args: RunArgs, config: AgentConfig) -> None:
    """The agent's knobs, the HF backend's sizes and every model spec (a folder, a cached Hub name or a URL)."""
    check_agent_knobs(config)
    check_int_range(args.batch_size, "--batch_size", 1)
    check_int_range(args.max_batch_tokens, "--max_batch_tokens", 0)
    check_selector_endpoint(args.selector_endpoint)
    for flag, spec in (("--crawler_path", args.crawler_path), ("--selector_path", args.selector_path)):
        resolve_model(spec, flag, gguf_file=args.gguf_file)
    if args.title_llm:
        resolve_model(args.title_llm, "--title_llm", gguf_file=args.gguf_file)


def check_model_servers(args: RunArgs, timeout: float = 10.0) -> None:
    """One request to each model server named by URL, before the batch."""
    seen = set()
    for flag, spec in (("--crawler_path", args.crawler_path), ("--selector_path", args.selector_path)):
        if is_http_url(spec) and spec not in seen:
            seen.add(spec)
            check_model_server(spec, flag, timeout=timeout)


def check_results_folder(items: list[QueryItem], output_dir: str) -> None:
    """The result files already in ``output_dir`` belong to these queries (else the batch would stop on each of
    them after loading the models); raises ``CheckError`` naming the first that does not."""
    for item in items:
        try:
            read_done_tree(output_path(output_dir, item), item.question)
        except ResultConflictError as err:
            raise CheckError(f"{err} (or let `pasa run --query` pick a folder of its own)") from err


def seed_papers_of(args: BatchArgs) -> list[str] | None:
    """The ``--seed_papers`` ids (checked by ``check_online_args``), or None."""
    from pasa.tools.arxiv_api import parse_arxiv_ids

    text = getattr(args, "seed_papers", None)
    return parse_arxiv_ids(text) if text else None


def load_items(args: BatchArgs, parser=None) -> list[QueryItem]:
    """The queries of ``--query`` or ``--input_file`` (exactly one); raises ``CheckError`` on bad input, or,
    given the command's ``parser``, prints it as one line and exits with status 2."""
    from collections import Counter

    try:
        if bool(args.query) == bool(args.input_file):
            raise CheckError("pass exactly one of --query or --input_file")
        if not args.input_file:
            return [QueryItem(index=0, question=args.query, end_date=args.end_date, seed_papers=seed_papers_of(args))]
        check_jsonl_file(args.input_file)
        skipped: Counter = Counter()
        items = load_queries(args.input_file, args.limit, skipped=skipped)
        if not items:
            raise CheckError(
                f"--input_file {args.input_file!r} has no usable query: {describe_skipped(skipped)} "
                "(each line is named in the warnings above)"
            )
        print(f"{len(items)} queries from {args.input_file}")
        seeds = seed_papers_of(args)
        for item in items:  # a record's own seed_papers win over the flag
            item.seed_papers = item.seed_papers or seeds
        return items
    except CheckError as err:
        if parser is None:
            raise
        exit_with(err, parser.prog)


def parse_args(argv: list[str] | None, prog: str = "pasa run", released_names: dict[str, str] | None = None):
    """``(RunArgs, AgentConfig, HttpConfig)`` from a command line; an unknown flag or a value a dataclass refuses
    is one line and exit status 2. ``released_names`` (released flag -> ours) are accepted as well."""
    from pasa.flags import add_released_names, parse_dataclasses

    try:
        parser = make_parser(prog)
    except ValueError as err:  # a PASA_* variable that is not a number
        exit_with(CheckError(str(err)), prog)
    if released_names:
        add_released_names(parser, released_names)
    args, config, http = parse_dataclasses(parser, argv)
    return args, config, http


# -- pasa run ------------------------------------------------------------------------------------------------------
def run_with_progress(agent: PaperAgent, item: QueryItem, output_folder: str, **kwargs) -> list[QueryResult]:
    """``run_queries`` for one query, showing the stages' counts live: a status line on a terminal, else a line on
    stderr every 10 s while they change; the final counts are printed in both cases."""
    from rich.console import Console

    console = Console(stderr=True)
    progress = StageProgress(write=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
    kwargs["on_event"] = progress.on_event
    if not console.is_terminal:
        try:
            return run_queries(agent, [item], output_folder, progress=False, **kwargs)
        finally:
            progress.finish()
    progress.interval = 0  # the live line shows everything; only the final counts stay on screen
    with console.status("starting") as status:
        progress.on_update = status.update
        try:
            return run_queries(agent, [item], output_folder, progress=False, **kwargs)
        finally:
            progress.on_update = None
    progress.finish()


def every_search_failed(results: list[QueryResult]) -> bool:
    """Every computed query found nothing and recorded failed searches (the search service is down or refuses)."""
    done = [r for r in results if r.status == "done"]
    return bool(done) and all(r.crawled == 0 and (r.failures or {}).get("search", 0) > 0 for r in done)


def main(argv: list[str] | None = None, source=None, prog: str = "pasa run", released_names=None) -> int:
    args, config, http = parse_args(argv, prog, released_names)
    setup_logging(args.log_level)
    try:
        check_run_args(args, config)
        items = load_items(args)
        check_results_folder(items, args.output_dir)
        check_model_servers(args)
        if source is None:
            source = build_source(args, getattr(config, "released_behaviour", False), http)
            check_search_service(source, http)
        agent = build_agent(args, config, source, http)
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
        from pasa.io import load_json
        from pasa.paper import PaperNode

        print_selected(PaperNode.from_dict(load_json(output_path(args.output_dir, items[0]))))
        print(f"result tree: {output_path(args.output_dir, items[0])}")
    if every_search_failed(results):
        print(f"{prog}: error: every search failed, so nothing was found (the warnings above name the cause)")
        return 1
    stopped = len(results) < len(items)
    return 1 if stopped or any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
