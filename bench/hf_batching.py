"""Selector throughput of the HF backend on mixed-length prompts: fixed batches in input order vs sorted batches
under a token budget.

A random Qwen2 of the given size (no download) and the in-process tokenizer score 64 selector prompts whose
lengths spread over 397-834 tokens (the issue's figures for real selector prompts), three ways:

  before, 64   one batch of 64 (every prompt padded to the longest)
  before, 8    batches of 8 in input order (the released chunking)
  after, 8     sorted by length, batches of 8
  after        sorted by length, batches of at most --batch_size prompts and --max_batch_tokens padded tokens

    python bench/hf_batching.py                                   # CPU, small model
    python bench/hf_batching.py --device cuda --dtype bfloat16 --hidden 1536 --layers 28 --heads 12 --kv_heads 2
        # Qwen2.5-1.5B's shape (random weights; the tiny tokenizer's vocabulary)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch


def make_prompts(tokenizer, n: int, lo: int, hi: int, seed: int = 0) -> list[str]:
    from pasa.prompts import render_select_prompt

    rng = random.Random(seed)
    words = "graph neural network retrieval agent language model paper search reinforcement learning".split()
    prompts = []
    for _ in range(n):
        target = rng.randint(lo, hi)
        abstract = []
        prompt = render_select_prompt("papers on agents", "A title", "")
        while len(tokenizer(prompt)["input_ids"]) < target:
            abstract.extend(rng.choice(words) for _ in range(16))
            prompt = render_select_prompt("papers on agents", "A title", " ".join(abstract))
        prompts.append(prompt)
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--kv_heads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64, help="prompt cap per batch in the 'after' run")
    parser.add_argument("--max_batch_tokens", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plan_only", action="store_true", help="print the batch plans' padded tokens, no model")
    args = parser.parse_args()

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from pasa.demo import build_tiny_tokenizer
    from pasa.llm.hf import HFLLM, HFLLMConfig

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device(args.device):
        model = Qwen2ForCausalLM(config).to(dtype=getattr(torch, args.dtype)).eval()
    prompts = make_prompts(tokenizer, args.prompts, 397, 834)
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(f"{len(prompts)} prompts, {min(lengths)}-{max(lengths)} tokens; model hidden {args.hidden} x {args.layers}")

    def llm(batch_size, budget):
        return HFLLM(
            HFLLMConfig("bench", batch_size=batch_size, max_batch_tokens=budget, device=args.device),
            model=model,
            tokenizer=tokenizer,
        )

    def padded(batches) -> int:
        """Tokens a plan computes, padding included (deterministic, unlike times on a shared CPU)."""
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    def run(name, fn, batches):
        if args.plan_only:
            tokens = padded(batches)
            print(f"{name:>28}: {len(batches):3d} batches  {tokens:7d} padded tokens ({tokens / sum(lengths):.2f}x)")
            return 0.0
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        tokens = padded(batches)
        print(
            f"{name:>28}: {t:7.3f} s  {len(prompts) / t:8.1f} papers/s  {len(batches):3d} batches  "
            f"{tokens:7d} padded tokens ({tokens / sum(lengths):.2f}x the prompts)"
        )
        return t

    one = llm(len(prompts), 0)
    eight = llm(8, 0)
    after = llm(args.batch_size, args.max_batch_tokens)
    worst = None
    if not args.plan_only:
        ref, got = one.true_prob(prompts), after.true_prob(prompts)
        worst = max(abs(a - b) for a, b in zip(ref, got, strict=True))
    n = len(prompts)
    run("before: one batch", lambda: one.true_prob(prompts), [list(range(n))])
    # input-order chunks of 8: each call is one batch, so sorting cannot regroup them
    chunks = [list(range(i, min(n, i + 8))) for i in range(0, n, 8)]
    run("before: input-order 8s", lambda: [eight.true_prob([prompts[i] for i in c]) for c in chunks], chunks)
    sorted8 = llm(8, 0)
    run("after: sorted 8s", lambda: sorted8.true_prob(prompts), sorted8.plan_batches(prompts))
    run("after: sorted, token budget", lambda: after.true_prob(prompts), after.plan_batches(prompts))
    if worst is not None:
        print(f"max |score difference| after vs one batch: {worst:.2e}")


if __name__ == "__main__":
    main()
