"""Precision, recall, F1 and accuracy of a Selector on a labelled jsonl (the paper's Selector table).

Any backend ``pasa.llm.load_llm`` accepts: a local checkpoint (``checkpoints/pasa-7b-selector``) or an
OpenAI-compatible server (``http://localhost:8000/v1#pasa-7b-selector``; ``https://api.openai.com/v1#gpt-4o`` with
``--selector_endpoint chat``). Each paper is scored as the agent scores it (``Selector``: P(True) of the raw
``get_selected`` prompt) and predicted relevant when the score is above the threshold (0.5, as the agent).

Data: the released ``sft_selector/test.jsonl`` chat records (user turn = the prompt, assistant turn starting with
``True``/``False``) or records ``{"query", "title", "abstract", "label": bool}``. Records of neither shape are
skipped and counted. Prints a table; writes the metrics (and, with ``--save_scores``, every score) as JSON.

Launch lines::

    python scripts/eval_selector.py --selector_path checkpoints/pasa-7b-selector --data data/sft_selector/test.jsonl \\
        --output_file results/selector_eval.json
    python scripts/eval_selector.py --selector_path https://api.openai.com/v1#gpt-4o --selector_endpoint chat \\
        --data data/sft_selector/test.jsonl --output_file results/selector_eval_gpt4o.json
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pasa.flags import make_argparser  # noqa: E402
from pasa.selector import SELECT_THRESHOLD  # noqa: E402
from trl_ext.sft_data import read_selector_example  # noqa: E402

logger = logging.getLogger(__name__)


def selector_metrics(labels: list[bool], scores: list[float], threshold: float = SELECT_THRESHOLD) -> dict:
    """[pure] Confusion counts, precision, recall, F1 and accuracy; a paper is predicted relevant when score > threshold.

    Precision (recall) is 0 when nothing is predicted (labelled) relevant.

    >>> m = selector_metrics([True, True, False, False], [0.9, 0.2, 0.7, 0.1])
    >>> (m["tp"], m["fp"], m["fn"], m["tn"], m["precision"], m["recall"], m["f1"], m["accuracy"])
    (1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5)
    """
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels for {len(scores)} scores")
    predicted = [s > threshold for s in scores]
    tp = sum(p and y for p, y in zip(predicted, labels))
    fp = sum(p and not y for p, y in zip(predicted, labels))
    fn = sum(not p and y for p, y in zip(predicted, labels))
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = (tp + tn) / len(labels) if labels else 0.0
    return {
        "n": len(labels),
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": accuracy,
    }


def read_examples(path: str, limit: int | None = None) -> tuple[list[str], list[bool], int]:
    """(raw selector prompts, labels, number of skipped records) of a labelled jsonl."""
    from pasa.io import iter_jsonl

    prompts, labels, skipped = [], [], 0
    for lineno, record in iter_jsonl(path):
        if limit is not None and len(prompts) >= limit:
            break
        example = read_selector_example(record)
        if example is None:
            skipped += 1
            logger.warning("%s:%d: not a labelled selector record, skipped", path, lineno)
            continue
        prompts.append(example[0])
        labels.append(example[1])
    return prompts, labels, skipped


def format_table(name: str, m: dict) -> str:
    """[pure] A markdown table of the metrics (percentages, as in the paper)."""
    head = "| Selector | Precision | Recall | F1 | Accuracy | N |\n|---|---|---|---|---|---|\n"
    row = (
        f"| {name} | {100 * m['precision']:.2f} | {100 * m['recall']:.2f} | {100 * m['f1']:.2f} "
        f"| {100 * m['accuracy']:.2f} | {m['n']} |"
    )
    return head + row


EXAMPLE = (
    "python scripts/eval_selector.py --selector_path checkpoints/pasa-7b-selector "
    "--data data/sft_selector/test.jsonl --output_file results/selector_eval.json"
)


def make_parser() -> argparse.ArgumentParser:
    p = make_argparser("scripts/eval_selector.py", example=EXAMPLE, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--selector_path", required=True, help="LLM spec: a checkpoint directory or http(s)://.../v1#model."
    )
    p.add_argument("--data", required=True, help="Labelled jsonl (sft_selector test format).")
    p.add_argument("--output_file", default=None, help="Where to write the metrics JSON.")
    p.add_argument("--threshold", type=float, default=SELECT_THRESHOLD, help="Selected when score > threshold.")
    p.add_argument("--batch_size", type=int, default=8, help="Prompts per scoring call.")
    p.add_argument("--limit", type=int, default=None, help="Only the first N records.")
    p.add_argument("--selector_endpoint", default=None, help="OpenAI backend: 'completions' (default) or 'chat'.")
    p.add_argument("--save_scores", action="store_true", help="Also write every (label, score) to the JSON.")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    from pasa.io import write_json_atomic
    from pasa.llm import load_llm

    if not os.path.isfile(args.data):
        print(f"{parser.prog}: error: --data {args.data!r} does not exist", file=sys.stderr)
        return 2
    prompts, labels, skipped = read_examples(args.data, args.limit)
    if not prompts:
        print(f"no labelled selector records in {args.data}", file=sys.stderr)
        return 1
    from pasa.checks import CheckError, check_model_path, check_model_server, exit_with, is_http_url

    prog = parser.prog
    try:  # one line before any work: a missing checkpoint never becomes a Hub download
        if is_http_url(args.selector_path):
            check_model_server(args.selector_path, "--selector_path")
        else:
            check_model_path(args.selector_path, "--selector_path", allow_url=True)
    except CheckError as err:
        exit_with(err, prog)
    kwargs = {"batch_size": args.batch_size}
    if args.selector_endpoint:
        kwargs["selector_endpoint"] = args.selector_endpoint
    llm = load_llm(args.selector_path, **kwargs)
    scores: list[float] = []
    for i in tqdm(range(0, len(prompts), args.batch_size), desc="scoring", unit="batch"):
        scores += [float(s) for s in llm.true_prob(prompts[i : i + args.batch_size])]
    metrics = selector_metrics(labels, scores, args.threshold)
    metrics.update(selector=args.selector_path, data=args.data, skipped_records=skipped)
    print(format_table(args.selector_path, metrics))
    if skipped:
        print(f"{skipped} record(s) skipped (not labelled selector records)")
    if args.output_file:
        out = dict(metrics)
        if args.save_scores:
            out["scores"] = [{"label": y, "score": s} for y, s in zip(labels, scores)]
        write_json_atomic(args.output_file, out)
        print(f"wrote {args.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
