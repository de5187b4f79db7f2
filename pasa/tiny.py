"""``pasa tiny``: a tiny replica of the released layout, so every documented command runs on CPU in seconds.

Launch lines::

    pasa tiny --output_dir /tmp/pasa-tiny
    cd /tmp/pasa-tiny && pasa run --query "retrieval-augmented generation" --crawler_path checkpoints/pasa-7b-crawler

It writes, under ``--output_dir``, the paths the README's commands and the recipes use (README "Data and
checkpoints"), filled with stand-ins:

- ``checkpoints/pasa-7b-crawler``, ``pasa-7b-selector``, ``Qwen2.5-7B-Instruct``: tiny **random** Qwen2 models with
  a Qwen-style tokenizer (``pasa.demo.build_tiny_checkpoint``): they load and generate like the real ones, but
  their outputs mean nothing, except that the crawler is scripted (:func:`script_checkpoint`: every reply is
  :data:`CRAWLER_REPLY`, two searches and one expansion), so runs crawl papers in seconds;
- ``data/paper_database/cs_paper_2nd.zip`` + ``id2paper.json`` (released format) from the 16 embedded demo papers,
  and its offline ``search_index/``;
- ``data/AutoScholarQuery/{train,dev,test}.jsonl``, ``data/RealScholarQuery/test.jsonl``: hand-written queries whose
  answers are demo papers (released record format, ``source_meta.published_time``);
- ``data/sft_crawler/train.jsonl``, ``data/sft_selector/{train,test}.jsonl``: chat records in the released format;
- ``scripts``, ``configs``, ``bench``, ``tests``, ``run_paper_agent.py``: links to this repository's, so ``python scripts/sft.py --config
  configs/recipes/sft_selector_smoke.yaml`` runs from inside the folder as written.

A file ``PASA_TINY`` marks the folder; ``pasa tiny`` refuses to write into a folder with ``checkpoints/`` or
``data/`` that it did not make.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

MARKER = "PASA_TINY"
CHECKPOINTS = ("Qwen2.5-7B-Instruct", "pasa-7b-selector", "pasa-7b-crawler")
REPO_LINKS = ("scripts", "configs", "bench", "tests", "run_paper_agent.py")  # so documented paths resolve
PUBLISHED = "20250301"
# What the tiny crawler always replies: two searches, one expansion (a section name of some demo papers), a stop.
# The search parser reads the [Search] lines, the expand parser the [Expand] line, in every session.
CRAWLER_REPLY = "[Search] retrieval augmented generation\n[Search] graph neural networks\n[Expand] 2 Related Work\n[Stop]"  # after every demo paper: the end date (published - 7 days) keeps them all

# (question, answer titles): the answers are demo papers (pasa/demo_data/papers.jsonl)
QUERIES: list[tuple[str, list[str]]] = [
    (
        "Give me papers about retrieval-augmented generation for language models",
        [
            "Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks",
            "Dense Passage Retrieval for Open-Domain Question Answering",
            "REALM: Retrieval-Augmented Language Model Pre-Training",
            "Improving language models by retrieving from trillions of tokens",
        ],
    ),
    (
        "Which works propose graph neural networks with attention or message passing?",
        [
            "Graph Attention Networks",
            "Neural Message Passing for Quantum Chemistry",
            "Semi-Supervised Classification with Graph Convolutional Networks",
        ],
    ),
    (
        "Find papers on training language models with reinforcement learning",
        [
            "Proximal Policy Optimization Algorithms",
            "Training language models to follow instructions with human feedback",
        ],
    ),
    (
        "Papers about LLM agents that search and reason with tools",
        [
            "ReAct: Synergizing Reasoning and Acting in Language Models",
            "PaSa: An LLM Agent for Comprehensive Academic Paper Search",
        ],
    ),
    (
        "Transformer pre-training of language representations",
        [
            "Attention Is All You Need",
            "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
        ],
    ),
    (
        "Surveys of graph neural networks and inductive graph representation learning",
        ["A Comprehensive Survey on Graph Neural Networks", "Inductive Representation Learning on Large Graphs"],
    ),
]
SPLITS = {  # file under data/ -> indices into QUERIES
    "AutoScholarQuery/train.jsonl": [0, 1, 2, 3],
    "AutoScholarQuery/dev.jsonl": [4, 5],
    "AutoScholarQuery/test.jsonl": [0, 4, 5],
    "RealScholarQuery/test.jsonl": [1, 2, 3],
}


def _query_record(question: str, answers: list[str], ids: dict[str, str]) -> dict:
    return {
        "question": question,
        "answer": answers,
        "answer_arxiv_id": [ids[t] for t in answers],
        "source_meta": {"published_time": PUBLISHED},
    }


def _chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def crawler_records(question: str, answers: list[str], papers) -> list[dict]:
    """Crawler SFT sessions (released format): one search session, one expand session per paper with sections."""
    from pasa.paper import title_key
    from pasa.prompts import render_expand_prompt, render_search_prompt

    words = question.rstrip("?").split()
    queries = [question.rstrip("?"), " ".join(words[len(words) // 2 :])]
    out = [_chat(render_search_prompt(question), "".join(f"[Search] {q}\n" for q in queries) + "[StopSearch]")]
    keys = {title_key(t) for t in answers}
    for p in papers:
        if not p.sections:
            continue
        chosen = [s for s, cited in p.sections.items() if any(title_key(t) in keys for t in cited)]
        reply = "".join(f"[Expand] {s}\n" for s in chosen) + "[StopExpand]"
        out.append(_chat(render_expand_prompt(question, p.title, p.abstract, list(p.sections)), reply))
    return out


def selector_records(question: str, answers: list[str], papers) -> list[dict]:
    """Selector SFT records (released format: the raw prompt as the user turn, ``True``/``False`` + a reason)."""
    from pasa.prompts import render_select_prompt

    out = []
    for p in papers:
        relevant = p.title in answers
        reason = "It addresses the query directly." if relevant else "It is about another topic."
        out.append(_chat(render_select_prompt(question, p.title, p.abstract), f"{relevant}\nReason: {reason}"))
    return out


def _write_jsonl(path: str, records: list[dict]) -> None:
    from pasa.io import write_text_atomic

    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def script_checkpoint(path: str, reply: str = CRAWLER_REPLY, bias: float = 100.0) -> None:
    """Make a tiny checkpoint answer every chat prompt with ``reply`` (then EOS), greedy or sampled.

    Its ``generation_config.sequence_bias`` adds ``bias`` to each next token of ``reply`` given the shortest run of
    preceding tokens (from the chat template's generation prompt on) that predicts it unambiguously. A random tiny
    crawler otherwise babbles 512 tokens per prompt (~17 s a query on a small CPU) and never emits an action; this
    one searches and expands through the real HF backend, so documented commands exercise the whole loop.
    """
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(path)
    config = GenerationConfig.from_pretrained(path)
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False
    )
    prefix = tokenizer.encode(prompt, add_special_tokens=False)[-3:]  # "<|im_start|>assistant\n"
    seq = prefix + tokenizer.encode(reply, add_special_tokens=False) + [eos]
    sequence_bias = []
    for i in range(len(prefix), len(seq)):
        for length in range(1, i + 1):
            context = seq[i - length : i]
            successors = {seq[j] for j in range(length, len(seq)) if seq[j - length : j] == context}
            if len(successors) == 1:
                break
        sequence_bias.append([[*context, seq[i]], bias])
    config.sequence_bias = sequence_bias
    config.save_pretrained(path)


def _repo_root() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root if os.path.isdir(os.path.join(root, "scripts")) else None


def build_tiny(output_dir: str, force: bool = False) -> dict[str, str]:
    """Write the tiny layout under ``output_dir``; returns {what: path}. Raises ``FileExistsError`` (see module)."""
    from pasa.demo import build_tiny_checkpoint, demo_papers
    from pasa.tools.local_search import LocalSearchIndex
    from pasa.tools.paper_db import build_paper_db

    marker = os.path.join(output_dir, MARKER)
    if not os.path.exists(marker) and any(
        os.path.exists(os.path.join(output_dir, d)) for d in ("checkpoints", "data")
    ):
        raise FileExistsError(f"{output_dir} has checkpoints/ or data/ not made by `pasa tiny`; pick another folder")
    os.makedirs(output_dir, exist_ok=True)
    with open(marker, "w", encoding="utf-8") as f:
        f.write("Made by `pasa tiny`: tiny random models and toy data, for smoke runs only.\n")
    out: dict[str, str] = {}

    first = os.path.join(output_dir, "checkpoints", CHECKPOINTS[0])
    for name in CHECKPOINTS:
        path = os.path.join(output_dir, "checkpoints", name)
        if force and os.path.exists(path):
            shutil.rmtree(path)
        if not os.path.exists(os.path.join(path, "config.json")):
            if path == first:
                build_tiny_checkpoint(path)
            else:
                shutil.copytree(first, path, dirs_exist_ok=True)
                if name == "pasa-7b-crawler":
                    script_checkpoint(path)
        out[name] = path

    papers = demo_papers()
    ids = {p.title: p.arxiv_id for p in papers}
    db_dir = os.path.join(output_dir, "data", "paper_database")
    zip_path, id2paper = os.path.join(db_dir, "cs_paper_2nd.zip"), os.path.join(db_dir, "id2paper.json")
    build_paper_db(papers, zip_path, id2paper)
    LocalSearchIndex.from_paper_db(zip_path, id2paper, os.path.join(db_dir, "search_index"))
    out.update(paper_db=zip_path, id2paper=id2paper, search_index=os.path.join(db_dir, "search_index"))

    for rel, indices in SPLITS.items():
        path = os.path.join(output_dir, "data", rel)
        _write_jsonl(path, [_query_record(*QUERIES[i], ids) for i in indices])
        out[rel] = path
    train = [QUERIES[i] for i in SPLITS["AutoScholarQuery/train.jsonl"]]
    test = [QUERIES[i] for i in SPLITS["AutoScholarQuery/dev.jsonl"]]
    sft = {
        "sft_crawler/train.jsonl": [r for q, a in train for r in crawler_records(q, a, papers)],
        "sft_selector/train.jsonl": [r for q, a in train for r in selector_records(q, a, papers)],
        "sft_selector/test.jsonl": [r for q, a in test for r in selector_records(q, a, papers)],
    }
    for rel, records in sft.items():
        path = os.path.join(output_dir, "data", rel)
        _write_jsonl(path, records)
        out[rel] = path

    root = _repo_root()
    if root is not None:
        for name in REPO_LINKS:
            link = os.path.join(output_dir, name)
            if os.path.islink(link):
                os.unlink(link)
            if not os.path.exists(link):
                os.symlink(os.path.join(root, name), link)
    return out


def main(argv: list[str] | None = None) -> int:
    from pasa.flags import make_argparser

    parser = make_argparser(
        "pasa tiny",
        example="pasa tiny --output_dir /tmp/pasa-tiny && cd /tmp/pasa-tiny",
        description="Build tiny random checkpoints, a tiny paper DB and query/SFT files in the released layout "
        "(README 'Data and checkpoints'), for CPU smoke runs of every documented command.",
    )
    parser.add_argument("--output_dir", default="/tmp/pasa-tiny", help="Folder to fill.")
    parser.add_argument("--force", action="store_true", help="Rebuild the tiny checkpoints too.")
    args = parser.parse_args(argv)
    try:
        out = build_tiny(args.output_dir, force=args.force)
    except FileExistsError as err:
        print(f"pasa tiny: {err}", file=sys.stderr)
        return 2
    print(f"tiny artifacts in {os.path.abspath(args.output_dir)} (random models: outputs mean nothing):")
    for what, path in out.items():
        print(f"  {what:28s} {os.path.relpath(path, args.output_dir)}")
    print(f"next: cd {args.output_dir} and run any command of the README (e.g. pasa run --query '...')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
