"""Is the session PPO learning? A toy task with a known reward, trained beside an lr=0 control in one run.

The world: the 16 demo papers (``pasa.demo``) behind the offline search index. Three user queries, each with two
answer papers and two ways to search: a *good* wording whose words are in the answers' titles (the index returns
them: reward α·2 = 3 with the stop bonus) and a *bad* one that finds other papers (reward 0). A tiny Qwen2 is taught
the bad reply three times as often as the good one (the "SFT policy": most searches miss the answers), then session PPO runs ``--updates`` updates
with ``--learning_rate`` and, from the same start, the same number with learning rate 0 (the control: identical
rollouts seeds, no learning). It prints both curves — reward per session, recall, KL to the SFT policy — and where
the time of an update goes.

    python bench/ppo_toy.py                                  # 40 updates, lr 3e-4, kl 0.1, ~5 min on 2 CPU cores
    python bench/ppo_toy.py --updates 120 --learning_rate 1e-4
    python bench/ppo_toy.py --updates 5 --no-control         # speed only (time/* per update)
    # the same under DeepSpeed ZeRO-3 on 2 CPU processes (speed comparison)
    DS_ACCELERATOR=cpu accelerate launch --config_file configs/accelerate/deepspeed_zero3_cpu.yaml \\
        bench/ppo_toy.py --updates 5 --no-control --work_dir /tmp/ppo_toy_z3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (user query, answer titles, good search wording, bad search wording)
TOY_QUERIES = [
    (
        "graph learning methods",
        ["Graph Attention Networks", "Semi-Supervised Classification with Graph Convolutional Networks"],
        "graph attention convolutional networks",
        "language models instructions",
    ),
    (
        "retrieval for open-domain question answering",
        [
            "Dense Passage Retrieval for Open-Domain Question Answering",
            "REALM: Retrieval-Augmented Language Model Pre-Training",
        ],
        "dense passage retrieval language model pre-training",
        "graph neural networks survey",
    ),
    (
        "aligning language models with feedback",
        [
            "Proximal Policy Optimization Algorithms",
            "Training language models to follow instructions with human feedback",
        ],
        "proximal policy optimization follow instructions",
        "message passing quantum chemistry",
    ),
]
TIME_KEYS = (
    "generate", "env", "value_bootstrap", "rollout_forward", "ref_forward", "ppo_epochs", "train_forward",
    "train_backward", "optimizer", "other", "update",
)  # fmt: skip


def load_ppo_script():
    spec = importlib.util.spec_from_file_location("_ppo_script", ROOT / "scripts" / "ppo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def build_world(work: Path, seed: int) -> dict[str, str]:
    """Paper DB, training queries and the taught tiny policy under ``work`` (rank 0 builds, others wait)."""
    done = work / "world.json"
    if rank() != 0:
        import time

        while not done.exists():
            time.sleep(0.5)
        return json.loads(done.read_text())
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pasa.demo import build_tiny_checkpoint, demo_papers
    from pasa.prompts import render_search_prompt
    from pasa.tools.paper_db import build_paper_db

    work.mkdir(parents=True, exist_ok=True)
    build_paper_db(demo_papers(), str(work / "papers.zip"), str(work / "id2paper.json"))
    (work / "train.jsonl").write_text(
        "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a, _, _ in TOY_QUERIES)
    )
    path = build_tiny_checkpoint(str(work / "sft"), seed=seed, hidden_size=32)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    batch = []
    for q, _, good, bad in TOY_QUERIES:  # the bad wording 3x as often: the SFT policy mostly misses the answers
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": render_search_prompt(q)}], tokenize=False, add_generation_prompt=True
        )
        a = tok(prompt, add_special_tokens=False)["input_ids"]
        for wording in (good, bad, bad, bad):
            b = tok(f"[Search] {wording}\n[StopSearch]{tok.eos_token}", add_special_tokens=False)["input_ids"]
            batch.append((a + b, [-100] * len(a) + b))
    width = max(len(x) for x, _ in batch)
    ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
    mask = (torch.arange(width)[None] < torch.tensor([len(x) for x, _ in batch])[:, None]).long()
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    world = {"sft": path, "train_file": str(work / "train.jsonl"), "paper_db": str(work / "papers.zip"),
             "id2paper": str(work / "id2paper.json"), "index": str(work / "index")}  # fmt: skip
    done.write_text(json.dumps(world))
    return world


def known_rewards(world: dict[str, str]) -> list[tuple[str, float, float]]:
    """The environment's reward for the good and the bad reply of each query (what PPO can learn)."""
    from pasa.tools.sources import build_paper_source
    from trl_ext.config import SessionPPOConfig
    from trl_ext.env import Episode, PaperSearchEnv

    cfg = SessionPPOConfig(output_dir=tempfile.mkdtemp(), use_selector=False, search_papers_kept=2, report_to="none")
    source = build_paper_source(paper_db=world["paper_db"], id2paper=world["id2paper"], index=world["index"])
    rows = []
    for q, answers, good, bad in TOY_QUERIES:
        rewards = []
        for wording in (good, bad):
            env = PaperSearchEnv(source, None, cfg)
            session = env.search_session(Episode.from_titles(q, answers))
            outs, _ = env.step([session], [f"[Search] {wording}\n[StopSearch]"], lambda s: [0.0] * len(s))
            rewards.append(outs[0].total_reward)
        rows.append((q, *rewards))
    return rows


def train(world: dict[str, str], out: Path, args, learning_rate: float) -> list[dict]:
    ppo = load_ppo_script()
    argv = [
        "--model_name_or_path", world["sft"], "--dataset_name", world["train_file"], "--paper_db", world["paper_db"],
        "--id2paper", world["id2paper"], "--search_index", world["index"], "--output_dir", str(out),
        "--use_selector", str(args.selector).lower(), "--selector_path", world["sft"], "--selector_batch_size", "8", "--use_cpu", "true", "--bf16", "false", "--dtype", "float32",
        "--attn_implementation", "sdpa", "--rounds", str(args.rounds), "--response_length", "24",
        "--search_papers_kept", "2", "--value_warmup_updates", "0", "--kl_coef", str(args.kl_coef),
        "--learning_rate", str(learning_rate), "--lr_scheduler_type", "constant",
        "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", str(args.queries_per_update),
        "--total_episodes", str(args.updates * args.queries_per_update * int(os.environ.get("WORLD_SIZE", "1"))),
        "--save_steps", "0", "--seed", str(args.seed), "--report_to", "none", "--disable_tqdm", "true",
        "--logging_steps", "1",
    ]  # fmt: skip
    script_args, cfg = ppo.parse_args(argv)
    trainer = ppo.run(script_args, cfg)
    return [h for h in trainer.state.log_history if "env/reward_per_session" in h]


def mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows) if rows else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=40)
    p.add_argument("--learning_rate", type=float, default=3e-4)
    p.add_argument("--kl_coef", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=1, help="1: search sessions only (the toy's reward is there)")
    p.add_argument("--queries_per_update", type=int, default=6, help="per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--selector", action=argparse.BooleanOptionalAction, default=False,
                   help="score new papers with a local selector (the tiny policy itself, so its random votes change "
                   "the rewards): for timing the selector only")  # fmt: skip
    p.add_argument("--control", action=argparse.BooleanOptionalAction, default=True, help="also run lr=0")
    p.add_argument("--window", type=int, default=5, help="updates averaged per printed row")
    p.add_argument("--work_dir", default=None, help="default: a new temporary folder")
    p.add_argument("--json", default=None, help="write both curves here")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("WORLD_SIZE", "1"))))
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ppo_toy_"))
    world = build_world(work, args.seed)
    say = print if rank() == 0 else (lambda *a, **k: None)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # one process only: it builds a config of its own
        say("known rewards per session (good wording / bad wording):")
        for q, good, bad in known_rewards(world):
            say(f"  {q!r}: {good:+.2f} / {bad:+.2f}")
    runs = {"trained": train(world, work / "trained", args, args.learning_rate)}
    if args.control:
        runs["control"] = train(world, work / "control", args, 0.0)
    names = list(runs)
    say("\nupdates  " + "  ".join(f"{n + ' reward':>15} {n + ' recall':>15} {n + ' KL':>11}" for n in names))
    for start in range(0, args.updates, args.window):
        cells = []
        for n in names:
            rows = runs[n][start : start + args.window]
            cells.append(f"{mean(rows, 'env/reward_per_session'):15.3f} {mean(rows, 'env/recall'):15.3f} "
                         f"{mean(rows, 'objective/kl'):11.3f}")  # fmt: skip
        say(f"{start + 1:>3}-{min(start + args.window, args.updates):<4} " + "  ".join(cells))
    trained = runs["trained"]
    say("\nseconds per update (mean over updates and processes):")
    say("  " + "  ".join(f"{k}={mean(trained, 'time/' + k):.3f}" for k in TIME_KEYS))
    say(f"  generation: {mean(trained, 'time/generate_tokens_per_s'):.0f} tokens/s per process, "
        f"{mean(trained, 'env/reply_tokens') * mean(trained, 'env/sessions'):.0f} reply tokens per process per update")  # fmt: skip
    if args.json and rank() == 0:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
