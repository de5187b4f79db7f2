"""``pasa reproduce``: the PaSa-7B rows of Tables 5 and 6 in one command, beside the paper's numbers.

Launch lines::

    pasa download --only models,data              # checkpoints/ and data/ (README "Data and checkpoints")
    export SERPER_API_KEY=...                     # Google through Serper, as the paper
    pasa reproduce                                # RealScholarQuery + AutoScholarQuery test, greedy + ensemble run
    pasa reproduce --limit 5                      # a quick look: the first 5 queries of each benchmark
    pasa reproduce --search_index data/paper_database/search_index   # offline: BM25 over the paper DB, no key
    pasa reproduce --crawler_path http://localhost:8000/v1#pasa-7b-crawler \\
        --selector_path http://localhost:8001/v1#pasa-7b-selector   # models served by vLLM / SGLang

For each benchmark it runs ``pasa run`` into ``<output_dir>/<benchmark>/run1`` (greedy crawler: the PaSa-7B row)
and ``run2`` (sampled crawler, ``--crawler_sample --seed``: with run1, the PaSa-7B-ensemble row), both resumable
(finished queries are skipped: rerun the same command after an interruption), scores them with ``pasa eval``'s
functions and writes ``<output_dir>/reproduce.md``: this run's metrics, the paper's, and the differences.
Before starting it prints the number of queries still to run, an estimate of the time and of the Serper calls.
Every other option is passed to ``pasa run`` (``--paper_db``, ``--dtype``, ``--expand_layers``, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from pasa.metrics import METRIC_COLUMNS as COLUMNS  # the paper's column order

# The paper's Tables 5 (AutoScholarQuery test) and 6 (RealScholarQuery): DESIGN §1.4, docs/evaluation.md.
PAPER: dict[str, dict[str, tuple[float, ...]]] = {
    "real": {
        "PaSa-7B": (0.7071, 0.5146, 0.6111, 0.6929, 0.6563, 0.5798),
        "PaSa-7B-ensemble": (0.7503, 0.4938, 0.6488, 0.7281, 0.6877, 0.5986),
    },
    "auto": {
        "PaSa-7B": (0.7931, 0.1448, 0.4834, 0.6947, 0.6334, 0.5301),
        "PaSa-7B-ensemble": (0.8265, 0.1410, 0.4985, 0.7099, 0.6386, 0.5326),
    },
}
PAPER_QUERIES = {"real": 50, "auto": 1000}


@dataclass(frozen=True)
class Benchmark:
    key: str
    name: str
    default_file: str


BENCHMARKS = {
    "real": Benchmark("real", "RealScholarQuery", "data/RealScholarQuery/test.jsonl"),
    "auto": Benchmark("auto", "AutoScholarQuery test", "data/AutoScholarQuery/test.jsonl"),
}
# Rough wall time of one query (the paper gives none): 7B models served by vLLM on one GPU, or loaded in-process
# by transformers. Pass --seconds_per_query after timing a `--limit 1` run.
SECONDS_PER_QUERY = {"served": 60.0, "local": 300.0}
DEFAULT_DB = ("data/paper_database/cs_paper_2nd.zip", "data/paper_database/id2paper.json")


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name X`` / ``--name=X`` in a pass-through argv (last one wins)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def plan_runs(
    benchmarks: list[str], files: dict[str, str], output_dir: str, limit: int | None, ensemble: bool
) -> list[dict]:
    """One entry per ``pasa run`` to do: benchmark, run name, input, folder, queries in all and still to run."""
    from pasa.runner import load_queries, output_path

    runs = []
    for key in benchmarks:
        items = load_queries(files[key], limit)
        for run in ("run1", "run2") if ensemble else ("run1",):
            folder = os.path.join(output_dir, key, run)
            todo = sum(not os.path.exists(output_path(folder, item)) for item in items)
            runs.append(
                {
                    "benchmark": key,
                    "run": run,
                    "input_file": files[key],
                    "folder": folder,
                    "queries": len(items),
                    "todo": todo,
                }
            )
    return runs


def format_estimate(runs: list[dict], seconds_per_query: float, serper_per_query: int, online: bool) -> str:
    """The lines printed before starting: queries to run, time, Serper calls."""
    todo = sum(r["todo"] for r in runs)
    lines = [
        f"{r['benchmark']}/{r['run']}: {r['todo']} of {r['queries']} queries to run -> {r['folder']}" for r in runs
    ]
    hours = todo * seconds_per_query / 3600
    lines.append(
        f"estimated time: {hours:.1f} h ({todo} queries x ~{seconds_per_query:.0f} s; rough, see --seconds_per_query)"
    )
    if online:
        lines.append(
            f"estimated Serper calls: up to {todo * serper_per_query} ({serper_per_query} search queries per query; "
            "cached calls are free)"
        )
    else:
        lines.append(
            "Serper calls: 0 (offline search: BM25 over the paper database, NOT Google: numbers are not the paper's setting)"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _diff(value: float | None, paper: float) -> str:
    return "-" if value is None else f"{value - paper:+.4f}"


def format_table(results: dict[str, dict[str, dict | None]], notes: list[str]) -> str:
    """Markdown: for each benchmark and row, the paper's numbers, this run's and the difference."""
    head = "| Benchmark | Row | Queries | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = ["# PaSa reproduction: this run beside the paper", "", head, "|" + "---|" * 3 + "---:|" * len(COLUMNS)]
    for key, rows in results.items():
        name = BENCHMARKS[key].name
        for row, summary in rows.items():
            paper = PAPER[key][row]
            ours = [None if summary is None else summary.get(m) for m, _ in COLUMNS]
            n = "-" if summary is None else str(summary.get("num_queries", "-"))
            lines.append(
                f"| {name} | {row} (paper) | {PAPER_QUERIES[key]} | " + " | ".join(_fmt(v) for v in paper) + " |"
            )
            lines.append(f"| {name} | {row} (this run) | {n} | " + " | ".join(_fmt(v) for v in ours) + " |")
            lines.append(f"| {name} | difference | | " + " | ".join(_diff(v, p) for v, p in zip(ours, paper)) + " |")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def evaluate_runs(output_dir: str, benchmarks: list[str], ensemble: bool) -> tuple[dict, list[str]]:
    """``pasa eval`` on each run (and the ensemble); returns ({benchmark: {row: summary | None}}, notes)."""
    from pasa.evaluate import evaluate_folder

    results: dict[str, dict[str, dict | None]] = {}
    notes: list[str] = []
    for key in benchmarks:
        run1, run2 = os.path.join(output_dir, key, "run1"), os.path.join(output_dir, key, "run2")
        rows: dict[str, dict | None] = {}
        pairs = [("PaSa-7B", None)] + ([("PaSa-7B-ensemble", run2)] if ensemble else [])
        for row, second in pairs:
            if not os.path.isdir(run1) or (second is not None and not os.path.isdir(second)):
                rows[row] = None
                continue
            ev = evaluate_folder(run1, ensemble_dir=second)
            rows[row] = ev.summary
            if ev.skipped:
                notes.append(f"{BENCHMARKS[key].name} {row}: {len(ev.skipped)} result file(s) skipped (see warnings)")
            if ev.degraded:
                notes.append(
                    f"{BENCHMARKS[key].name} {row}: {len(ev.degraded)} degraded tree(s) (failed tool calls); "
                    "rerun with --redo_degraded"
                )
        results[key] = rows
    return results, notes


def make_parser() -> argparse.ArgumentParser:
    from pasa.flags import make_argparser

    p = make_argparser(
        "pasa reproduce",
        example="pasa reproduce --limit 5",
        description="Run PaSa-7B on RealScholarQuery and the AutoScholarQuery test set (greedy, and a sampled run for "
        "the ensemble row) and write a markdown table beside the paper's numbers. Any other option goes to `pasa run` "
        "(--crawler_path, --selector_path, --paper_db, --dtype, --expand_layers, ...).",
    )
    p.add_argument(
        "--benchmarks",
        default="real,auto",
        help="Comma-separated: real (RealScholarQuery), auto (AutoScholarQuery test).",
    )
    p.add_argument("--real_file", default=BENCHMARKS["real"].default_file, help="RealScholarQuery queries.")
    p.add_argument("--auto_file", default=BENCHMARKS["auto"].default_file, help="AutoScholarQuery test queries.")
    p.add_argument("--output_dir", default="results/reproduce", help="Runs go to <output_dir>/<benchmark>/run{1,2}.")
    p.add_argument("--limit", type=int, default=None, help="Only the first N queries of each benchmark.")
    p.add_argument("--search_index", default=None, help="Offline: search this index (`pasa index`) instead of Google.")
    p.add_argument("--no_ensemble", action="store_true", help="Skip the second (sampled) run and the ensemble row.")
    p.add_argument("--ensemble_seed", type=int, default=1, help="Seed of the sampled second run.")
    p.add_argument(
        "--seconds_per_query",
        type=float,
        default=None,
        help="For the time estimate (default: 60 for served models, 300 for local ones).",
    )
    p.add_argument("--dry_run", action="store_true", help="Print the plan and the estimate; run nothing.")
    return p


def main(argv: list[str] | None = None) -> int:
    from pasa.flags import rewrite_argv

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args, passthrough = parser.parse_known_args(rewrite_argv(argv, parser))
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    for b in benchmarks:
        if b not in BENCHMARKS:
            parser.error(f"unknown benchmark {b!r}; choose from {', '.join(BENCHMARKS)}")
    files = {"real": args.real_file, "auto": args.auto_file}
    for b in benchmarks:
        if not os.path.exists(files[b]):
            print(
                f"pasa reproduce: {files[b]} not found; run `pasa download --only data` (or pass --{b}_file)",
                file=sys.stderr,
            )
            return 2
    ensemble = not args.no_ensemble

    run_argv = list(passthrough)
    if _flag_value(run_argv, "--paper_db") is None and all(os.path.exists(p) for p in DEFAULT_DB):
        run_argv += ["--paper_db", DEFAULT_DB[0], "--id2paper", DEFAULT_DB[1]]
    if args.search_index:
        run_argv += ["--search_index", args.search_index]
        if _flag_value(run_argv, "--online") is None:
            run_argv += ["--online", "false"]
    online_flag = _flag_value(run_argv, "--online")
    online = online_flag.lower() in ("true", "1", "yes") if online_flag else bool(os.environ.get("SERPER_API_KEY"))
    crawler = _flag_value(run_argv, "--crawler_path") or "checkpoints/pasa-7b-crawler"
    served = crawler.startswith(("http://", "https://"))
    seconds = args.seconds_per_query or SECONDS_PER_QUERY["served" if served else "local"]
    serper_per_query = int(_flag_value(run_argv, "--search_queries") or 5)

    runs = plan_runs(benchmarks, files, args.output_dir, args.limit, ensemble)
    print(format_estimate(runs, seconds, serper_per_query, online), flush=True)
    if args.dry_run:
        return 0

    from pasa.runner import main as run_main

    status = 0
    for r in runs:
        print(f"\n== {BENCHMARKS[r['benchmark']].name}, {r['run']} ==", flush=True)
        extra = ["--input_file", r["input_file"], "--output_dir", r["folder"]]
        if args.limit is not None:
            extra += ["--limit", str(args.limit)]
        if r["run"] == "run2":
            extra += ["--crawler_sample", "true", "--seed", str(args.ensemble_seed)]
        status = max(status, int(run_main(run_argv + extra, prog="pasa reproduce") or 0))

    results, notes = evaluate_runs(args.output_dir, benchmarks, ensemble)
    if not online:
        notes.append("offline search (BM25 over the paper database) instead of Google: not the paper's setting")
    if args.limit is not None:
        notes.append(f"--limit {args.limit}: the first {args.limit} queries of each benchmark only")
    if status:
        notes.append("some queries failed (see the run summaries); rerun the same command to retry them")
    table = format_table(results, notes)
    from pasa.io import write_text_atomic

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "reproduce.md")
    write_text_atomic(path, table)
    print("\n" + table + f"\nwritten to {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
