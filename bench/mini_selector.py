"""PaSa-mini's Selector on its own: how far SFT moves SmolLM2-135M on title-only (query, title) pairs, and what
the frozen model and plain word overlap reach on the same held-out pairs.

The held-out pairs are bench/mini.py's (48 held-out queries, seed 0: answers, 2 BM25 near misses and 2 random
answer titles of other queries each). Rows: AUC over all pairs, and of the answers against the near misses alone
and against the random titles alone.

- ``overlap``: share of the title's content words found in the question (no model);
- ``zero-shot``: P(``True``) of the untrained checkpoint (and of `` True``, the token it writes after ``Decision:``);
- ``probe``: logistic regression on the frozen checkpoint's last-token hidden state of one layer, trained on the
  same balanced training pairs the SFT sees (what a linear read-out of the untrained features can reach);
- ``sft``: the recipe's Selector SFT (``configs/recipes/mini_sft_selector.yaml`` through ``scripts/sft.py``), with
  the knobs below.

Launch lines::

    python bench/mini_selector.py --output_dir runs/mini_selector                  # overlap, zero-shot, probe
    python bench/mini_selector.py --output_dir runs/mini_selector --sft --steps 120 --learning_rate 5e-5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import mini as bench_mini  # noqa: E402  (bench/mini.py)

from pasa import mini  # noqa: E402

STOP_WORDS = set(
    "a an and any are as be by can for from how in is of on or papers paper research studies that the this to "
    "what which with works".split()
)


def content_words(text: str) -> set[str]:
    """[pure] Lower-cased words of ``text`` without stop words.

    >>> sorted(content_words("What papers study Graph Attention?"))
    ['attention', 'graph', 'study']
    """
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS}


def overlap_scores(pairs: list[dict], questions: dict[str, str]) -> list[float]:
    """[pure] Share of each title's content words that its question holds."""
    scores = []
    for pair in pairs:
        title = content_words(pair["title"])
        scores.append(len(title & content_words(questions[pair["qid"]])) / (len(title) + 1))
    return scores


def last_token_states(path: str, prompts: list[str], layers: list[int], dtype: str = "bfloat16") -> dict:
    """{layer: hidden states of the last prompt token (float32, one row per prompt)}; layer 0 = the embeddings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    rows: dict[int, list] = {layer: [] for layer in layers}
    for start in range(0, len(prompts), 16):
        batch = tokenizer(prompts[start : start + 16], return_tensors="pt", padding=True)
        with torch.no_grad():
            states = model(**batch, output_hidden_states=True).hidden_states
        for layer in layers:
            rows[layer].append(states[layer][:, -1].float())
    return {layer: torch.cat(parts) for layer, parts in rows.items()}


def logistic_probe(train_x, train_y, test_x, l2: float = 50.0) -> list[float]:
    """Scores of an L2-regularised logistic regression (LBFGS, standardised features) fitted on the training rows."""
    import torch

    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x, t = (train_x - mean) / std, (test_x - mean) / std
    y = torch.tensor(train_y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w @ w) / len(y)
        loss.backward()
        return loss

    opt.step(closure)
    return (t @ w + b).detach().tolist()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/mini_selector.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", default="runs/mini_selector", help="Checkpoint, data, index, results.json.")
    p.add_argument("--queries", default=str(ROOT / mini.DEV_QUERIES), help="AutoScholarQuery jsonl with qids.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the qid split (bench/mini.py's).")
    p.add_argument("--test_queries", type=int, default=48, help="Held-out queries.")
    p.add_argument("--train_queries", type=int, default=200, help="Training queries (952 in the full bench).")
    p.add_argument("--probe_layers", default="20,24,30", help="Layers the probe reads (comma-separated).")
    p.add_argument(
        "--probe_l2", type=float, default=50.0, help="The probe's L2 weight (x |w|^2 / n; 50 = scikit-learn's C=0.01)."
    )
    p.add_argument("--sft", action="store_true", help="Also run the Selector SFT with the knobs below.")
    p.add_argument("--steps", type=int, default=48, help="SFT steps.")
    p.add_argument("--learning_rate", type=float, default=2e-4, help="SFT learning rate.")
    p.add_argument("--top_layers", type=int, default=6, help="SFT trains the last N decoder layers (0: all).")
    p.add_argument("--near_misses", type=int, default=2, help="BM25 near misses per training query.")
    p.add_argument("--random_negatives", type=int, default=2, help="Random answer titles per training query.")
    p.add_argument("--base_model", default=None, help="A checkpoint instead of SmolLM2 (tests).")
    args = p.parse_args(argv)
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    base = Path(args.base_model) if args.base_model else out / "smollm2"
    if not (base / "config.json").is_file():
        mini.dequantize_gguf(mini.find_smollm2_gguf(), str(base))
    records = mini.load_dev_queries(args.queries)
    train, test = mini.split_by_qid(records, args.test_queries, args.seed)
    train = train[: args.train_queries]
    index = mini.build_title_index(records, str(out / "index"))
    pool = [paper.title for paper in mini.answer_papers(records)]
    train_pairs = mini.balanced(
        mini.selector_pairs(train, index, args.near_misses, args.random_negatives, pool=pool), args.seed
    )
    test_pairs = mini.selector_pairs(test, index, pool=pool, seed=args.seed + 1)
    questions = {r["qid"]: r["question"] for r in records}
    print(
        f"held-out: {len(test)} queries, {len(test_pairs)} pairs ({sum(p['label'] for p in test_pairs)} answers); "
        f"training: {len(train)} queries, {len(train_pairs)} balanced pairs",
        flush=True,
    )
    rows: dict[str, dict] = {}

    def report(name: str, scores: list[float]) -> None:
        rows[name] = {k: v for k, v in mini.selector_metrics(scores, test_pairs).items() if k != "scores"}
        r = rows[name]
        print(
            f"{name:<44} AUC {r['auc']:.3f}  near misses {r['auc_near_miss']:.3f}  random {r['auc_random']:.3f}  "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    report("overlap (no model)", overlap_scores(test_pairs, questions))
    selector = bench_mini.load(str(base), 1, "bfloat16")
    spaced = selector.tokenizer.encode(" True", add_special_tokens=False)[:1]
    probs = selector.first_token_probs([p["prompt"] for p in test_pairs], [selector.true_token_id, *spaced])
    report("zero-shot P(True)", [row[0] for row in probs])
    report("zero-shot P( True)", [row[-1] for row in probs])
    del selector
    labels = [p["label"] for p in train_pairs]
    layers = [int(x) for x in args.probe_layers.split(",") if x]
    train_x = last_token_states(str(base), [p["prompt"] for p in train_pairs], layers)
    test_x = last_token_states(str(base), [p["prompt"] for p in test_pairs], layers)
    for layer in layers:
        report(f"probe, layer {layer}", logistic_probe(train_x[layer], labels, test_x[layer], args.probe_l2))

    if args.sft:
        data = bench_mini.write_jsonl(out / "data" / "selector_train.jsonl", train_pairs)
        name = (
            f"SFT {args.steps} steps, lr {args.learning_rate:g}, top {args.top_layers}, "
            f"{args.near_misses}+{args.random_negatives} neg"
        )
        curve = bench_mini.run_sft(
            "mini_sft_selector.yaml", str(base), data, out / "sft_selector", args.steps, args.top_layers,
            extra=["--learning_rate", str(args.learning_rate)],
        )  # fmt: skip
        trained = bench_mini.ScoresLLM(bench_mini.load(str(out / "sft_selector"), 1, "bfloat16"))
        report(name, trained.true_prob([p["prompt"] for p in test_pairs]))
        rows[name]["loss"] = [h["loss"] for h in curve]
    (out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
