"""Will the PPO (or SFT) run fit? Per-GPU memory of policy + value + reference + optimizer under DeepSpeed ZeRO.

Model states come from DeepSpeed's own estimators (``estimate_zero3_model_states_mem_needs`` /
``estimate_zero2_model_states_mem_needs``, the functions behind ``estimate_zero3_model_states_mem_needs_all_cold``);
on top of them this adds what those leave out for the session PPO of ``trl_ext/trainer.py``: the frozen reference,
the rollout (policy + value gathered in 16 bit for generation, KV cache, the logits of the log-prob forwards), the
training micro-batch (activations of policy and value, fp32 logits and their gradient), a local selector copy, and a
fixed allowance for the CUDA context and allocator slack. Nothing is downloaded: the model is a ``config.json`` or
one of the known Qwen2.5 sizes.

Launch lines::

    python scripts/plan_memory.py                                        # Qwen2.5-7B, PPO recipe, 8 x 80 GB, ZeRO-3
    python scripts/plan_memory.py --num_nodes 2                          # the released 2 nodes x 8 GPUs
    python scripts/plan_memory.py --num_gpus 4 --gpu_memory_gb 48 --offload_optimizer --offload_param
    python scripts/plan_memory.py --zero_stage 2 --model_config checkpoints/pasa-7b-crawler/config.json
    python scripts/plan_memory.py --recipe sft                           # one model, max_length 1024, batch 4
    python scripts/plan_memory.py --inference                            # pasa run: both 7B models, bf16/int8/nf4

Exit status 0 when the plan fits, 1 when it does not (``--inference`` prints a table over GPU sizes: 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

GB = 1e9
# Qwen2.5 family (config.json of Qwen/Qwen2.5-*-Instruct): hidden, intermediate, layers, heads, kv heads, vocab, tied
KNOWN_MODELS = {
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "qwen2.5-3b": (2048, 11008, 36, 16, 2, 151936, True),
    "qwen2.5-7b": (3584, 18944, 28, 28, 4, 152064, False),
    "qwen2.5-14b": (5120, 13824, 48, 40, 8, 152064, False),
}
CUDA_OVERHEAD_GB = 2.0  # CUDA context, NCCL buffers, allocator fragmentation (a rule of thumb, not measured here)


@dataclass
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        kv = self.kv_heads * self.head_dim
        attention = self.hidden * self.hidden * 2 + self.hidden * kv * 2 + self.hidden + 2 * kv  # q, o, k, v + biases
        return attention + 3 * self.hidden * self.intermediate + 2 * self.hidden

    @property
    def backbone_params(self) -> int:
        return self.vocab * self.hidden + self.layers * self.layer_params + self.hidden

    @property
    def causal_lm_params(self) -> int:
        return self.backbone_params + (0 if self.tied else self.vocab * self.hidden)

    @property
    def value_params(self) -> int:  # backbone + scalar head (AutoModelForSequenceClassification, num_labels=1)
        return self.backbone_params + self.hidden

    @property
    def largest_layer_params(self) -> int:
        return max(self.vocab * self.hidden, self.layer_params)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes


def load_shape(model: str, model_config: str | None) -> ModelShape:
    """The shape from a config.json (Qwen2/Llama-style keys) or from :data:`KNOWN_MODELS`."""
    if model_config:
        with open(model_config) as f:
            c = json.load(f)
        return ModelShape(
            c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"],
            c.get("num_key_value_heads", c["num_attention_heads"]), c["vocab_size"], c.get("tie_word_embeddings", False),
        )  # fmt: skip
    key = model.lower()
    if key not in KNOWN_MODELS:
        raise SystemExit(f"unknown --model {model!r}; known: {', '.join(KNOWN_MODELS)} (or pass --model_config)")
    return ModelShape(*KNOWN_MODELS[key])


def model_states_gb(total_params: int, largest: int, args) -> tuple[float, float]:
    """(GPU, CPU per node) bytes of trained model states: 16-bit params + grads + fp32 Adam, from DeepSpeed."""
    if args.zero_stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total_params, largest, args.num_gpus, args.num_nodes, cpu_offload=args.offload_optimizer,
            cpu_offload_params=args.offload_param, zero_init=True, additional_buffer_factor=1.5,
        )  # fmt: skip
    else:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        cpu, gpu = estimate_zero2_model_states_mem_needs(
            total_params,
            args.num_gpus,
            args.num_nodes,
            cpu_offload=args.offload_optimizer,
            additional_buffer_factor=1.5,
        )
    return gpu / GB, cpu / GB


def activations_gb(shape: ModelShape, tokens: int, checkpointing: bool) -> float:
    """Training activations of one 16-bit forward+backward over ``tokens`` tokens (flash/sdpa attention: no
    attention matrix). Without checkpointing ~34·h bytes per token and layer (Korthikanti et al. 2022, Table 2
    without the 5as/h term); with it, each layer's input (2·h) plus one layer recomputed."""
    h = shape.hidden
    if checkpointing:
        return (2 * h * tokens * shape.layers + 34 * h * tokens) / GB
    return 34 * h * tokens * shape.layers / GB


def plan(args) -> list[tuple[str, float, str]]:
    """Rows (item, GB per GPU, note) of the plan."""
    shape = load_shape(args.model, args.model_config)
    gpus = args.num_gpus * args.num_nodes
    rows: list[tuple[str, float, str]] = []
    ppo = args.recipe == "ppo"
    trained = shape.causal_lm_params + (shape.value_params if ppo else 0)
    gpu, cpu = model_states_gb(trained, shape.largest_layer_params, args)
    what = "policy + value" if ppo else "model"
    rows.append(
        (
            f"{what} states (DeepSpeed estimate)",
            gpu,
            f"{trained / 1e9:.2f} B params; CPU {cpu:.0f} GB/node (DeepSpeed, incl. loading)",
        )
    )
    if ppo:
        if args.zero_stage == 3 and args.offload_param:  # prepare_deepspeed keeps parameter offload for it
            ref, note = 4 * shape.largest_layer_params / GB, "ZeRO-3 parameters on CPU: one layer at a time"
        elif args.zero_stage == 3:
            ref, note = 2 * shape.causal_lm_params / gpus / GB, "ZeRO-3: partitioned over all GPUs"
        else:
            ref, note = 2 * shape.causal_lm_params / GB, "stage < 3: a full copy per GPU (trl prepare_deepspeed)"
        rows.append(("reference (frozen, 16 bit)", ref, note))
        gathered = 2 * trained / GB if args.zero_stage == 3 else 0.0
        seq = args.prompt_length + args.response_length
        kv = shape.kv_bytes_per_token() * seq * args.rollout_batch / GB
        logits = args.rollout_batch * (seq * shape.vocab * 2 + 2 * args.response_length * shape.vocab * 4) / GB
        rows.append(
            (
                "rollout transient",
                gathered + kv + logits,
                f"gathered policy+value {gathered:.1f} + KV cache {kv:.1f} + log-prob logits {logits:.1f} "
                f"({args.rollout_batch} x {seq} tokens)",
            )
        )
        tokens = args.micro_batch * seq
        act = 2 * activations_gb(shape, tokens, args.gradient_checkpointing)  # policy and value backbones
        logit_train = args.micro_batch * seq * shape.vocab * (2 + 4 + 4) / GB
        rows.append(
            (
                "training micro-batch",
                act + logit_train,
                f"activations {act:.1f} (policy + value, checkpointing {'on' if args.gradient_checkpointing else 'off'})"
                f" + logits/grad {logit_train:.1f} ({tokens} tokens)",
            )
        )
        if args.local_selector:
            rows.append(
                ("local selector (16 bit)", 2 * shape.causal_lm_params / GB, "--selector_path <dir>; 0 with a URL")
            )
    else:
        tokens = args.micro_batch * args.max_length
        act = activations_gb(shape, tokens, args.gradient_checkpointing)
        logit_train = tokens * shape.vocab * (2 + 4 + 4) / GB
        rows.append(("training micro-batch", act + logit_train, f"{tokens} tokens"))
    rows.append(("CUDA context + slack", CUDA_OVERHEAD_GB, "rule of thumb"))
    return rows


def peak_gb(rows: list[tuple[str, float, str]]) -> float:
    """Peak per GPU: states + reference + selector + slack + the larger of the rollout and training transients."""
    fixed = sum(v for k, v, _ in rows if k not in ("rollout transient", "training micro-batch"))
    transient = max([v for k, v, _ in rows if k in ("rollout transient", "training micro-batch")] or [0.0])
    return fixed + transient


# -- inference: the agent's two models (pasa run) -------------------------------------------------------------------
# Bytes per weight of the quantized Linear layers (bitsandbytes): int8 rows + fp32 row scales; nf4 + one absmax per
# 64 weights (double quantization makes that ~0.127 bits). Embeddings and the LM head stay 16 bit, as bitsandbytes
# leaves them.
WEIGHT_BYTES = {"bf16": 2.0, "int8": 1.0 + 4 / 3584, "nf4": 0.5 + 0.127 / 8}
INFERENCE_GPUS_GB = (24, 48, 80)
VLLM_OVERHEAD_GB = 1.5  # CUDA graphs, activation workspace and sampler buffers of a vLLM server (rule of thumb)
CRAWLER_NEW_TOKENS = 512  # the crawler's generation budget at inference (released: 512)


def inference_weights_gb(shape: ModelShape, quant: str) -> float:
    """One model's weights: Linear layers at ``quant``, embeddings / LM head / norms in 16 bit."""
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    linear = shape.causal_lm_params - embeddings
    return (linear * WEIGHT_BYTES[quant] + embeddings * 2) / GB


def forward_transient_gb(shape: ModelShape, tokens: int) -> float:
    """One HF call over ``tokens`` padded tokens: its KV cache (16 bit) and the prefill's largest live tensors
    (the MLP's gate and up projections, a few hidden-size buffers). ``generate`` keeps only the last position's
    logits, so the vocabulary adds one row per prompt, not one per token."""
    kv = shape.kv_bytes_per_token() * tokens
    prefill = tokens * (2 * shape.intermediate + 4 * shape.hidden) * 2
    return (kv + prefill) / GB


def inference_plan(args) -> list[tuple[str, str, int, float, str]]:
    """Rows (layout, weights, GPUs, GB per GPU, note) for the crawler and selector of ``pasa run``."""
    shape = load_shape(args.model, args.model_config)
    call_tokens = args.max_batch_tokens  # the HF backend's padded-token budget per call (prompts + new tokens)
    transient = forward_transient_gb(shape, call_tokens)
    rows = []
    for quant in ("bf16", "int8", "nf4"):
        w = inference_weights_gb(shape, quant)
        note = "" if quant == "bf16" else " (bitsandbytes, CUDA only)"
        # both models in one process: the crawler's and the selector's calls can be in flight together
        both = 2 * w + 2 * transient + CUDA_OVERHEAD_GB
        rows.append(("local, both models on 1 GPU", quant, 1, both, f"2 x {w:.1f} GB weights + 2 calls{note}"))
        one = w + transient + CUDA_OVERHEAD_GB
        rows.append(
            ("local, one model per GPU", quant, 2, one, f"{w:.1f} GB weights + 1 call{note}; per-model device")
        )
    w = inference_weights_gb(shape, "bf16")
    seq = args.prompt_length + CRAWLER_NEW_TOKENS
    kv_server = shape.kv_bytes_per_token() * seq * args.concurrency / GB
    served = w + kv_server + VLLM_OVERHEAD_GB
    note = (
        f"{w:.1f} GB weights + KV for {args.concurrency} x {seq} tokens {kv_server:.1f} GB + server {VLLM_OVERHEAD_GB}"
    )
    rows.append(("served (vLLM), one server per GPU", "bf16", 2, served, note))
    rows.append(("served (vLLM), both servers on 1 GPU", "bf16", 1, 2 * served, "two servers, half the memory each"))
    return rows


def print_inference_plan(args) -> int:
    rows = inference_plan(args)
    shape = load_shape(args.model, args.model_config)
    print(
        f"INFERENCE memory plan: crawler + selector, {args.model_config or args.model} "
        f"({shape.causal_lm_params / 1e9:.2f} B params each); HF backend call: {args.max_batch_tokens} padded tokens "
        f"(--max_batch_tokens; batch_size 8 x (prompt + 512 new tokens) at most)"
    )
    head = "| layout | weights | GPUs | GB per GPU | " + " | ".join(f"{g} GB" for g in INFERENCE_GPUS_GB) + " | what |"
    print(head)
    print("|---|---|---:|---:|" + "---|" * len(INFERENCE_GPUS_GB) + "---|")
    for layout, quant, gpus, gb, note in rows:
        fits = " | ".join("fits" if gb <= g else "-" for g in INFERENCE_GPUS_GB)
        print(f"| {layout} | {quant} | {gpus} | {gb:.1f} | {fits} | {note} |")
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/plan_memory.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-7b", help=f"one of {', '.join(KNOWN_MODELS)}")
    p.add_argument("--model_config", default=None, help="a config.json instead of --model")
    p.add_argument("--recipe", choices=("ppo", "sft"), default="ppo")
    p.add_argument("--num_gpus", type=int, default=8, help="GPUs per node")
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument("--gpu_memory_gb", type=float, default=80.0)
    p.add_argument("--zero_stage", type=int, choices=(2, 3), default=3)
    p.add_argument("--offload_optimizer", action="store_true", help="ZeRO optimizer states on CPU")
    p.add_argument("--offload_param", action="store_true", help="ZeRO-3 parameters on CPU (needs --offload_optimizer)")
    p.add_argument("--prompt_length", type=int, default=2048, help="PPO: longest prompt (max_prompt_length)")
    p.add_argument("--response_length", type=int, default=1024, help="PPO: reply budget (response_length)")
    p.add_argument("--rollout_batch", type=int, default=4, help="PPO: local_rollout_forward_batch_size")
    p.add_argument("--max_length", type=int, default=1024, help="SFT: max_length")
    p.add_argument("--micro_batch", type=int, default=None, help="per-device batch (PPO 1, SFT 4)")
    p.add_argument("--gradient_checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="default: off for PPO (released launch), on for SFT (released recipe)")  # fmt: skip
    p.add_argument("--local_selector", action=argparse.BooleanOptionalAction, default=True,
                   help="PPO: a local selector copy per process (--no-local_selector: served by URL)")  # fmt: skip
    p.add_argument("--inference", action="store_true",
                   help="Plan `pasa run` instead of training: crawler + selector, local or served, 1 or 2 GPUs, "
                   "bf16 / int8 / nf4 weights")  # fmt: skip
    p.add_argument("--max_batch_tokens", type=int, default=16384,
                   help="Inference: the HF backend's padded tokens per call (pasa run --max_batch_tokens)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=8,
                   help="Inference, served: requests in flight per server (the OpenAI backend's default 8)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.inference:
        return print_inference_plan(args)
    if args.offload_param and not args.offload_optimizer:
        raise SystemExit("--offload_param needs --offload_optimizer (DeepSpeed ZeRO-Infinity)")
    if args.offload_param and args.zero_stage != 3:
        raise SystemExit("--offload_param needs --zero_stage 3")
    if args.micro_batch is None:
        args.micro_batch = 1 if args.recipe == "ppo" else 4
    if args.gradient_checkpointing is None:
        args.gradient_checkpointing = args.recipe == "sft"
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # the estimators are arithmetic; no GPU needed to run them
    rows = plan(args)
    offload = " + ".join(x for x, on in (("optimizer", args.offload_optimizer), ("params", args.offload_param)) if on)
    print(
        f"{args.recipe.upper()} memory plan: {args.model_config or args.model}, {args.num_nodes} node(s) x "
        f"{args.num_gpus} GPU(s) x {args.gpu_memory_gb:g} GB, ZeRO-{args.zero_stage}"
        + (f", CPU offload: {offload}" if offload else "")
    )
    width = max(len(r[0]) for r in rows)
    for name, gb, note in rows:
        print(f"  {name:<{width}}  {gb:7.1f} GB   {note}")
    peak = peak_gb(rows)
    fits = peak <= args.gpu_memory_gb
    print(
        f"  {'peak per GPU':<{width}}  {peak:7.1f} GB   {'fits' if fits else 'DOES NOT FIT'} in {args.gpu_memory_gb:g} GB"
    )
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
