"""A local transformers model as an ``LLM`` (the released ``models.py::Agent``, batched and configurable)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)


@dataclass
class HFLLMConfig:
    model_name_or_path: str = field(metadata={"help": "Checkpoint directory (e.g. checkpoints/pasa-7b-crawler)."})
    batch_size: int = field(
        default=8, metadata={"help": "Most prompts per forward/generate call (released: 8 per call, in order)."}
    )
    max_batch_tokens: int = field(
        default=16384,
        metadata={
            "help": "Most padded tokens per forward/generate call (prompt length x prompts; for generation plus "
            "max_new_tokens). Prompts are sorted by length first, so a batch holds prompts of similar length. "
            "0 = no token limit (batch_size only)."
        },
    )
    max_new_tokens: int = field(default=512, metadata={"help": "Generation budget of the crawler (released: 512)."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Truncate prompts to this many tokens (left side is kept); None = no limit."}
    )
    dtype: str = field(default="auto", metadata={"help": "'auto' (checkpoint dtype), 'bfloat16', 'float32', ..."})
    device: str | None = field(default=None, metadata={"help": "'cpu', 'cuda', 'cuda:1'; None = cuda if available."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "'sdpa' (default), 'eager', or 'flash_attention_2' (GPU, needs flash-attn)."}
    )
    temperature: float = field(
        default=2.0, metadata={"help": "Sampling temperature when sample=True (released RL: 2.0)."}
    )
    top_p: float = field(default=0.8, metadata={"help": "Nucleus sampling when sample=True (released RL: 0.8)."})
    true_token: str = field(
        default="True",
        metadata={
            "help": "Text of the one token whose probability is the selector score (released: 'True', the first "
            "token of a trained selector's reply; ' True' is what an untrained chat model writes after 'Decision:')."
        },
    )
    gguf_file: str | None = field(
        default=None,
        metadata={
            "help": "A GGUF file inside model_name_or_path (e.g. SmolLM2-135M-Instruct.Q4_1.gguf) to load instead of "
            "a transformers checkpoint; needs the `gguf` package. transformers dequantizes it on load (slow: "
            "`pasa mini prepare` saves a plain checkpoint once instead)."
        },
    )
    quantization: str | None = field(
        default=None,
        metadata={
            "help": "'8bit' or '4bit' (nf4): Linear weights through bitsandbytes (CUDA only; `pip install "
            "bitsandbytes`), so both 7B models fit one 24 GB card (scripts/plan_memory.py --inference). None = as is."
        },
    )


QUANTIZATIONS = ("8bit", "4bit")


def bitsandbytes_config(quantization: str, device: str):
    """``BitsAndBytesConfig`` for ``quantization`` ('8bit', or '4bit' = nf4 with bf16 compute); CUDA only."""
    from transformers import BitsAndBytesConfig

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    if not str(device).startswith("cuda"):
        raise ValueError(f"{quantization} loading (bitsandbytes) needs a CUDA GPU; the device here is {device!r}")
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


class HFLLM:
    """Batched generation with left padding; P(True) from the first generated token's distribution.

    ``true_prob`` follows the released ``Agent.infer_score``: the raw prompt (no chat template) goes to
    ``generate(max_new_tokens=1, output_scores=True)`` and the score is the softmax over the full vocabulary of
    the first step's scores at the ``True`` token. Like the released code this uses the checkpoint's generation
    config, so its logits processors (e.g. ``repetition_penalty``) shape the score the same way.
    """

    def __init__(self, config: HFLLMConfig, model=None, tokenizer=None):
        self.config = config
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        gguf = {"gguf_file": config.gguf_file} if config.gguf_file else {}
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(
            config.model_name_or_path, padding_side="left", **gguf
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model is None:
            dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
            kwargs = {"dtype": dtype, **gguf}
            if config.attn_implementation:
                from pasa.llm.attn import resolve_attn_implementation  # flash-attn missing -> sdpa, one warning

                kwargs["attn_implementation"] = resolve_attn_implementation(config.attn_implementation)
            if config.quantization:  # bitsandbytes places the weights itself: device_map, not .to()
                kwargs.update(
                    quantization_config=bitsandbytes_config(config.quantization, device), device_map={"": device}
                )
                model = AutoModelForCausalLM.from_pretrained(config.model_name_or_path, **kwargs)
            else:
                model = AutoModelForCausalLM.from_pretrained(config.model_name_or_path, **kwargs).to(device)
        self.model = model.eval()
        self.true_token_id = self._single_token_id(config.true_token)
        # generate() is not re-entrant on one model; the agent may call from several threads.
        self._lock = threading.Lock()

    def _single_token_id(self, token: str) -> int:
        """The id of the one token that ``token`` (text, e.g. ``"True"`` or ``" True"``) encodes to.

        Encoding the text, not looking up a vocabulary entry, works the same for every BPE flavour: byte-level
        vocabularies spell " True" as ``ĠTrue`` (Qwen, SmolLM2), SentencePiece ones as ``▁True``.
        """
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            raise ValueError(
                f"tokenizer of {self.config.model_name_or_path!r} has no single {token!r} token (it encodes to "
                f"{len(ids)}); the selector score P(True) is defined on one token (--true_token)"
            )
        return ids[0]

    @property
    def device(self):
        return self.model.device

    @property
    def preferred_batch_size(self) -> int:
        """Prompts per call the agent's micro-batcher sends (a call's results flow on while the next runs)."""
        return self.config.batch_size

    def _lengths(self, texts: list[str]) -> list[int]:
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        if self.config.max_prompt_length:
            lengths = [min(n, self.config.max_prompt_length) for n in lengths]
        return lengths

    def plan_batches(self, texts: list[str], extra_tokens: int = 0) -> list[list[int]]:
        """Indices of ``texts`` grouped into batches: longest first, each batch at most ``batch_size`` prompts and
        ``max_batch_tokens`` padded tokens (``extra_tokens`` per prompt are added: the generation budget).

        Sorting keeps padding small: a batch of mixed lengths pads every prompt to the longest one
        (`bench/hf_batching.py`: 64 prompts of 411-843 tokens cost 1.37x their tokens in one batch, 1.04x sorted).
        """
        lengths = self._lengths(texts)
        order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
        cap, budget = max(1, self.config.batch_size), self.config.max_batch_tokens
        batches: list[list[int]] = []
        for i in order:
            batch = batches[-1] if batches else None
            if batch is not None and len(batch) < cap:
                longest = lengths[batch[0]] + extra_tokens  # sorted: the first is the longest
                if not budget or (len(batch) + 1) * longest <= budget:
                    batch.append(i)
                    continue
            batches.append([i])
        return batches

    def _encode(self, texts: list[str]):
        kwargs = {"return_tensors": "pt", "padding": True}
        if self.config.max_prompt_length:
            self.tokenizer.truncation_side = "left"
            kwargs.update(truncation=True, max_length=self.config.max_prompt_length)
        return self.tokenizer(texts, **kwargs).to(self.device)

    def apply_chat(self, prompt: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.strip()}], tokenize=False, add_generation_prompt=True
        )

    @torch.no_grad()
    def generate(self, prompts: list[str], chat: bool = True, sample: bool = False) -> list[str]:
        texts = [self.apply_chat(p) if chat else p for p in prompts]
        gen_kwargs = {"max_new_tokens": self.config.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            gen_kwargs.update(do_sample=True, temperature=self.config.temperature, top_p=self.config.top_p)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        replies: list[str | None] = [None] * len(texts)
        for batch in self.plan_batches(texts, extra_tokens=self.config.max_new_tokens):
            inputs = self._encode([texts[i] for i in batch])
            with self._lock:
                out = self.model.generate(**inputs, **gen_kwargs)
            new_tokens = out[:, inputs["input_ids"].shape[1] :]
            for i, reply in zip(batch, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
                replies[i] = reply
        return replies

    def true_prob(self, prompts: list[str]) -> list[float]:
        return [row[0] for row in self.first_token_probs(prompts, [self.true_token_id])]

    @torch.no_grad()
    def first_token_probs(self, prompts: list[str], token_ids: list[int]) -> list[list[float]]:
        """P(first generated token = t) for each of ``token_ids`` on each raw prompt, one forward pass per batch
        (``true_prob`` is this on the ``True`` token; several ids score other decision tokens at no extra cost)."""
        probs: list[list[float] | None] = [None] * len(prompts)
        for batch in self.plan_batches(prompts):
            inputs = self._encode([prompts[i] for i in batch])
            with self._lock:
                out = self.model.generate(
                    **inputs,
                    max_new_tokens=1,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    output_scores=True,
                    return_dict_in_generate=True,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            scores = out.scores[0].float().softmax(dim=-1)[:, token_ids]
            for i, row in zip(batch, scores.cpu().tolist(), strict=True):
                probs[i] = row
        return probs
