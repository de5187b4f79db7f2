"""Which citations an expansion follows and how each is looked up: by its arXiv id when known, else by its title.

[pure] The agent (``pasa/agent.py``) and the PPO environment (``trl_ext/env.py``) both resolve the citations of the
sections the Crawler chose with this rule; they differ only in how they call the paper source (awaited and shared
within a run, or one call at a time).

>>> refs = chosen_citations({"Intro": ["BERT", "GPT"]}, {"Intro": ["1810.04805", None]}, ["Intro"])
>>> [lookup_plan(r) for r in refs]
[[('id', '1810.04805'), ('title', 'BERT')], [('title', 'GPT')]]
"""

from __future__ import annotations

from dataclasses import dataclass

from pasa.paper import Sections, normalize_arxiv_id


@dataclass(frozen=True)
class Citation:
    """One cited paper of a chosen section: the title as the citing paper wrote it, and its arXiv id if known."""

    section: str
    cited: str
    arxiv_id: str | None = None


def chosen_citations(
    sections: Sections, section_ids: dict[str, list[str | None]] | None, chosen: list[str]
) -> list[Citation]:
    """The citations of the ``chosen`` sections, in section then reference order, with their ids where known.

    ``section_ids`` is parallel to ``sections`` (``Paper.section_ids``); pass None to resolve every citation by title
    (the released agent).
    """
    out = []
    for section in chosen:
        ids = (section_ids or {}).get(section) or []
        for i, cited in enumerate(sections.get(section) or []):
            arxiv_id = ids[i] if i < len(ids) and ids[i] else None
            out.append(Citation(section, cited, normalize_arxiv_id(arxiv_id) if arxiv_id else None))
    return out


def lookup_plan(citation: Citation) -> list[tuple[str, str]]:
    """The lookups to try in order until one finds the paper: ``("id", arxiv_id)`` first when the id is known (an id
    the source does not know falls back to the title), then ``("title", cited)``."""
    plan = [("id", citation.arxiv_id)] if citation.arxiv_id else []
    return plan + [("title", citation.cited)]
