"""The baselines of the paper's Tables 5 and 6 (``pasa baseline google | google-llm | pasa-llm``).

Launch lines::

    export SERPER_API_KEY=...   # Google through Serper; read from the environment only
    # Google: the user query as is, "<query> site:arxiv.org" (before: end date), top 100 results
    pasa baseline google --input_file data/RealScholarQuery/test.jsonl --output_dir results/real_google
    # Google with GPT-4o: an OpenAI-compatible model paraphrases the query first (OPENAI_API_KEY)
    pasa baseline google-llm --llm https://api.openai.com/v1#gpt-4o \\
        --input_file data/RealScholarQuery/test.jsonl --output_dir results/real_google_gpt4o
    # PaSa-GPT-4o: the PaSa loop with crawler and selector both served by an OpenAI-compatible model
    pasa baseline pasa-llm --llm https://api.openai.com/v1#gpt-4o \\
        --input_file data/RealScholarQuery/test.jsonl --output_dir results/real_pasa_gpt4o
    # then, for each: pasa eval results/real_google

Every baseline writes the same released-format trees as ``pasa run`` (one ``<line index>.json`` per query, atomic,
existing files skipped so a killed batch resumes), so ``pasa eval`` scores them all alike.

**Google trees.** The root has one child key (the query sent to Google) holding the results in Google's order.
Google has no selector, so the paper reports only Recall@20/50/100 for these rows. We encode the rank as
``select_score = 0.5 * (1 - rank / n)`` (rank 0 = best, n = papers kept): strictly decreasing, so the evaluator's
ranking is Google's order, and never above the 0.5 threshold, so nothing counts as "selected" (Precision and
Recall come out 0 even under the released ``metrics.py``, rather than a made-up number). The root's
``extra.has_selector = false`` makes ``pasa eval`` print "-" in those columns, as the paper does.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pasa.llm import LLM
from pasa.paper import Paper, PaperNode, normalize_arxiv_id
from pasa.runner import BatchArgs
from pasa.tools.sources import PaperSource, published_before

logger = logging.getLogger(__name__)

BASELINES = ("google", "google-llm", "pasa-llm")

# Ours: the paper says GPT-4o paraphrased the query for "Google with GPT-4o" but does not publish the prompt.
PARAPHRASE_PROMPT = (
    "You are an expert at searching the academic literature.\n"
    "Rewrite the following research request as one Google search query that would find the papers it asks for. "
    "Keep the key technical terms, drop conversational words, and do not add search operators such as site:, "
    "before: or quotes.\n"
    "Reply with the search query only, on one line.\n\n"
    "Request: {user_query}"
)

_LABEL_RE = re.compile(r"^\s*(?:\*\*)?(?:google\s+)?(?:search\s+)?query\s*(?:\*\*)?\s*:\s*", re.IGNORECASE)
_OPERATOR_RE = re.compile(r"\b(?:site|before|after|inurl|intitle):\S+", re.IGNORECASE)


def parse_paraphrase(reply: str) -> str | None:
    """The search query in an LLM reply: first non-empty line, label, quotes and search operators removed.

    >>> parse_paraphrase('Search query: "sparse attention long context" site:arxiv.org\\nWhy: ...')
    'sparse attention long context'
    >>> parse_paraphrase("  \\n") is None
    True
    """
    for line in reply.splitlines():
        line = _LABEL_RE.sub("", line.strip())
        line = _OPERATOR_RE.sub(" ", line)
        line = " ".join(line.replace('"', " ").replace("`", " ").split()).strip("'* ")
        if line:
            return line
    return None


def rank_score(rank: int, n: int) -> float:
    """The select_score that encodes Google rank ``rank`` (0 = best) of ``n``: in (0, 0.5], never selected.

    >>> [rank_score(r, 4) for r in range(4)]
    [0.5, 0.375, 0.25, 0.125]
    """
    return 0.5 * (1.0 - rank / n)


def build_ranked_tree(
    user_query: str,
    search_query: str,
    papers: list[Paper],
    answer: list[str] | None = None,
    extra: dict | None = None,
) -> PaperNode:
    """A released-format tree for a ranked list without a selector (see the module docstring)."""
    root = PaperNode.root(user_query)
    nodes = [
        PaperNode.from_paper(p, depth=0, source=f"Search {p.source}".strip(), score=rank_score(i, len(papers)))
        for i, p in enumerate(papers)
    ]
    root.child[search_query] = nodes
    root.extra["touch_ids"] = [p.arxiv_id for p in papers]
    root.extra["crawler_recall_papers"] = [p.title for p in papers]
    root.extra["has_selector"] = False
    root.extra.update(extra or {})
    if answer is not None:
        root.extra["answer"] = list(answer)
    return root


@dataclass
class GoogleBaselineConfig:
    """Knobs of the Google baselines."""

    num_results: int = field(
        default=100, metadata={"help": "Results requested from Google (100: enough for the paper's Recall@100)."}
    )
    threads_num: int = field(default=20, metadata={"help": "Concurrent paper lookups."})
    filter_by_end_date: bool = field(
        default=True,
        metadata={"help": "Also drop results whose known publication date is after the end date (as `pasa run`)."},
    )


class GoogleBaseline:
    """Google (optionally on an LLM paraphrase of the query) as a ranked list; ``run`` has ``PaperAgent.run``'s
    signature so the batch runner drives it unchanged."""

    def __init__(
        self,
        source: PaperSource,
        config: GoogleBaselineConfig | None = None,
        paraphraser: LLM | None = None,
        search: str = "google",
    ):
        """``search`` names what ``source`` searches: "google", or "offline" for the offline index (the trees are
        then tagged ``offline`` / ``offline-llm``, never as Google's)."""
        self.source = source
        self.config = config or GoogleBaselineConfig()
        self.paraphraser = paraphraser
        self.search = search

    def paraphrase(self, user_query: str) -> str | None:
        """The LLM's rewrite of the query (greedy, chat template); None when the reply holds no query."""
        (reply,) = self.paraphraser.generate([PARAPHRASE_PROMPT.format(user_query=user_query)], chat=True)
        return parse_paraphrase(reply)

    def _lookup(self, arxiv_id: str) -> Paper | None:
        try:
            return self.source.get_by_id(arxiv_id)
        except Exception as err:  # a failed lookup drops one result, never the query
            logger.warning("lookup of %s failed: %s", arxiv_id, err)
            return None

    def run(self, user_query: str, end_date: str | None = None, answer: list[str] | None = None) -> PaperNode:
        extra: dict = {"method": self.search}
        search_query = user_query
        if self.paraphraser is not None:
            extra["method"] = f"{self.search}-llm"
            paraphrase = self.paraphrase(user_query)
            if paraphrase is None:
                logger.warning("empty paraphrase for %r; searching the query as is", user_query)
                extra["paraphrase_failed"] = True
            else:
                search_query = paraphrase
            extra["search_query"] = search_query
        ids = [normalize_arxiv_id(i) for i in self.source.search(search_query, self.config.num_results, end_date)]
        ids = list(dict.fromkeys(ids))  # a paper's abs/pdf/html pages are separate Google results: keep the first
        with ThreadPoolExecutor(max_workers=max(1, self.config.threads_num)) as pool:
            found = list(pool.map(self._lookup, ids))
        papers, unresolved = [], []
        for arxiv_id, paper in zip(ids, found, strict=True):
            if paper is None:
                unresolved.append(arxiv_id)
            elif not self.config.filter_by_end_date or published_before(paper, end_date):
                papers.append(paper)
        if unresolved:
            logger.info("%d of %d results could not be resolved to a paper", len(unresolved), len(ids))
            extra["unresolved_ids"] = unresolved
        return build_ranked_tree(user_query, search_query, papers, answer, extra)


# -- command line -------------------------------------------------------------------------------------------
@dataclass
class BaselineArgs(BatchArgs):
    """Input/output of ``pasa baseline google`` and ``google-llm`` (the batch flags mean what they do in ``pasa run``)."""

    output_dir: str = field(default="results/baseline", metadata={"help": "One JSON tree per query is written here."})
    llm: str | None = field(
        default=None,
        metadata={"help": "google-llm: the paraphrasing model, an OpenAI-compatible URL (https://host/v1#model)."},
    )


@dataclass
class PasaLLMArgs:
    """``pasa baseline pasa-llm``: the PaSa loop with both agents on one OpenAI-compatible model."""

    llm: str | None = field(
        default=None,
        metadata={
            "help": "Crawler and selector model, https://host/v1#model (e.g. GPT-4o); or set --crawler_path/--selector_path."
        },
    )


def _usage() -> str:
    return (
        "usage: pasa baseline {google,google-llm,pasa-llm} [options]\n\n"
        "  google      the user query through Google (Serper, site:arxiv.org), top --num_results\n"
        "  google-llm  the same on an LLM paraphrase of the query (--llm https://host/v1#model)\n"
        "  pasa-llm    the PaSa loop with crawler and selector on an OpenAI-compatible model (--llm ...)\n\n"
        "`pasa baseline <name> --help` for the options of one baseline."
    )


def _run_google(name: str, argv: list[str], source=None, llm: LLM | None = None) -> int:
    from pasa.flags import make_parser, parse_dataclasses
    from pasa.runner import build_source, check_batch_args, load_items, setup_logging

    parser = make_parser(
        (BaselineArgs, GoogleBaselineConfig),
        prog=f"pasa baseline {name}",
        example=f"pasa baseline {name} --input_file data/RealScholarQuery/test.jsonl --output_dir results/real_{name}",
    )
    args, config = parse_dataclasses(parser, argv)
    setup_logging(args.log_level)
    search = "google"
    if source is None and args.online is not True and not os.environ.get("SERPER_API_KEY"):
        if args.online is None:  # Google was asked for by name and cannot be searched: stop, never substitute
            _check(lambda: _raise_no_google(name), parser.prog)
        search = "offline"  # --online false: the offline index, and the trees say so
    if name == "google-llm" and llm is None:
        if not args.llm:
            parser.error("google-llm needs --llm (an OpenAI-compatible URL, e.g. https://api.openai.com/v1#gpt-4o)")
        _check(lambda: check_llm(args.llm), parser.prog)
    _check(lambda: check_batch_args(args), parser.prog)
    items = load_items(args, parser)
    if name == "google-llm" and llm is None:
        from pasa.llm import load_llm

        llm = load_llm(args.llm)
    if source is None:
        if search == "offline":
            print(f"note: --online false: offline search, not Google; trees are tagged method={search!r}")
        source = _check(lambda: build_source(args), parser.prog)
    baseline = GoogleBaseline(source, config, paraphraser=llm if name == "google-llm" else None, search=search)
    return _run_batch(baseline, items, args)


def _raise_no_google(name: str) -> None:
    from pasa.checks import CheckError

    raise CheckError(
        f"{name} searches Google through Serper and SERPER_API_KEY is not set; export SERPER_API_KEY=... "
        "(or pass --online false to rank with the offline search, tagged 'offline')"
    )


def check_llm(spec: str) -> None:
    """``--llm``: a reachable OpenAI-compatible server serving the model (or a local checkpoint), named ``--llm``."""
    from pasa.checks import check_model_path, check_model_server

    check_model_path(spec, "--llm", allow_url=True)
    if spec.startswith(("http://", "https://")):
        check_model_server(spec, "--llm")


def _run_pasa_llm(argv: list[str], source=None) -> int:
    from pasa.agent import AgentConfig
    from pasa.flags import make_parser, parse_dataclasses
    from pasa.runner import (
        RunArgs,
        build_agent,
        check_model_servers,
        check_run_args,
        load_items,
        setup_logging,
    )

    parser = make_parser(
        (PasaLLMArgs, RunArgs, AgentConfig),
        prog="pasa baseline pasa-llm",
        example="pasa baseline pasa-llm --llm https://api.openai.com/v1#gpt-4o "
        "--input_file data/RealScholarQuery/test.jsonl --output_dir results/real_pasa_gpt4o",
    )
    llm_args, args, config = parse_dataclasses(parser, argv)
    setup_logging(args.log_level)
    if not any(a.startswith("--selector_endpoint") for a in argv):
        args.selector_endpoint = "chat"  # OpenAI models (the PaSa-GPT-4o row) have no /completions endpoint
    if llm_args.llm:
        args.crawler_path = args.selector_path = llm_args.llm
    crawler, selector = args.crawler_path, args.selector_path
    for spec in (crawler, selector):
        if not spec.startswith(("http://", "https://")):
            parser.error(f"pasa-llm runs on an OpenAI-compatible server; {spec!r} is not a URL (use `pasa run`)")
    _check(lambda: check_run_args(args, config), parser.prog)
    items = load_items(args, parser)
    if source is None:
        if llm_args.llm:  # one server for both agents, named by the flag the user gave
            _check(lambda: check_llm(llm_args.llm), parser.prog)
        else:
            _check(lambda: check_model_servers(args), parser.prog)
    agent = _check(lambda: build_agent(args, config, source), parser.prog)
    tagged = _Tagged(agent, method="pasa-llm", model=crawler.partition("#")[2] or None)
    return _run_batch(tagged, items, args)


def _check(fn, prog: str):
    """``fn()``, or one line and exit status 2 (1: a service) on a bad argument, before any query runs."""
    from pasa.checks import CheckError, exit_with

    try:
        return fn()
    except CheckError as err:
        exit_with(err, prog)
    except (ValueError, OSError) as err:  # no usable paper source, missing key, damaged index
        exit_with(CheckError(str(err).splitlines()[0] if str(err) else type(err).__name__), prog)


def _run_batch(agent, items, args) -> int:
    """The batch as ``pasa run`` runs it: resume, ``--redo_degraded``, the identical-failure stop, the summary."""
    from pasa.runner import print_summary, run_queries

    results = run_queries(
        agent,
        items,
        args.output_dir,
        progress=len(items) > 1,
        redo_degraded=args.redo_degraded,
        max_consecutive_failures=args.max_consecutive_failures,
    )
    print_summary(results, args.output_dir, total=len(items))
    stopped = len(results) < len(items)
    return 1 if stopped or any(r.status == "failed" for r in results) else 0


class _Tagged:
    """Wraps an agent: the trees it returns get ``extra`` tags (which baseline, which model)."""

    def __init__(self, agent, **tags):
        self.agent = agent
        self.tags = tags

    def run(self, user_query: str, end_date: str | None = None, answer: list[str] | None = None) -> PaperNode:
        root = self.agent.run(user_query, end_date=end_date, answer=answer)
        root.extra.update(self.tags)
        return root


def main(argv: list[str] | None = None, source: PaperSource | None = None, llm: LLM | None = None) -> int:
    """``pasa baseline <name> ...``; ``source`` and ``llm`` replace the real ones (tests, notebooks)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BASELINES:
        print(f"pasa baseline: unknown baseline {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if name == "pasa-llm":
        return _run_pasa_llm(rest, source)
    return _run_google(name, rest, source, llm)


if __name__ == "__main__":
    sys.exit(main())
