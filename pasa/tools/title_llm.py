"""Cited titles by an LLM, for the references the rules cannot read (``--title_extractor llm``; off by default).

The rules (``pasa.tools.citations.extract_title``, the block rule of ``pasa.tools.ar5iv.reference_title``) return
``""`` for a reference they cannot read and sometimes a run-on title. ``LLMTitleExtractor`` sends the references of
one page that look unread (``needs_llm``) to any ``pasa.llm`` backend in one prompt and takes back a JSON list of
titles. A reply that is not a list of that many strings is counted (``bad_replies``) and the rule titles are kept;
a title that does not occur in its reference (letters only) is counted (``rejected``) and dropped, so the model can
only choose a span of the reference, never invent one. Answers are cached by reference text for the run.
"""

from __future__ import annotations

import json
import logging
import re
import threading

from pasa.paper import title_key

logger = logging.getLogger(__name__)

MAX_TITLE_WORDS = 40  # longer "titles" are run-ons of title and venue
PROMPT = (
    "Below are numbered references from a scientific paper's bibliography. For each one, copy the title of the "
    "cited work exactly as it is written in the reference; write an empty string when the reference gives no "
    "title (e.g. only authors, journal, volume and page). Answer with a JSON list of {n} strings, in order, and "
    "nothing else.\n\n{references}"
)
JSON_LIST_RE = re.compile(r"\[.*\]", re.DOTALL)


def needs_llm(title: str, arxiv_id: str | None) -> bool:
    """[pure] True for a rule title the LLM should read again: empty (and no arXiv id to follow instead), one
    word, or longer than ``MAX_TITLE_WORDS`` words.

    >>> needs_llm("", None), needs_llm("", "1706.03762"), needs_llm("Attention is all you need", None)
    (True, False, False)
    """
    words = len(title.split())
    return (words == 0 and not arxiv_id) or words == 1 or words > MAX_TITLE_WORDS


def render_prompt(references: list[str]) -> str:
    """[pure] The one prompt of a page: its unread references, numbered from 1."""
    lines = "\n".join(f"{i}. {text}" for i, text in enumerate(references, 1))
    return PROMPT.format(n=len(references), references=lines)


def parse_titles(reply: str, n: int) -> list[str] | None:
    """[pure] The ``n`` titles of a reply (the first JSON list in it), or None when it is not a list of ``n`` strings.

    >>> parse_titles('Titles: ["A B", ""]', 2), parse_titles("A B", 1), parse_titles('["A B"]', 2)
    (['A B', ''], None, None)
    """
    match = JSON_LIST_RE.search(reply or "")
    if match is None:
        return None
    try:
        titles = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(titles, list) or len(titles) != n or not all(isinstance(t, str) for t in titles):
        return None
    return [" ".join(t.split()) for t in titles]


class LLMTitleExtractor:
    """Titles of a page's unread references from one batched LLM call, cached by reference text.

    Args:
        llm: any ``pasa.llm`` backend (``generate(prompts, chat=True)``): a served model or the crawler's own.
    """

    def __init__(self, llm):
        self.llm = llm
        self.cache: dict[str, str] = {}
        self.calls = 0
        self.bad_replies = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def refine(self, references) -> int:
        """Replace the unread titles of ``references`` (``pasa.tools.ar5iv.Reference`` values) by the LLM's, in
        place; returns how many titles changed. A failed model call propagates (the caller counts the failure)."""
        unread = [r for r in references if needs_llm(r.title, r.arxiv_id)]
        with self._lock:
            todo = list(dict.fromkeys(r.text for r in unread if r.text not in self.cache))
        if todo:
            self._ask(todo)
        changed = 0
        for ref in unread:
            title = self.cache.get(ref.text, "")
            if title and title != ref.title:
                ref.title = title
                changed += 1
        return changed

    def _ask(self, texts: list[str]) -> None:
        (reply,) = self.llm.generate([render_prompt(texts)], chat=True, sample=False)
        titles = parse_titles(reply, len(texts))
        with self._lock:
            self.calls += 1
            if titles is None:
                self.bad_replies += 1
                logger.warning("title extractor reply is not a list of %d titles; rule titles kept: %r",
                               len(texts), (reply or "")[:200])  # fmt: skip
                return
            for text, title in zip(texts, titles):
                if title and title_key(title) not in title_key(text):
                    self.rejected += 1
                    logger.info("title extractor answered a title not in its reference, dropped: %r", title)
                    title = ""
                self.cache[text] = title
