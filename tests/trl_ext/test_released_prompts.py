"""Released prompt truncation and value read-out (``truncate_prompts_right``) in both modes, on the tiny tokenizer.

The value model is faked by one that returns each position's token id, so the value read is the token it was read at.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pasa.paper import Paper
from trl_ext.config import SessionPPOConfig
from trl_ext.env import Episode, Session
from trl_ext.rollout import session_prompts
from trl_ext.trainer import SessionPPOTrainer


@pytest.fixture(scope="module")
def tok():
    from pasa.demo import build_tiny_tokenizer

    return build_tiny_tokenizer()


class TokenIdValues:
    def values(self, input_ids, attention_mask, position_ids):
        return input_ids.float()


def trainer(tok, tmp_path, **overrides):
    t = SessionPPOTrainer.__new__(SessionPPOTrainer)  # only the tokenisation helpers are used
    t.args = SessionPPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **overrides)
    t.processing_class = tok
    t.prompts = session_prompts(tok, t.args)  # chosen in __init__, which this test skips
    t.accelerator = SimpleNamespace(device=torch.device("cpu"))
    t._times = {}  # per-update timings the trainer keeps
    return t


def session(abstract_words: int) -> Session:
    paper = Paper("0001.00001", "A Paper", " ".join(["word"] * abstract_words), {"1 Intro": []})
    prompt = f'You are conducting research on `q`. Abstract: {paper.abstract}\nSections: ["1 Intro"]'
    return Session("expand", Episode("q"), prompt, paper)


@pytest.mark.parametrize("fork", [False, True])
def test_value_read_at_the_bracket_unless_cut(tok, tmp_path, fork):
    t = trainer(tok, tmp_path, truncate_prompts_right=fork, value_max_length=120)
    bracket = tok.convert_tokens_to_ids("[")
    short, long = session(2), session(400)
    values = t._session_values(TokenIdValues(), [short, long])
    if fork:
        # chat(user, assistant "[") cut on the right, read at index −2. The Qwen2.5 template (the tiny tokenizer's)
        # ends "[<|im_end|>\n", so −2 is the <|im_end|> after the `[` (the fork's comment shows a template ending at
        # <|im_end|>, where −2 is the `[`); the long prompt loses its end and is read inside the abstract
        ids, read = t.prompts.value_ids(short)
        assert read == -2 and ids[-3:] == [bracket, tok.convert_tokens_to_ids("<|im_end|>"), ids[-1]]
        assert values[0] == ids[-2]
        ids, _ = t.prompts.value_ids(long)
        assert len(ids) == 120 and values[1] == ids[-2] != bracket
    else:
        assert values == [bracket, bracket]  # the left cut keeps the `[` the value is read at


@pytest.mark.parametrize("fork", [False, True])
def test_expand_prompt_cut_side(tok, tmp_path, fork):
    t = trainer(tok, tmp_path, truncate_prompts_right=fork, value_max_length=40, max_prompt_length=60)
    full = t.prompts.chat_ids(session(200).prompt, 10**6)
    ids = t.prompts.prompt_ids(session(200))
    assert ids == (full[:40] if fork else full[-60:])  # released: the generation prompt is cut away
    search = Session("search", Episode("q " * 100), "User Query: " + "q " * 100)
    assert t.prompts.prompt_ids(search) == t.prompts.chat_ids(
        search.prompt, 60
    )  # search prompts: cut on the left in both
