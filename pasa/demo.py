"""Tiny, self-contained stand-ins for the real checkpoints and data: a Qwen2-architecture model with a byte-level
BPE tokenizer built in-process, and a small embedded paper collection.

Used by the test harness (``tests/conftest.py``) and by ``pasa demo`` / ``run_paper_agent.py --demo``, so that the
whole loop runs on a fresh machine with no download. The tokenizer mirrors what the released code relies on:
Qwen special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``), a Qwen2.5-style chat template, and
``True``/``False``/``[``/``]`` as single tokens.
"""

from __future__ import annotations

import json
import os
from importlib import resources

from pasa.paper import Paper

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5-Instruct's template, minus tools: a default system turn when none is given.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
WORD_TOKENS = ["True", "False"]


def demo_papers() -> list[Paper]:
    """The embedded demo collection (``pasa/demo_data/papers.jsonl``)."""
    text = resources.files("pasa").joinpath("demo_data/papers.jsonl").read_text(encoding="utf-8")
    papers = []
    for line in text.splitlines():
        if line.strip():
            r = json.loads(line)
            papers.append(
                Paper(
                    r["arxiv_id"], r["title"], r["abstract"], r.get("sections"), "SearchFrom:demo", r.get("published")
                )
            )
    return papers


def _training_corpus() -> list[str]:
    from pasa import prompts

    corpus = [prompts.GENERATE_QUERY, prompts.SELECT_SECTION, prompts.GET_SELECTED, prompts.GET_VALUE]
    corpus += ["[Search] graph neural networks survey\n[Search] message passing\n[StopSearch]"]
    corpus += ["[Expand] 2 Related Work\n[StopExpand]", "Decision: True\nReason: relevant.", "Decision: False"]
    for p in demo_papers():
        corpus += [p.title, p.abstract, " ".join(p.sections or {})]
    return corpus


def build_tiny_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained in-process, Qwen-style (no hub, no files read)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        padding_side="left",
        model_max_length=4096,
    )
    # Qwen's vocabulary has "True"/"False" as single tokens; the selector's P(True) depends on it.
    fast.add_tokens([t for t in WORD_TOKENS if fast.convert_tokens_to_ids(t) in (None, fast.unk_token_id)])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_checkpoint(path: str, seed: int = 0, hidden_size: int = 16, num_layers: int = 2):
    """Save a tiny random Qwen2ForCausalLM and its tokenizer to ``path`` with ``save_pretrained``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# -- the demo agent (`pasa serve --demo`) ------------------------------------------------------------------------
DEMO_CONFIG = {"search_papers": 3, "expand_papers": 3}  # small enough for seconds on a CPU


def demo_crawler_reply(prompt: str) -> str:
    """The rule-based stand-in crawler: searches the query and its two halves, expands a paper's first 2 sections."""
    import re

    from pasa.llm.scripted import prompt_user_query

    query = prompt_user_query(prompt)
    if query is not None:
        words = re.findall(r"[\w-]+", query)
        half = len(words) // 2
        queries = [" ".join(words), " ".join(words[:half]), " ".join(words[half:])]
        return "".join(f"[Search] {q}\n" for q in queries if q) + "[StopSearch]"
    names = re.findall(r"'([^']*)'", prompt.rsplit("Sections:", 1)[-1])
    return "".join(f"[Expand] {n}\n" for n in names[:2]) + "[StopExpand]"


def build_demo_agent(checkpoint_dir: str, selector_llm=None):
    """The demo agent: the stand-in crawler, a tiny random Qwen2 selector (built in ``checkpoint_dir`` when absent,
    loaded through the HF backend) unless ``selector_llm`` is given, and the embedded papers in memory."""
    from pasa.agent import AgentConfig, PaperAgent
    from pasa.crawler import Crawler
    from pasa.llm.scripted import ScriptedLLM
    from pasa.selector import Selector
    from pasa.tools.sources import InMemoryPaperSource

    if selector_llm is None:
        from pasa.llm.hf import HFLLM, HFLLMConfig

        if not os.path.exists(os.path.join(checkpoint_dir, "config.json")):
            build_tiny_checkpoint(checkpoint_dir)
        selector_llm = HFLLM(HFLLMConfig(checkpoint_dir, device="cpu", max_new_tokens=16))
    return PaperAgent(
        Crawler(ScriptedLLM(reply_fn=demo_crawler_reply)),
        Selector(selector_llm),
        InMemoryPaperSource(demo_papers()),
        AgentConfig(**DEMO_CONFIG),
    )
