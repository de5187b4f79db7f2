"""Paper records and the PaperNode result tree.

[pure] No I/O beyond the explicit ``load_tree``/``dump_tree`` helpers on already-open text.

``PaperNode.to_dict`` produces exactly the JSON the released ``run_paper_agent.py`` wrote
(``paper_node.py::todic``): keys ``title, arxiv_id, depth, child, abstract, sections, source,
select_score, extra`` in that order, ``child`` mapping a search query (for the root) or a section name
(for a paper) to a list of nodes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# Section name -> titles of the papers cited in that section (DESIGN §1.1 step 2).
Sections = dict[str, list[str]]

# Old-style (hep-th/9901001) and new-style (2301.00001, 0704.0001) arXiv identifiers, optional version.
ARXIV_ID_RE = re.compile(r"^(?P<id>(?:[a-z\-]+(?:\.[A-Z]{2})?/\d{7})|(?:\d{4}\.\d{4,5}))(?:v\d+)?$")


def normalize_arxiv_id(arxiv_id: str) -> str:
    """Strip whitespace, an ``arXiv:`` prefix and a version suffix.

    >>> normalize_arxiv_id("arXiv:2301.00001v3")
    '2301.00001'
    >>> normalize_arxiv_id("hep-th/9901001v2")
    'hep-th/9901001'
    """
    arxiv_id = arxiv_id.strip()
    if arxiv_id.lower().startswith("arxiv:"):
        arxiv_id = arxiv_id[len("arxiv:") :]
    match = ARXIV_ID_RE.match(arxiv_id)
    return match.group("id") if match else arxiv_id


def title_key(title: str) -> str:
    """Letters only, lower case: the key the released code matches titles and names DB entries by.

    >>> title_key("Attention Is All You Need!")
    'attentionisallyouneed'
    """
    return "".join(c for c in title if c.isalpha()).lower()


@dataclass
class Paper:
    """One paper as a paper source returns it."""

    arxiv_id: str
    title: str
    abstract: str = ""
    # None: no sections known (a record from the arXiv API; the released code used ""). A dict, even {}, is what
    # the record carries: a paper DB entry with {} has no citable section. The agent fetches sections (ar5iv) for
    # None, and for {} too unless ``AgentConfig.refetch_empty_sections`` is off (released: only "" was fetched).
    sections: Sections | None = None
    # Where the record came from, e.g. "SearchFrom:local_paper_db" or "SearchFrom:arxiv" (released names).
    source: str = ""
    # Publication date as YYYYMMDD when known (used for the end-date rule).
    published: str | None = None
    # Parallel to ``sections`` (same keys, same order): the arXiv id of each cited title, or None where unknown
    # (a database built from unarXive by `pasa build-db` resolves citations by id). None: the record has no ids.
    section_ids: dict[str, list[str | None]] | None = None


class CitedSections(dict):
    """Sections as a source fetched them: section name -> cited titles (a plain ``dict``), plus the cited arXiv ids
    parallel to the titles (``section_ids``, None where a reference names no id; None: the page gave no ids) and
    where the page came from (``source``, e.g. ``"ar5iv"``, ``"arxiv_html"``, ``"paper_db"``).

    >>> s = CitedSections({"Intro": ["BERT"]}, {"Intro": ["1810.04805"]}, "ar5iv")
    >>> s == {"Intro": ["BERT"]}, s.section_ids["Intro"], s.source
    (True, ['1810.04805'], 'ar5iv')
    """

    def __init__(
        self, sections: Sections, section_ids: dict[str, list[str | None]] | None = None, source: str = ""
    ) -> None:
        super().__init__(sections)
        self.section_ids = section_ids
        self.source = source


@dataclass
class PaperNode:
    """A node of the result tree: the root (the user query) or a paper found by search or expansion."""

    title: str = ""
    arxiv_id: str = ""
    depth: int = -1
    child: dict[str, list[PaperNode]] = field(default_factory=dict)
    abstract: str = ""
    sections: Sections | str = ""
    source: str = "Root"
    select_score: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # Cited arXiv ids parallel to ``sections`` (``Paper.section_ids``); used by expansion, not part of the JSON.
    section_ids: dict[str, list[str | None]] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def root(cls, user_query: str) -> PaperNode:
        """The root node of a run, with the bookkeeping lists the released agent kept in ``extra``."""
        return cls(title=user_query, extra={"touch_ids": [], "crawler_recall_papers": [], "recall_papers": []})

    @classmethod
    def from_paper(cls, paper: Paper, depth: int, source: str, score: float) -> PaperNode:
        return cls(
            title=paper.title,
            arxiv_id=paper.arxiv_id,
            depth=depth,
            abstract=paper.abstract,
            sections=paper.sections if paper.sections is not None else "",
            source=source,
            select_score=score,
            extra={},
            section_ids=paper.section_ids,
        )

    @property
    def has_sections(self) -> bool:
        return isinstance(self.sections, dict) and len(self.sections) > 0

    def to_dict(self) -> dict[str, Any]:
        """Released-compatible JSON (``paper_node.py::todic``)."""
        return {
            "title": self.title,
            "arxiv_id": self.arxiv_id,
            "depth": self.depth,
            "child": {k: [c.to_dict() for c in v] for k, v in self.child.items()},
            "abstract": self.abstract,
            "sections": self.sections,
            "source": self.source,
            "select_score": self.select_score,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, attrs: dict[str, Any]) -> PaperNode:
        """Inverse of ``to_dict``; missing keys take the released defaults."""
        return cls(
            title=attrs.get("title", ""),
            arxiv_id=attrs.get("arxiv_id", ""),
            depth=attrs.get("depth", -1),
            child={k: [cls.from_dict(c) for c in v] for k, v in attrs.get("child", {}).items()},
            abstract=attrs.get("abstract", ""),
            sections=attrs.get("sections", ""),
            source=attrs.get("source", "Root"),
            select_score=attrs.get("select_score", 0.0),
            extra=attrs.get("extra", {}),
        )

    def iter_nodes(self):
        """Breadth-first over the descendants (not the node itself), in child order (as released metrics.py)."""
        queue = [self]
        while queue:
            node = queue.pop(0)
            for children in node.child.values():
                for c in children:
                    yield c
                    queue.append(c)


def dumps_tree(root: PaperNode, indent: int | None = 2) -> str:
    return json.dumps(root.to_dict(), indent=indent, ensure_ascii=False)


def loads_tree(text: str) -> PaperNode:
    return PaperNode.from_dict(json.loads(text))


# One vocabulary of failures for the agent and the PPO environment: a failed search, paper lookup by arXiv id, lookup
# by title, section fetch or Selector call, and a crawler reply with no parseable action.
# The keys of a result tree's ``root.extra["failures"]`` (a Selector error stops the agent's run instead):
FAILURE_KINDS = ("search", "lookup", "title", "sections", "crawler_no_action")
# The keys of a PPO session's ``SessionOutcome.failures`` (sections come from the record; replies are rewarded as
# they are):
SESSION_FAILURE_KINDS = ("search", "lookup", "title", "selector")


def empty_failures() -> dict[str, int]:
    """A failure count of 0 for every kind (``root.extra["failures"]`` always has all keys)."""
    return dict.fromkeys(FAILURE_KINDS, 0)


def is_degraded(tree: dict[str, Any]) -> bool:
    """True when a result tree (``to_dict`` JSON) records a failed tool call or a crawler reply with no action.

    Trees written before failures were recorded (and released trees) have no counts: not degraded.

    >>> is_degraded({"extra": {"failures": {"search": 0, "lookup": 2}}})
    True
    >>> is_degraded({"extra": {"touch_ids": []}})
    False
    """
    failures = (tree.get("extra") or {}).get("failures") or {}
    return any(isinstance(n, int | float) and n > 0 for n in failures.values())


def sort_by_score(nodes: list[PaperNode]) -> list[PaperNode]:
    """Score descending; ties keep queue order (Python's stable sort, as the released ``sorted(..., reverse=True)``)."""
    return sorted(nodes, key=lambda n: n.select_score, reverse=True)
