"""The HF backend on the tiny in-process Qwen2 checkpoint, loaded exactly as a real checkpoint would be."""

import pytest
import torch

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.demo import demo_papers
from pasa.llm import load_llm
from pasa.llm.hf import HFLLM, HFLLMConfig
from pasa.llm.scripted import ScriptedLLM
from pasa.prompts import render_select_prompt
from pasa.selector import Selector
from pasa.tools.sources import InMemoryPaperSource


@pytest.fixture(scope="module")
def llm(tiny_checkpoint):
    return HFLLM(
        HFLLMConfig(tiny_checkpoint, batch_size=2, max_new_tokens=8, device="cpu", attn_implementation="sdpa")
    )


def test_loads_through_auto_classes(llm):
    assert type(llm.model).__name__ == "Qwen2ForCausalLM"
    assert llm.tokenizer.padding_side == "left"
    assert llm.tokenizer.convert_ids_to_tokens(llm.true_token_id) == "True"


def test_true_prob_is_softmax_over_full_vocab_of_raw_prompt(llm):
    prompts = [
        render_select_prompt("q", "A short title", "abs"),
        render_select_prompt("a longer query " * 5, "T", "x"),
    ]
    probs = llm.true_prob(prompts)
    # reference: one unpadded forward pass per raw prompt, softmax over the whole vocabulary at the last position
    for prompt, p in zip(prompts, probs):
        ids = llm.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = llm.model(ids).logits[0, -1]
        assert p == pytest.approx(logits.float().softmax(-1)[llm.true_token_id].item(), rel=1e-4)
    assert all(0.0 < p < 1.0 for p in probs)


def test_first_token_probs_scores_several_tokens_in_one_pass(llm):
    prompts = [
        render_select_prompt("q", "A short title", "abs"),
        render_select_prompt("a longer query " * 5, "T", "x"),
    ]
    false_id = llm.tokenizer.encode("False", add_special_tokens=False)[0]
    rows = llm.first_token_probs(prompts, [llm.true_token_id, false_id])
    for prompt, (p_true, p_false) in zip(prompts, rows, strict=True):
        ids = llm.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            probs = llm.model(ids).logits[0, -1].float().softmax(-1)
        assert p_true == pytest.approx(probs[llm.true_token_id].item(), rel=1e-4)
        assert p_false == pytest.approx(probs[false_id].item(), rel=1e-4)
    assert [row[0] for row in rows] == pytest.approx(llm.true_prob(prompts), rel=1e-6)


def test_batched_generation_matches_one_by_one(llm):
    prompts = ["short", "a much longer prompt with many more tokens in it", "mid length prompt"]
    batched = llm.generate(prompts)  # batch_size=2: one padded batch of two + one of one
    single = [llm.generate([p])[0] for p in prompts]
    assert batched == single
    assert all(isinstance(r, str) for r in batched)


def test_generation_uses_chat_template(llm):
    text = llm.apply_chat("  hello  ")
    assert text.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")


def test_missing_true_token_fails_clearly(tiny_checkpoint):
    with pytest.raises(ValueError, match="no single 'Yes!' token"):
        HFLLM(HFLLMConfig(tiny_checkpoint, device="cpu", true_token="Yes!"))


def test_real_loop_on_tiny_model(tiny_checkpoint):
    """Generation (crawler) and P(True) (selector) through the tiny model inside the agent loop."""
    llm = load_llm(tiny_checkpoint, max_new_tokens=16, device="cpu")
    papers = demo_papers()
    source = InMemoryPaperSource(papers)

    # 1. both agents on the tiny model: the crawler's reply is whatever the random weights generate
    calls = []

    class Spy:
        def generate(self, prompts, chat=True, sample=False):
            calls.append(("generate", len(prompts)))
            return llm.generate(prompts, chat, sample)

        def true_prob(self, prompts):
            calls.append(("true_prob", len(prompts)))
            return llm.true_prob(prompts)

    root = PaperAgent(Crawler(Spy()), Selector(Spy()), source, AgentConfig(expand_layers=1)).run("retrieval")
    assert calls[0] == ("generate", 1)
    assert root.extra["touch_ids"] == [n.arxiv_id for n in root.iter_nodes()]

    # 2. a scripted crawler that surely acts, the tiny model as selector: every score is the model's P(True)
    crawler = Crawler(
        ScriptedLLM(replies={"retrieval": "[Search] retrieval\n[StopSearch]"}, default_reply="[StopExpand]")
    )
    root = PaperAgent(crawler, Selector(llm), source, AgentConfig(expand_layers=1, search_papers=3)).run("retrieval")
    nodes = list(root.iter_nodes())
    assert len(nodes) == 3
    expected = llm.true_prob([render_select_prompt("retrieval", n.title, n.abstract) for n in nodes])
    assert [n.select_score for n in nodes] == pytest.approx(expected, rel=1e-5)


def test_plan_batches_sorts_by_length_and_respects_cap_and_token_budget(tiny_checkpoint):
    llm = HFLLM(HFLLMConfig(tiny_checkpoint, batch_size=3, max_batch_tokens=0, device="cpu"))
    texts = ["a " * n for n in (5, 40, 12, 41, 3, 39, 13)]
    lengths = llm._lengths(texts)
    batches = llm.plan_batches(texts)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert all(len(b) <= 3 for b in batches)
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    # a token budget splits batches by padded size
    llm.config.max_batch_tokens = 2 * max(lengths)
    assert all(len(b) * lengths[b[0]] <= 2 * max(lengths) for b in llm.plan_batches(texts))
    assert len(llm.plan_batches(texts)[0]) == 2  # the longest prompts: two fit; shorter ones pack three
    # generation counts its new tokens in the budget
    assert all(len(b) == 1 for b in llm.plan_batches(texts, extra_tokens=max(lengths)))


def test_sorted_batches_keep_the_input_order(llm):
    prompts = [render_select_prompt("q" * n, f"Title {n}", "abs " * n) for n in (1, 30, 5, 60, 2)]
    batched = llm.true_prob(prompts)
    single = [llm.true_prob([p])[0] for p in prompts]
    assert batched == pytest.approx(single, rel=1e-4)
    replies = llm.generate(["short", "a much longer prompt with many more tokens in it", "mid length prompt"])
    assert replies == [
        llm.generate([p])[0]
        for p in ["short", "a much longer prompt with many more tokens in it", "mid length prompt"]
    ]
