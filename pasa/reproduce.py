"""``pasa reproduce``: the PaSa-7B rows of Tables 5 and 6 in one command, beside the paper's numbers.

Launch lines::

    pasa download --only models,data              # checkpoints/ and data/ (README "Data and checkpoints")
    export SERPER_API_KEY=...                     # Google through Serper, as the paper
    pasa reproduce                                # RealScholarQuery + AutoScholarQuery test, greedy + ensemble run
    pasa reproduce --limit 5                      # a quick look: the first 5 queries of each benchmark
    pasa reproduce --search_index data/paper_database/search_index   # offline: BM25 over the paper DB, no key
    pasa reproduce --crawler_path http://localhost:8000/v1#pasa-7b-crawler \\
        --selector_path http://localhost:8001/v1#pasa-7b-selector   # models served by vLLM / SGLang

For each benchmark it runs ``pasa run`` twice: ``run1`` (greedy crawler: the PaSa-7B row) and ``run2`` (sampled
crawler, ``--crawler_sample --seed``: with run1, the PaSa-7B-ensemble row). Each run's folder is named by a key
over what produces its results: the crawler and selector (path and a fingerprint of config and weights, or the
server URL), the options passed to ``pasa run`` that change results, the search (Google or offline), the query
file, paper database and index. ``<output_dir>/<benchmark>/run1-<key>/`` holds the trees and
``run1-<key>.json`` beside it says what produced them. The same command resumes (finished queries are skipped);
other models, knobs or data start new runs and never reuse another run's trees. It scores the runs with
``pasa eval``'s functions and writes ``<output_dir>/reproduce.md``: this run's metrics, the paper's, the
differences, and which checkpoints produced each row. Before starting it prints the number of queries still to
run, an estimate of the time and of the Serper calls. Every other option is passed to ``pasa run``
(``--paper_db``, ``--dtype``, ``--expand_layers``, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
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
# by transformers. Local models are scaled by their size (a tiny test model takes seconds, not minutes); a finished
# run of the same models replaces the guess with its measured time. --seconds_per_query overrides all of it.
SECONDS_PER_QUERY = {"served": 60.0, "local": 300.0}
REFERENCE_PARAMETERS = 7.6e9  # Qwen2.5-7B-Instruct, what SECONDS_PER_QUERY["local"] was guessed for
MIN_SECONDS_PER_QUERY = 2.0
DEFAULT_DB = ("data/paper_database/cs_paper_2nd.zip", "data/paper_database/id2paper.json")
DEFAULT_MODELS = {"crawler": "checkpoints/pasa-7b-crawler", "selector": "checkpoints/pasa-7b-selector"}
# `pasa run` options that change how fast or how loudly a run goes, never its trees: left out of the run key.
# Model paths and data files enter the key through their fingerprints instead of their spelling.
OPERATIONAL_FLAGS = frozenset(
    {
        "--log_level", "--progress", "--threads_num", "--max_concurrency", "--lookup_concurrency",
        "--batch_wait_s", "--model_batch_size", "--no_cache", "--cache_dir", "--http_timeout", "--llm_timeout",
        "--redo_degraded", "--max_consecutive_failures", "--limit", "--device",
    }
)  # fmt: skip
KEYED_PATH_FLAGS = frozenset({"--crawler_path", "--selector_path", "--paper_db", "--id2paper", "--search_index"})
KEY_CHARS = 10
SAMPLE_BYTES = 1 << 16  # bytes read at each of SAMPLES offsets of a large file
SAMPLES = 8
WHOLE_FILE_BYTES = 64 << 20  # smaller files are hashed whole


def fingerprint_file(path: str) -> str:
    """A short hash of a file: its whole content when small, else its size and evenly spaced samples.

    Checkpoint shards are gigabytes; a fine-tune changes every tensor, so samples of each shard tell two
    checkpoints of the same shape apart without reading them whole.
    """
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    digest.update(str(size).encode())
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        else:
            for i in range(SAMPLES):
                f.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
                digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def fingerprint_path(path: str | None) -> str | None:
    """Fingerprint of a data file or folder (every file in it, by relative name); None when absent."""
    if not path or not os.path.exists(path):
        return None
    if os.path.isfile(path):
        return fingerprint_file(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0" + fingerprint_file(full).encode())
    return digest.hexdigest()[:16]


def fingerprint_model(spec: str) -> str:
    """A server URL stands for itself; a checkpoint folder is fingerprinted by its config, tokenizer and weights."""
    if spec.startswith(("http://", "https://")):
        return "served:" + hashlib.sha256(spec.encode()).hexdigest()[:16]
    return fingerprint_path(spec) or "missing"


def result_knobs(run_argv: list[str]) -> dict[str, str]:
    """The ``pasa run`` options that can change a tree, as {flag: value} (flags without a value: "true")."""
    knobs: dict[str, str] = {}
    i = 0
    while i < len(run_argv):
        arg = run_argv[i]
        i += 1
        if not arg.startswith("--"):
            continue
        name, eq, value = arg.partition("=")
        if not eq:
            if i < len(run_argv) and not run_argv[i].startswith("--"):
                value = run_argv[i]
                i += 1
            else:
                value = "true"
        if name not in OPERATIONAL_FLAGS and name not in KEYED_PATH_FLAGS:
            knobs[name] = value
    return dict(sorted(knobs.items()))


def run_manifest(
    benchmark: str, run: str, input_file: str, models: dict[str, str], run_argv: list[str], online: bool
) -> dict:
    """What produces a run's trees: models with fingerprints, knobs, search and data. Keys the run's folder."""
    data = {"input_file": {"path": input_file, "fingerprint": fingerprint_path(input_file)}}
    for flag in ("--paper_db", "--id2paper", "--search_index"):
        value = _flag_value(run_argv, flag)
        if value:
            data[flag.lstrip("-")] = {"path": value, "fingerprint": fingerprint_path(value)}
    return {
        "benchmark": benchmark,
        "run": run,
        "models": {role: {"path": spec, "fingerprint": fingerprint_model(spec)} for role, spec in models.items()},
        "knobs": result_knobs(run_argv),
        "search": "google (serper)" if online else "offline",
        "data": data,
    }


def run_key(manifest: dict) -> str:
    """The folder key of a run: a hash of its manifest (what produced it; paths by fingerprint where known)."""
    keyed = json.loads(json.dumps(manifest))
    for entry in [*keyed["models"].values(), *keyed["data"].values()]:
        if entry["fingerprint"] not in (None, "missing"):
            entry.pop("path")  # the same checkpoint moved or linked elsewhere is the same run
    blob = json.dumps(keyed, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_CHARS]


def count_parameters(spec: str) -> float | None:
    """Approximate parameter count of a decoder checkpoint from its config.json (None: served or unreadable)."""
    try:
        with open(os.path.join(spec, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        hidden, layers = config["hidden_size"], config["num_hidden_layers"]
        inner, vocab = config.get("intermediate_size", 4 * hidden), config.get("vocab_size", 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(layers * (4 * hidden * hidden + 3 * hidden * inner) + 2 * vocab * hidden)


def estimate_seconds_per_query(models: dict[str, str], measured: float | None) -> tuple[float, str]:
    """(seconds per query, how it was obtained) for the estimate line."""
    if measured is not None:
        return measured, "measured on a finished run of these models"
    if any(spec.startswith(("http://", "https://")) for spec in models.values()):
        return SECONDS_PER_QUERY["served"], "guess for 7B models served by vLLM"
    sizes = [count_parameters(spec) for spec in models.values()]
    if any(size is None for size in sizes):
        return SECONDS_PER_QUERY["local"], "guess for local 7B models"
    scaled = SECONDS_PER_QUERY["local"] * max(sizes) / REFERENCE_PARAMETERS
    return max(MIN_SECONDS_PER_QUERY, scaled), f"guess scaled to the models' size, {max(sizes):.3g} parameters"


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
    benchmarks: list[str],
    files: dict[str, str],
    output_dir: str,
    limit: int | None,
    ensemble: bool,
    models: dict[str, str],
    run_argv: list[str],
    online: bool,
    ensemble_seed: int = 1,
) -> list[dict]:
    """One entry per ``pasa run`` to do: benchmark, run name, manifest and key, folder, queries in all and to run."""
    from pasa.runner import load_queries, output_path

    runs = []
    for key in benchmarks:
        items = load_queries(files[key], limit)
        for run in ("run1", "run2") if ensemble else ("run1",):
            argv = list(run_argv)
            if run == "run2":
                argv += ["--crawler_sample", "true", "--seed", str(ensemble_seed)]
            manifest = run_manifest(key, run, files[key], models, argv, online)
            name = f"{run}-{run_key(manifest)}"
            folder = os.path.join(output_dir, key, name)
            todo = sum(not os.path.exists(output_path(folder, item)) for item in items)
            runs.append(
                {
                    "benchmark": key,
                    "run": run,
                    "input_file": files[key],
                    "folder": folder,
                    "manifest_path": os.path.join(output_dir, key, name + ".json"),
                    "manifest": manifest,
                    "argv": argv,
                    "queries": len(items),
                    "todo": todo,
                }
            )
    return runs


def read_manifest(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def measured_seconds_per_query(runs: list[dict]) -> float | None:
    """Seconds per query timed on earlier runs of the same models (any benchmark or knobs), if any."""
    seconds = queries = 0.0
    models = runs[0]["manifest"]["models"] if runs else None
    for r in runs:
        folder = os.path.dirname(r["manifest_path"])
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            manifest = read_manifest(os.path.join(folder, name)) if name.endswith(".json") else None
            if manifest and manifest.get("models") == models:
                timing = manifest.get("timing") or {}
                seconds += float(timing.get("seconds", 0))
                queries += float(timing.get("queries", 0))
    return seconds / queries if queries else None


def write_manifest(run: dict, seconds: float, queries: int) -> None:
    """The run's manifest beside its folder, with the time spent on the queries computed so far."""
    from pasa.io import write_text_atomic

    timing = (read_manifest(run["manifest_path"]) or {}).get("timing") or {}
    manifest = dict(run["manifest"])
    manifest["timing"] = {
        "seconds": round(float(timing.get("seconds", 0)) + seconds, 3),
        "queries": int(timing.get("queries", 0)) + queries,
    }
    os.makedirs(os.path.dirname(run["manifest_path"]), exist_ok=True)
    write_text_atomic(run["manifest_path"], json.dumps(manifest, indent=2) + "\n")


def format_estimate(
    runs: list[dict], seconds_per_query: float, serper_per_query: int, online: bool, basis: str = "rough"
) -> str:
    """The lines printed before starting: queries to run, time, Serper calls."""
    todo = sum(r["todo"] for r in runs)
    lines = [
        f"{r['benchmark']}/{r['run']}: {r['todo']} of {r['queries']} queries to run -> {r['folder']}" for r in runs
    ]
    lines.append(
        f"estimated time: {format_duration(todo * seconds_per_query)} ({todo} queries x ~{seconds_per_query:.3g} s: "
        f"{basis}; --seconds_per_query sets it)"
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


def format_duration(seconds: float) -> str:
    """
    >>> format_duration(12), format_duration(150), format_duration(2520), format_duration(36000)
    ('12 s', '2.5 min', '42 min', '10.0 h')
    """
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _diff(value: float | None, paper: float) -> str:
    return "-" if value is None else f"{value - paper:+.4f}"


def format_table(
    results: dict[str, dict[str, dict | None]],
    notes: list[str],
    producers: dict[str, dict[str, list[dict]]] | None = None,
) -> str:
    """Markdown: for each benchmark and row, the paper's numbers, this run's and the difference; then which runs
    and checkpoints produced each row (``producers``: {benchmark: {row: [run, ...]}}, runs as planned)."""
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
    if producers:
        lines += [
            "",
            "## What produced each row",
            "",
            "| Benchmark | Row | Runs | Crawler | Selector |",
            "|---|---|---|---|---|",
        ]
        for key, rows in producers.items():
            for row, runs in rows.items():
                models = runs[0]["manifest"]["models"]
                folders = " + ".join(f"`{r['benchmark']}/{os.path.basename(r['folder'])}`" for r in runs)
                crawler, selector = (
                    f"`{m['path']}` ({m['fingerprint']})" for m in (models["crawler"], models["selector"])
                )
                lines.append(f"| {BENCHMARKS[key].name} | {row} | {folders} | {crawler} | {selector} |")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def evaluate_runs(runs: list[dict], ensemble: bool) -> tuple[dict, list[str], dict]:
    """``pasa eval`` on each benchmark's runs (and the ensemble).

    Returns ({benchmark: {row: summary | None}}, notes, {benchmark: {row: [runs that produced it]}}).
    """
    from pasa.evaluate import evaluate_folder

    results: dict[str, dict[str, dict | None]] = {}
    producers: dict[str, dict[str, list[dict]]] = {}
    notes: list[str] = []
    by_benchmark: dict[str, dict[str, dict]] = {}
    for r in runs:
        by_benchmark.setdefault(r["benchmark"], {})[r["run"]] = r
    for key, named in by_benchmark.items():
        run1, run2 = named["run1"], named.get("run2")
        rows: dict[str, dict | None] = {}
        pairs = [("PaSa-7B", None)] + ([("PaSa-7B-ensemble", run2)] if ensemble else [])
        for row, second in pairs:
            used = [run1] + ([second] if second is not None else [])
            producers.setdefault(key, {})[row] = used
            if not all(os.path.isdir(r["folder"]) for r in used):
                rows[row] = None
                continue
            ev = evaluate_folder(run1["folder"], ensemble_dir=None if second is None else second["folder"])
            rows[row] = ev.summary
            if ev.skipped:
                notes.append(f"{BENCHMARKS[key].name} {row}: {len(ev.skipped)} result file(s) skipped (see warnings)")
            if ev.degraded:
                notes.append(
                    f"{BENCHMARKS[key].name} {row}: {len(ev.degraded)} degraded tree(s) (failed tool calls); "
                    "rerun with --redo_degraded"
                )
        results[key] = rows
    return results, notes, producers


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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args, passthrough = parser.parse_known_args(argv)  # what this parser does not know goes to `pasa run`
    _check_run_flags(passthrough, parser)
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

    # the plan: `pasa run` arguments, the models, the runs and what they will cost
    run_argv = _run_argv(passthrough, args.search_index)
    online_flag = _flag_value(run_argv, "--online")
    online = online_flag.lower() in ("true", "1", "yes") if online_flag else bool(os.environ.get("SERPER_API_KEY"))
    models = {role: _flag_value(run_argv, f"--{role}_path") or default for role, default in DEFAULT_MODELS.items()}
    serper_per_query = int(_flag_value(run_argv, "--search_queries") or 5)
    runs = plan_runs(
        benchmarks, files, args.output_dir, args.limit, ensemble, models, run_argv, online, args.ensemble_seed
    )
    if args.seconds_per_query:
        seconds, basis = args.seconds_per_query, "given"
    else:
        seconds, basis = estimate_seconds_per_query(models, measured_seconds_per_query(runs))
    print(format_estimate(runs, seconds, serper_per_query, online, basis), flush=True)
    unkeyed = [os.path.join(args.output_dir, b, r) for b in benchmarks for r in ("run1", "run2")]
    unkeyed = [folder for folder in unkeyed if os.path.isdir(folder)]
    if unkeyed:  # folders of a version that did not record what produced them: never mixed into this table
        print(f"note: {', '.join(unkeyed)} do not say which models produced them; they are not reused")
    if args.dry_run:
        return 0

    # the runs, then the table
    status, finished = run_all(runs, args.limit)
    if not finished:
        return status
    results, notes, producers = evaluate_runs(runs, ensemble)
    if not online:
        notes.append("offline search (BM25 over the paper database) instead of Google: not the paper's setting")
    if args.limit is not None:
        notes.append(f"--limit {args.limit}: the first {args.limit} queries of each benchmark only")
    if status:
        notes.append("some queries failed (see the run summaries); rerun the same command to retry them")
    table = format_table(results, notes, producers)
    from pasa.io import write_text_atomic

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "reproduce.md")
    write_text_atomic(path, table)
    print("\n" + table + f"\nwritten to {path}")
    return status


def _check_run_flags(passthrough: list[str], parser: argparse.ArgumentParser) -> None:
    """A flag neither ``pasa reproduce`` nor ``pasa run`` knows stops here, before any run, with the closest flag of
    either (exit status 2)."""
    from pasa.flags import find_unknown_flag, known_flags, unknown_flag_message
    from pasa.runner import make_parser as make_run_parser

    run_parser = make_run_parser()
    unknown = find_unknown_flag(passthrough, run_parser)
    if unknown is not None:
        message = unknown_flag_message(unknown, known_flags(parser) + known_flags(run_parser))
        parser.exit(2, f"{parser.prog}: error: {message}\n")


def _run_argv(passthrough: list[str], search_index: str | None) -> list[str]:
    """The `pasa run` arguments of every run: the user's, plus the downloaded paper database when they name none,
    plus offline search over ``search_index`` when given."""
    run_argv = list(passthrough)
    if _flag_value(run_argv, "--paper_db") is None and all(os.path.exists(p) for p in DEFAULT_DB):
        run_argv += ["--paper_db", DEFAULT_DB[0], "--id2paper", DEFAULT_DB[1]]
    if search_index:
        run_argv += ["--search_index", search_index]
        if _flag_value(run_argv, "--online") is None:
            run_argv += ["--online", "false"]
    return run_argv


def run_all(runs: list[dict], limit: int | None) -> tuple[int, bool]:
    """Each planned run through ``pasa run`` (resuming what is done), its manifest written after it. Returns the
    worst exit status and whether every run ran: a run whose input is refused (status 2) stops here, since the next
    runs would stop on the same line."""
    from pasa.runner import load_queries, output_path
    from pasa.runner import main as run_main

    status = 0
    for r in runs:
        print(f"\n== {BENCHMARKS[r['benchmark']].name}, {r['run']} ==", flush=True)
        extra = ["--input_file", r["input_file"], "--output_dir", r["folder"]]
        if limit is not None:
            extra += ["--limit", str(limit)]
        start = time.monotonic()
        code = int(run_main(r["argv"] + extra, prog="pasa reproduce") or 0)
        status = max(status, code)
        if code == 2:
            return status, False
        items = load_queries(r["input_file"], limit)
        done = r["todo"] - sum(not os.path.exists(output_path(r["folder"], item)) for item in items)
        write_manifest(r, time.monotonic() - start if done else 0.0, done)
    return status, True


if __name__ == "__main__":
    sys.exit(main())
