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


# Printed by `pasa demo` after what it ran: commands that work as written (the tiny folder's run is a test).
DEMO_NEXT_STEPS = """\
Next steps:
  pasa tiny --output_dir /tmp/pasa-tiny && cd /tmp/pasa-tiny    # tiny random models and data in the released layout
  pasa run --query "graph neural networks" --output_dir results/one    # the whole pipeline on them, CPU, seconds
Real runs: `pasa download --only models,data` fetches the released PaSa-7B checkpoints and data; search is Google
when SERPER_API_KEY is set (export SERPER_API_KEY=..., the paper's setting), else offline over the paper database:
  pasa run --query "..." --crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector \\
      --output_dir results/pasa-7b"""


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


# -- the demo agent (`pasa demo`, `pasa serve --demo`) --------------------------------------------------------
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


# -- pasa demo ------------------------------------------------------------------------------------------------------
DEMO_QUERY = "Give me papers about retrieval-augmented generation for language models"


def demo_main(argv: list[str] | None = None) -> int:
    """``pasa demo``: the whole loop offline, on a tiny model built on the spot and the embedded paper set."""
    import tempfile

    from pasa.flags import check_flags, make_argparser

    parser = make_argparser(prog="pasa demo", example="pasa demo --query '...'", description=demo_main.__doc__)
    parser.add_argument("--query", default=DEMO_QUERY, help="The user query.")
    parser.add_argument(
        "--output_dir",
        default=os.path.join(tempfile.gettempdir(), "pasa-demo"),
        help="Tiny checkpoint and result tree go here.",
    )
    parser.add_argument("--log_level", default="WARNING", help="Logging level.")
    args = parser.parse_args(check_flags(argv, parser))

    from pasa.batch import output_path, print_selected, print_summary, run_queries
    from pasa.paper import loads_tree
    from pasa.queries import QueryItem
    from pasa.runner import setup_logging

    setup_logging(args.log_level)
    ckpt = os.path.join(args.output_dir, "tiny-qwen2")
    agent = build_demo_agent(ckpt)
    papers = agent.source.papers

    print("PaSa demo -- what runs here:")
    print("  crawler : a rule-based stand-in (ScriptedLLM): searches the query and its halves, expands 2 sections")
    print(f"  selector: a tiny RANDOM Qwen2 ({ckpt}) through the real HF backend: P(True) is computed for real,")
    print("            but the scores are meaningless (untrained weights)")
    print(f"  papers  : {len(papers)} embedded papers (pasa/demo_data), bag-of-words search, in-memory citations")
    item = QueryItem(index=0, question=args.query)
    out = os.path.join(args.output_dir, "results")
    if os.path.exists(output_path(out, item)):  # the demo always runs: no resume
        os.unlink(output_path(out, item))
    results = run_queries(agent, [item], out, progress=False)
    print_summary(results, out)
    if results[0].status != "done":
        return 1
    with open(output_path(out, item), encoding="utf-8") as f:
        print_selected(loads_tree(f.read()))
    print(f"result tree: {output_path(out, item)}")
    print(DEMO_NEXT_STEPS)
    return 0


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
