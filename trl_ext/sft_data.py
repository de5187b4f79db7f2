"""SFT data for the Selector and the Crawler (DESIGN §1.3): record checks, conversion for trl, selector targets.

[pure] except ``load_sft_examples`` (reads jsonl). Needs neither torch nor trl.

Accepted jsonl records (one JSON object per line):

* **chat** -- the released ``sft_selector/*.jsonl`` and ``sft_crawler/train.jsonl``:
  ``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}``; an optional
  leading ``system`` turn and earlier turns are allowed, the last turn must be the assistant's.
* **prompt/completion**: ``{"prompt": str, "completion": str}``.

Other keys (``label``, ``question``, ``session`` ... written by our builders) are ignored.

Loss on the assistant part only. The released recipe (hyc2026/trl ``examples/scripts/sft.py``) rendered
``messages`` with the tokenizer's chat template and used ``DataCollatorForCompletionOnlyLM`` with the response
template ``"<|im_start|>assistant\\n"``: every token up to and including the last ``<|im_start|>assistant\\n`` had
label -100, so the loss covered the assistant content, ``<|im_end|>`` and the newline after it. trl 1.x does the same
with a *conversational prompt/completion* example (``prompt = messages[:-1]``, ``completion = [messages[-1]]``): the
prompt is rendered with ``add_generation_prompt=True`` (ending in ``<|im_start|>assistant\\n``) and
``completion_only_loss`` masks it. Unlike ``assistant_only_loss`` this needs no ``{% generation %}`` markers, which
Qwen2.5's template lacks.

``prompt_format="raw"`` instead trains on the user content as plain text followed by the assistant content and EOS,
with no chat template: the form in which the released inference code feeds the Selector prompt (raw text ending in
``Decision:``). The released Selector was trained in chat form (see docs/sft.md, "train/inference mismatch").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

PROMPT_FORMATS = ("chat", "raw")
ROLES = ("system", "user", "assistant")
# The released collator's response template (hyc2026/trl examples/scripts/sft.py).
RESPONSE_TEMPLATE = "<|im_start|>assistant\n"
MAX_REPORTED_ERRORS = 5

# A selector reply starts with its decision: "True\nReason: ..." (continuing the prompt's "Decision:"), or
# "Decision: True\nReason: ..." when a model restates the field name.
SELECTOR_DECISION_RE = re.compile(r"^\s*(?:Decision\s*:\s*)?(True|False)\b")
SELECTOR_REASON_RE = re.compile(r"Reason\s*:\s*(.*)", flags=re.DOTALL)


class SFTRecordError(ValueError):
    """A training record of the wrong shape; the message names the file and line."""


def check_record(record: Any) -> str | None:
    """[pure] What is wrong with one record, or None when it is a valid chat or prompt/completion record.

    >>> check_record({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    >>> check_record({"prompt": "q", "completion": "a"})
    >>> check_record({"messages": [{"role": "user", "content": "q"}]})
    "the last message must be the assistant's (got role 'user')"
    >>> check_record({"text": "q"})
    "expected a 'messages' list or 'prompt' and 'completion' strings (keys: ['text'])"
    """
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list of turns"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                return f"messages[{i}] must be an object with string 'role' and 'content'"
            if m["role"] not in ROLES:
                return f"messages[{i}] has unknown role {m['role']!r} (expected one of {', '.join(ROLES)})"
        if messages[-1]["role"] != "assistant":
            return f"the last message must be the assistant's (got role {messages[-1]['role']!r})"
        if not any(m["role"] == "user" for m in messages[:-1]):
            return "no user turn before the assistant's"
        if not messages[-1]["content"].strip():
            return "the assistant's content is empty"
        return None
    if "prompt" in record or "completion" in record:
        for key in ("prompt", "completion"):
            if not isinstance(record.get(key), str):
                return f"{key!r} must be a string"
        if not record["completion"].strip():
            return "'completion' is empty"
        return None
    return f"expected a 'messages' list or 'prompt' and 'completion' strings (keys: {sorted(record)})"


def to_prompt_completion(record: dict, prompt_format: str = "chat") -> dict:
    """[pure] A valid record -> one trl prompt/completion example.

    ``chat``: conversational (``prompt`` = the turns before the last, ``completion`` = the last assistant turn);
    trl renders it with the chat template. ``raw``: plain strings, the user turns' contents joined by newlines
    (system turns dropped), as the released inference feeds the Selector prompt.

    >>> to_prompt_completion({"prompt": "Q", "completion": "A"})
    {'prompt': [{'role': 'user', 'content': 'Q'}], 'completion': [{'role': 'assistant', 'content': 'A'}]}
    >>> to_prompt_completion({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}, "raw")
    {'prompt': 'Q', 'completion': 'A'}
    """
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt_format {prompt_format!r}; expected one of {PROMPT_FORMATS}")
    if "messages" in record:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    else:
        messages = [
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": record["completion"]},
        ]
    if prompt_format == "chat":
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    prompt = "\n".join(m["content"] for m in messages[:-1] if m["role"] != "system")
    return {"prompt": prompt, "completion": messages[-1]["content"]}


def load_sft_examples(
    paths: Iterable[str], prompt_format: str = "chat", skip_bad: bool = False, limit: int | None = None
) -> list[dict]:
    """Read jsonl files into trl prompt/completion examples.

    Malformed JSON lines are logged and skipped by ``pasa.io.iter_jsonl``. Records of another shape raise
    ``SFTRecordError`` naming each file and line (the first few, and the count), unless ``skip_bad``: then each is
    logged and skipped. No examples at all is an error either way.
    """
    from pasa.io import iter_jsonl

    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt_format {prompt_format!r}; expected one of {PROMPT_FORMATS}")
    paths = list(paths)
    examples: list[dict] = []
    errors: list[str] = []
    for path in paths:
        for lineno, record in iter_jsonl(path):
            problem = check_record(record)
            if problem is not None:
                errors.append(f"{path}:{lineno}: {problem}")
                if skip_bad:
                    logger.warning("%s, skipped", errors[-1])
                continue
            examples.append(to_prompt_completion(record, prompt_format))
            if limit is not None and len(examples) >= limit:
                return examples
    if errors and not skip_bad:
        shown = "\n  ".join(errors[:MAX_REPORTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
        raise SFTRecordError(
            f"{len(errors)} record(s) are not chat ('messages') or prompt/completion records:\n  {shown}{more}\n"
            "Fix them, or pass --skip_bad_records to skip them."
        )
    if not examples:
        raise SFTRecordError(f"no training examples in {', '.join(map(repr, paths))}")
    if errors:
        logger.warning("%d bad record(s) skipped, %d examples kept", len(errors), len(examples))
    return examples


def iter_counted_jsonl(path: str, counts) -> Iterator[tuple[int, dict]]:
    """``pasa.io.iter_jsonl`` that adds every skipped line to ``counts["malformed_lines"]`` (a ``Counter``)."""
    from pasa.io import iter_jsonl

    return iter_jsonl(path, counts=counts)


# -- the Selector's target -------------------------------------------------------------------------------------
def parse_selector_decision(text: str) -> bool | None:
    """[pure] The decision at the start of a selector reply, or None.

    >>> parse_selector_decision("True\\nReason: matches.")
    True
    >>> parse_selector_decision(" Decision: False\\nReason: off topic.")
    False
    >>> parse_selector_decision("Reason first: True") is None
    True
    """
    m = SELECTOR_DECISION_RE.match(text)
    return None if m is None else m.group(1) == "True"


def parse_selector_reason(text: str) -> str:
    """[pure] The text after ``Reason:`` in a selector reply ("" when absent).

    >>> parse_selector_reason("True\\nReason: it studies GNNs.")
    'it studies GNNs.'
    """
    m = SELECTOR_REASON_RE.search(text)
    return m.group(1).strip() if m else ""


def format_selector_target(decision: bool, reason: str) -> str:
    """[pure] The assistant turn of a selector example: ``True``/``False`` then ``Reason: ...``.

    The prompt (``render_select_prompt``) ends in ``Decision:``, so the reply starts with the decision token itself:
    the Selector's score is P(first generated token = "True") (DESIGN §1.1), and the released ``sft_selector``
    records' assistant turns read ``"False\\nReason: ..."``.

    >>> format_selector_target(True, "It proposes a GNN survey.")
    'True\\nReason: It proposes a GNN survey.'
    """
    reason = " ".join(reason.split())
    return f"{decision}\nReason: {reason}" if reason else str(decision)


def read_selector_example(record: dict) -> tuple[str, bool] | None:
    """[pure] (raw selector prompt, label) of a labelled record, or None when it has neither shape.

    Shapes: a chat record (user content = the ``get_selected`` prompt, assistant content starts with the decision)
    or ``{"query"|"question", "title", "abstract", "label": bool}``.
    """
    if isinstance(record.get("messages"), list) and check_record(record) is None:
        users = [m["content"] for m in record["messages"] if m["role"] == "user"]
        label = parse_selector_decision(record["messages"][-1]["content"])
        return (users[-1], label) if label is not None else None
    query = record.get("query", record.get("question"))
    title, abstract, label = record.get("title"), record.get("abstract", ""), record.get("label")
    if isinstance(query, str) and isinstance(title, str) and isinstance(abstract, str) and isinstance(label, bool):
        from pasa.prompts import render_select_prompt

        return render_select_prompt(query, title, abstract), label
    return None
