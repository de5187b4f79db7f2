"""Character offsets of generated tokens (rewards land on the token holding ``[``) and the rollout sampling config."""

from __future__ import annotations

import pytest
import torch

from trl_ext import rewards as R
from trl_ext.env import parse_actions
from trl_ext.tokens import token_char_ends


@pytest.fixture(scope="module")
def tok():
    from pasa.demo import build_tiny_tokenizer

    return build_tiny_tokenizer()


def check_ends(tok, ids):
    ends = token_char_ends(tok, ids)
    text = tok.decode(ids, skip_special_tokens=True)
    assert len(ends) == len(ids) and ends == sorted(ends) and ends[-1] == len(text)
    for t in range(len(ids)):
        prefix = tok.decode(ids[: t + 1], skip_special_tokens=True)
        if not prefix.endswith("\ufffd"):
            assert text[: ends[t]] == prefix
    return ends, text


@pytest.mark.parametrize(
    "reply",
    [
        "[Search] graph neural networks\n[Search] message passing\n[StopSearch]",
        "[Expand] 2 Related Work\n[StopExpand]",
        "[Search] réseaux de neurones 图神经网络\n[StopSearch]",  # multi-byte characters
    ],
)
def test_token_char_ends_canonical_tokenisation(tok, reply):
    ids = tok(reply, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ends, text = check_ends(tok, ids)
    assert text == reply and ends[-1] == ends[-2]  # EOS adds no character


def test_token_char_ends_non_canonical_tokenisation_and_reward_placement(tok):
    # sampling can produce token sequences the tokenizer would not produce itself: piece-wise encoding here
    pieces = ["[Sea", "rch] q", "1\n", "[", "Search] q2\n[", "StopSearch]"]
    ids = [i for p in pieces for i in tok(p, add_special_tokens=False)["input_ids"]]
    assert ids != tok("".join(pieces), add_special_tokens=False)["input_ids"]
    ends, text = check_ends(tok, ids)
    chars = [end_char for _, _, end_char in parse_actions(text, "search")]
    placed = R.place_rewards_on_tokens(torch.tensor(ends), torch.tensor(chars), torch.tensor([1.0, 2.0]))
    for t in placed.nonzero().flatten().tolist():
        start = ends[t - 1] if t else 0
        assert "[" in text[start : ends[t]]  # the reward sits on a token that holds an action's closing `[`
    assert placed.sum().item() == pytest.approx(3.0)


def _sampled_and_recomputed_logprobs(model, tok, generate_kwargs):
    """Log-probs of the sampled tokens as the sampler saw them (processed scores) and as the trainer recomputes
    them (a forward pass, logits / temperature)."""
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "graph"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), output_scores=True, return_dict_in_generate=True,
        **generate_kwargs,
    )  # fmt: skip
    reply = out.sequences[0, ids.shape[1] :]
    n = len(out.scores)
    sampled = torch.stack([torch.log_softmax(out.scores[t][0].float(), -1)[reply[t]] for t in range(n)])
    with torch.no_grad():
        logits = model(input_ids=out.sequences).logits[0, ids.shape[1] - 1 : ids.shape[1] - 1 + n].float()
    recomputed = _logprobs_of(logits / (0.7 + 1e-7), reply[:n])
    return sampled, recomputed


def _logprobs_of(logits, tokens):
    return torch.log_softmax(logits, -1).gather(-1, tokens[:, None]).squeeze(-1)


def test_sampling_distribution_is_the_one_the_old_logprobs_score(tiny_checkpoint):
    """A checkpoint's generation_config (repetition_penalty, top_k ...) must not act while
    sampling, since the old log-probs are recomputed from logits / temperature alone."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext.modeling import generation_config_of, rollout_generation_config

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    model.generation_config.repetition_penalty = 1.3  # as a checkpoint may ship it
    model.generation_config.top_k = 5
    config = rollout_generation_config(SimpleNamespace(temperature=0.7), tok, max_new_tokens=16)
    with generation_config_of(model, config):
        sampled, recomputed = _sampled_and_recomputed_logprobs(model, tok, {"generation_config": config})
    assert model.generation_config.repetition_penalty == 1.3  # restored afterwards
    assert len(sampled) > 3
    torch.testing.assert_close(sampled, recomputed, rtol=0, atol=1e-4)

    # the released/previous call (sampling kwargs only) let the checkpoint's processors in: the test can fail
    kwargs = {"do_sample": True, "temperature": 0.7 + 1e-7, "top_k": 0, "top_p": 1.0, "max_new_tokens": 16}
    sampled, recomputed = _sampled_and_recomputed_logprobs(model, tok, kwargs)
    assert (sampled - recomputed).abs().max() > 1e-3
