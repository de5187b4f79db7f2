"""Score a results folder with the paper's metrics (``pasa eval``, ``scripts/eval.py``).

Launch lines::

    pasa eval results/real                                   # table, LaTeX and markdown rows
    pasa eval results/real --ensemble results/real_run2      # the PaSa-7b-ensemble row (union of two runs)
    pasa eval results/real --per_query --output_file results/real_summary.json --format markdown

A results folder holds one released-format JSON tree per query (``<index>.json``, as ``pasa run`` and the released
``run_paper_agent.py`` write them), with the answers in the root's ``extra.answer``. The metrics are those of the
released ``metrics.py`` (``pasa/metrics.py`` has the definitions); unreadable files, trees without answers and files
missing from the ensemble folder are reported by name and skipped. Trees are read and walked without recursion, so
a very deep tree (3,000 levels) is scored like any other. Scored trees that record failed tool calls
(``extra.failures``, see ``pasa run --redo_degraded``) are counted as *degraded* in the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from pasa.io import load_json
from pasa.metrics import (
    METRIC_COLUMNS,
    SELECT_THRESHOLD,
    SELECTOR_FIELDS,
    STAT_COLUMNS,
    MissingAnswerError,
    QueryMetrics,
    TreeFormatError,
    aggregate,
    evaluate_tree,
)
from pasa.paper import is_degraded

logger = logging.getLogger(__name__)

FORMATS = ("all", "table", "latex", "markdown")


@dataclass
class FolderEvaluation:
    """Per-query metrics of a results folder, the files skipped and why, and the macro averages."""

    per_query: list[tuple[str, QueryMetrics]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    summary: dict[str, Any] | None = None
    degraded: list[str] = field(default_factory=list)  # scored files whose tree records failed tool calls


def _natural_key(name: str) -> list:
    """``2.json`` before ``10.json``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def list_result_files(folder: str) -> list[str]:
    """The ``*.json`` file names of a folder (hidden files, e.g. atomic-write temporaries, excluded)."""
    names = [n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]
    return sorted(names, key=_natural_key)


def load_tree_file(path: str) -> dict[str, Any]:
    """Read one JSON tree; ``ValueError`` with a readable reason when it cannot be used."""
    try:
        tree = load_json(path)
    except OSError as err:
        raise ValueError(f"cannot read ({err.strerror or err})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"malformed JSON ({err})") from err
    except (ValueError, MemoryError) as err:  # nested too deeply even for the large-stack parser
        raise ValueError(f"cannot parse ({err})") from err
    if not isinstance(tree, dict):
        raise ValueError(f"expected a JSON object, got {type(tree).__name__}")
    return tree


def evaluate_folder(
    results_dir: str,
    ensemble_dir: str | None = None,
    exclude_no_answer: bool = False,
    threshold: float = SELECT_THRESHOLD,
) -> FolderEvaluation:
    """Evaluate every tree of ``results_dir`` (with the same-named tree of ``ensemble_dir`` when given)."""
    out = FolderEvaluation()
    for name in list_result_files(results_dir):
        try:
            tree = load_tree_file(os.path.join(results_dir, name))
            ensemble_tree = None
            if ensemble_dir is not None:
                ensemble_path = os.path.join(ensemble_dir, name)
                if not os.path.exists(ensemble_path):
                    raise ValueError(f"missing from the ensemble folder {ensemble_dir!r}")
                try:
                    ensemble_tree = load_tree_file(ensemble_path)
                except ValueError as err:
                    raise ValueError(f"ensemble file: {err}") from err
            metrics = evaluate_tree(tree, ensemble_tree=ensemble_tree, threshold=threshold)
        except (ValueError, TreeFormatError, MissingAnswerError, RecursionError) as err:
            logger.warning("%s: %s, skipped", os.path.join(results_dir, name), err)
            out.skipped.append((name, str(err)))
            continue
        out.per_query.append((name, metrics))
        if is_degraded(tree) or (ensemble_tree is not None and is_degraded(ensemble_tree)):
            out.degraded.append(name)
    if out.per_query:
        try:
            out.summary = aggregate([m for _, m in out.per_query], exclude_no_answer=exclude_no_answer)
        except ValueError as err:
            logger.warning("%s: %s", results_dir, err)
    return out


# -- formatting (pure) ---------------------------------------------------------------------------------------
def _cell(summary: dict[str, Any], name: str) -> str:
    """A value as the released script printed it (``round(x, 4)``), or "-" for selector columns of a run
    without a selector (the paper's Google rows)."""
    if name in SELECTOR_FIELDS and not summary.get("has_selector", True):
        return "-"
    return str(round(summary[name], 4))


def format_latex(summary: dict[str, Any]) -> str:
    """The two lines the released ``metrics.py`` prints, same separators (including its ``"  & "``)."""
    first = " & ".join(_cell(summary, n) for n, _ in METRIC_COLUMNS)
    c = [_cell(summary, n) for n, _ in STAT_COLUMNS]
    second = f"{c[0]} & {c[1]} & {c[2]} & {c[3]}  & {c[4]}"
    return f"{first}\n{second}"


def format_markdown(summary: dict[str, Any], label: str = "run") -> str:
    """A markdown table: header and one row in the paper's column order, then actions and score."""
    cols = list(METRIC_COLUMNS) + [("actions", "Actions"), ("score", "Score")]
    header = "| Method | " + " | ".join(h for _, h in cols) + " |"
    rule = "|---|" + "---:|" * len(cols)
    row = f"| {label} | " + " | ".join(_cell(summary, n) for n, _ in cols) + " |"
    return "\n".join([header, rule, row])


PER_QUERY_COLUMNS = (
    ("num_answers", "answers"),
    ("num_crawled", "crawled"),
    ("num_selected", "selected"),
    ("crawler_recall", "CR"),
    ("precision", "P"),
    ("recall", "R"),
    ("recall_at_100", "R@100"),
    ("recall_at_50", "R@50"),
    ("recall_at_20", "R@20"),
    ("actions", "actions"),
    ("score", "score"),
)


def _per_query_cells(m: QueryMetrics) -> list[str]:
    d = m.to_dict()
    return [f"{d[n]:.4f}" if isinstance(d[n], float) else str(d[n]) for n, _ in PER_QUERY_COLUMNS]


def format_per_query_markdown(evaluation: FolderEvaluation) -> str:
    """One markdown table row per scored file (``*`` marks a degraded tree)."""
    header = "| file | " + " | ".join(h for _, h in PER_QUERY_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(PER_QUERY_COLUMNS)
    degraded = set(evaluation.degraded)
    rows = [
        f"| {name}{' *' if name in degraded else ''} | " + " | ".join(_per_query_cells(m)) + " |"
        for name, m in evaluation.per_query
    ]
    return "\n".join([header, rule, *rows])


def format_per_query_latex(evaluation: FolderEvaluation) -> str:
    """One LaTeX row per scored file: ``name & answers & ... & score \\\\``."""
    return "\n".join(f"{name} & " + " & ".join(_per_query_cells(m)) + " \\\\" for name, m in evaluation.per_query)


def summary_to_json(evaluation: FolderEvaluation, results_dir: str, ensemble_dir: str | None) -> dict[str, Any]:
    return {
        "results_dir": results_dir,
        "ensemble_dir": ensemble_dir,
        "threshold": SELECT_THRESHOLD,
        "summary": evaluation.summary,
        "skipped": [{"file": n, "reason": r} for n, r in evaluation.skipped],
        "degraded": list(evaluation.degraded),
        "per_query": [{"file": n, **m.to_dict()} for n, m in evaluation.per_query],
    }


# -- printing (CLI only) -------------------------------------------------------------------------------------
def _print_tables(evaluation: FolderEvaluation, title: str, per_query: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: no terminal width to respect, keep rows on one line
        console = Console(width=160)
    summary = evaluation.summary
    if per_query:
        table = Table(title=f"Per query: {title}" + (" (* degraded)" if evaluation.degraded else ""))
        table.add_column("file")
        for _, header in PER_QUERY_COLUMNS:
            table.add_column(header, justify="right")
        degraded = set(evaluation.degraded)
        for name, m in evaluation.per_query:
            table.add_row(name + (" *" if name in degraded else ""), *_per_query_cells(m))
        console.print(table)
    table = Table(title=f"PaSa metrics: {title}")
    for _, header in METRIC_COLUMNS:
        table.add_column(header, justify="right")
    table.add_row(*[_cell(summary, n) for n, _ in METRIC_COLUMNS])
    console.print(table)
    table = Table(title="Crawler statistics")
    for header in ("Crawler Recall", "Actions / query", "Score", "Precision", "Recall"):
        table.add_column(header, justify="right")
    table.add_row(*[_cell(summary, n) for n, _ in STAT_COLUMNS])
    console.print(table)


EVAL_EXAMPLE = "pasa eval results/real --per_query --output_file results/real_summary.json"


def make_parser(prog: str = "pasa eval") -> argparse.ArgumentParser:
    from pasa.flags import make_argparser

    parser = make_argparser(
        prog=prog,
        example=EVAL_EXAMPLE.replace("pasa eval", prog),
        description="Score a folder of result trees with the paper's metrics (released metrics.py).",
    )
    parser.add_argument("results_dir", help="Folder with one JSON result tree per query (as `pasa run` writes).")
    parser.add_argument(
        "--ensemble",
        metavar="DIR2",
        help="Second run's folder: evaluate the union of both trees (released name --output_folder_ensemble).",
    )
    parser.add_argument(
        "--per_query", action="store_true", help="Also print one row per query, in each --format printed."
    )
    parser.add_argument(
        "--output_file",
        metavar="SUMMARY_JSON",
        help="Write summary and per-query metrics here (JSON; old name --output).",
    )
    parser.add_argument("--format", choices=FORMATS, default="all", help="What to print (default: all).")
    parser.add_argument(
        "--exclude_no_answer",
        action="store_true",
        help="Leave queries without answers out of the averages (released: they count, with 0 on every ratio).",
    )
    parser.add_argument("--label", default=None, help="Row label of the markdown table (default: folder name).")
    parser.add_argument("--log_level", default="WARNING", help="Logging level (default: WARNING).")
    return parser


def main(argv: list[str] | None = None, prog: str = "pasa eval") -> int:
    from pasa.checks import CheckError, check_output_file, exit_with

    parser = make_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.WARNING), format="%(levelname)s %(name)s: %(message)s"
    )
    for folder in filter(None, (args.results_dir, args.ensemble)):
        if not os.path.isdir(folder):
            print(f"{prog}: {folder!r} is not a folder", file=sys.stderr)
            return 2
    if args.output_file:
        try:
            check_output_file(args.output_file)
        except CheckError as err:
            exit_with(err, parser.prog)
    try:
        evaluation = evaluate_folder(args.results_dir, args.ensemble, exclude_no_answer=args.exclude_no_answer)
    except OSError as err:  # the folder itself cannot be listed
        exit_with(CheckError(f"cannot read {err.filename or args.results_dir!r} ({err.strerror or err})"), parser.prog)
    for name, reason in evaluation.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if evaluation.summary is None:
        print(f"{prog}: no usable result tree in {args.results_dir!r}", file=sys.stderr)
        return 1
    summary = evaluation.summary
    title = args.results_dir + (f" + {args.ensemble} (ensemble)" if args.ensemble else "")
    counts = f"{summary['num_queries']} queries averaged, {len(evaluation.skipped)} files skipped"
    if summary["num_no_answer"]:
        verb = "excluded" if summary["excluded_no_answer"] else "counted with 0"
        counts += f", {summary['num_no_answer']} without answers ({verb})"
    counts += f", {len(evaluation.degraded)} degraded"
    if evaluation.degraded:
        counts += " (trees with failed tool calls; `pasa run --redo_degraded` recomputes them)"
    if args.format in ("all", "table"):
        _print_tables(evaluation, title, args.per_query)
    if args.format in ("all", "latex"):
        if args.per_query:
            print(format_per_query_latex(evaluation))
        print(format_latex(summary))
    if args.format in ("all", "markdown"):
        if args.per_query:
            print(format_per_query_markdown(evaluation))
        label = args.label or os.path.basename(os.path.normpath(args.results_dir))
        print(format_markdown(summary, label + (" (ensemble)" if args.ensemble and not args.label else "")))
    print(counts)
    if args.output_file:
        from pasa.io import write_json_atomic

        write_json_atomic(args.output_file, summary_to_json(evaluation, args.results_dir, args.ensemble))
        print(f"summary written to {args.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
