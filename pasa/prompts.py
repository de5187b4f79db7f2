"""The prompt templates of PaSa and the parsers of the Crawler's replies.

[pure] The templates are byte-identical to the released ``agent_prompt.json`` (``../shared/prompts.json``;
a test checks it): the released checkpoints were trained on these exact strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GENERATE_QUERY = "Please generate some mutually exclusive queries in a list to search the relevant papers according to the User Query. Searching for survey papers would be better.\nUser Query: {user_query}"
SELECT_SECTION = "You are conducting research on `{user_query}`. You need to predict which sections to look at for getting more relevant papers. Title: {title}\nAbstract: {abstract}\nSections: {sections}"
GET_SELECTED = "You are an elite researcher in the field of AI, conducting research on {user_query}. Evaluate whether the following paper fully satisfies the detailed requirements of the user query and provide your reasoning. Ensure that your decision and reasoning are consistent.\n\nSearched Paper:\nTitle: {title}\nAbstract: {abstract}\n\nUser Query: {user_query}\n\nOutput format: Decision: True/False\nReason:... \nDecision:"
GET_VALUE = "You are conducting research on {user_query}. Evaluate whether the following paper fully satisfies the detailed requirements of the user query and provide your reasoning. Ensure that your decision and reasoning are consistent.\n\nSearched Paper:\nTitle: {title}\nAbstract: {abstract}\n\nUser Query: {user_query}\n\nOutput format: Decision: True/False\nReason:... \nDecision:"

TEMPLATES = {
    "generate_query": GENERATE_QUERY,
    "select_section": SELECT_SECTION,
    "get_selected": GET_SELECTED,
    "get_value": GET_VALUE,
}

# The released agent's parsing templates (paper_agent.py::templates): an action's argument runs from the
# action tag to the next "[" -- an action that is not followed by another "[" (a truncated reply) is dropped.
SEARCH_RE = re.compile(r"Search\](.*?)\[", flags=re.DOTALL)
EXPAND_RE = re.compile(r"Expand\](.*?)\[", flags=re.DOTALL)
STOP_RE = re.compile(r"\[Stop\w*\]")


def format_section_names(names: Iterable[str], style: str = "dict_keys") -> str:
    """Render the ``Sections:`` field of the ``select_section`` prompt.

    The released inference code formatted ``dict.keys()`` with ``str`` (``dict_keys([...])``); the released RL
    code used a JSON list. The released checkpoints saw both.

    >>> format_section_names(["1 Intro", "2 Method"])
    "dict_keys(['1 Intro', '2 Method'])"
    >>> format_section_names(["1 Intro"], style="json")
    '["1 Intro"]'
    """
    names = list(names)
    if style == "dict_keys":
        return str(dict.fromkeys(names).keys())
    if style == "json":
        import json

        return json.dumps(names, ensure_ascii=False)
    raise ValueError(f"unknown sections style {style!r}; expected 'dict_keys' or 'json'")


def render_search_prompt(user_query: str) -> str:
    """The Crawler's search-session prompt (released: ``generate_query.format(...).strip()``)."""
    return GENERATE_QUERY.format(user_query=user_query).strip()


def render_expand_prompt(
    user_query: str, title: str, abstract: str, section_names: Iterable[str], sections_style: str = "dict_keys"
) -> str:
    """The Crawler's expand-session prompt for one paper (released: ``select_section.format(...).strip()``)."""
    sections = format_section_names(section_names, sections_style)
    return SELECT_SECTION.format(user_query=user_query, title=title, abstract=abstract, sections=sections).strip()


def render_select_prompt(user_query: str, title: str, abstract: str) -> str:
    """The Selector's prompt; fed raw (no chat template) and ending in ``Decision:``, as released."""
    return GET_SELECTED.format(title=title, abstract=abstract, user_query=user_query)


def render_value_prompt(user_query: str, title: str, abstract: str) -> str:
    """The ``get_value`` prompt of the released RL code."""
    return GET_VALUE.format(title=title, abstract=abstract, user_query=user_query)


def parse_search_queries(reply: str, limit: int | None = None, keep_empty: bool = False) -> list[str]:
    """Search queries in a Crawler reply: the stripped text after each ``Search]`` up to the next ``[``.

    Empty queries are dropped before the limit unless ``keep_empty`` (released: kept, counted against the limit
    and searched); order is kept; ``limit`` keeps the first ones (released ``[:search_queries]``).

    >>> parse_search_queries("[Search] graph neural networks\\n[Search] GNN survey\\n[StopSearch]")
    ['graph neural networks', 'GNN survey']
    >>> parse_search_queries("no actions here")
    []
    >>> parse_search_queries("[Search] [Search] a [StopSearch]", keep_empty=True)
    ['', 'a']
    """
    queries = [q.strip() for q in SEARCH_RE.findall(reply)]
    if not keep_empty:
        queries = [q for q in queries if q]
    return queries[:limit] if limit is not None else queries


def parse_expand_sections(reply: str, section_names: Iterable[str] | None = None) -> list[str]:
    """Sections to expand in a Crawler reply: the stripped text after each ``Expand]`` up to the next ``[``.

    With ``section_names``, only exact matches are kept (released: ``if section not in paper.sections``).
    Repeats are kept once, in first-seen order.

    >>> parse_expand_sections("[Expand] 2 Related Work\\n[Expand] 9 Nope\\n[StopExpand]", ["2 Related Work"])
    ['2 Related Work']
    """
    allowed = set(section_names) if section_names is not None else None
    sections: list[str] = []
    for s in EXPAND_RE.findall(reply):
        s = s.strip()
        if not s or (allowed is not None and s not in allowed) or s in sections:
            continue
        sections.append(s)
    return sections


def has_action(reply: str) -> bool:
    """Whether a Crawler reply holds any parseable action (a ``Search]``/``Expand]`` argument or a ``[Stop...]``).

    A reply without one (garbage, empty, truncated before the closing ``[``) is a failure the agent records.

    >>> has_action("[Search] a\\n[StopSearch]"), has_action("[StopExpand]"), has_action("[Search] truncated")
    (True, True, False)
    """
    return bool(SEARCH_RE.search(reply) or EXPAND_RE.search(reply) or STOP_RE.search(reply))
