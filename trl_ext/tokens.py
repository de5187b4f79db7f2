"""Token ids of crawler sessions: chat prompts, value read-out prompts, and the characters each reply token covers.

The trainer tokenises through one ``SessionPrompts`` object chosen at construction (``trl_ext.released.RightCutPrompts``
for the released cut); ``token_char_ends`` maps the character positions the environment prices onto reply tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trl_ext.env import Session


def chat_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as the user turn of a chat, followed by the generation prompt."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class SessionPrompts:
    """Prompt ids of a session (cut on the left at ``max_prompt_length``) and of its value read-out: the same chat
    plus ``[``, the token a reply opens with, cut on the left at ``value_max_length`` and read at that ``[``."""

    tokenizer: object
    max_prompt_length: int
    value_max_length: int

    def chat_ids(self, prompt: str, limit: int) -> list[int]:
        return chat_ids(self.tokenizer, prompt)[-limit:]

    def prompt_ids(self, session: Session) -> list[int]:
        return self.chat_ids(session.prompt, self.max_prompt_length)

    def value_ids(self, session: Session) -> tuple[list[int], int]:
        """The value prompt of a session and the index the value is read at."""
        bracket = self.tokenizer("[", add_special_tokens=False)["input_ids"]
        return (self.chat_ids(session.prompt, self.max_prompt_length) + bracket)[-self.value_max_length :], -1


def token_char_ends(tokenizer, ids: Sequence[int]) -> list[int]:
    """End offset (exclusive) in ``decode(ids, skip_special_tokens=True)`` of each token; special tokens add 0.

    Fast path: re-encode the decoded text with an offset mapping and use it when it gives back the same tokens;
    otherwise decode every prefix (a token that ends inside a multi-byte character adds nothing until the character
    is complete). Non-decreasing by construction.
    """
    ids = [int(i) for i in ids]
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    plain = [i for i in ids if i not in special]
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] == plain:
            it = iter(end for _, end in enc["offset_mapping"])
            ends, last = [], 0
            for i in ids:
                last = last if i in special else max(last, next(it))
                ends.append(last)
            return ends
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offset mapping
        pass
    ends, last = [], 0
    for t in range(len(ids)):
        prefix = tokenizer.decode(ids[: t + 1], skip_special_tokens=True)
        if not prefix.endswith("\ufffd"):
            last = max(last, min(len(prefix), len(text)))
        ends.append(last)
    return ends
