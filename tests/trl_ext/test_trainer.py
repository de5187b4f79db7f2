"""trl_ext.trainer helpers: character offsets of generated tokens, so rewards land on the token holding ``[``."""

from __future__ import annotations

import pytest
import torch

from trl_ext import rewards as R
from trl_ext.env import parse_actions
from trl_ext.trainer import token_char_ends


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
