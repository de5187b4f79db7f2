"""[pure] One unarXive record -> one entry of a PaSa paper database (``pasa build-db``, ``docs/build_db.md``).

An unarXive record is one arXiv paper: section-tagged paragraphs (``body_text``) whose ``cite_spans`` point into
``bib_entries`` (the raw reference string and, where unarXive resolved it, the cited arXiv id). The entry keeps the
released database's layout, *section name -> cited titles*, plus the cited arXiv ids beside them:

- sections follow the released ar5iv semantics (DESIGN §1.1, ``pasa.tools.ar5iv``): ``"<section>"`` for a section's
  own paragraphs, ``"<section> <subsection>"`` for a subsection and everything below it; sections named like
  references/acknowledgements/appendix are dropped, and so is a section that cites nothing;
- a cited title comes from the metadata snapshot when the reference has an arXiv id (unarXive's resolved id, or the
  only arXiv id written in the string), else from the raw string (``pasa.tools.citations.extract_title``);
  references with neither are counted and left out; titles keep first-citation order without repeats.

Nothing here reads a file: the metadata snapshot comes in as a ``lookup`` function (``TitleIndex.get_record``).
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pasa.paper import normalize_arxiv_id, title_key
from pasa.tools.ar5iv import STOP_WORDS
from pasa.tools.citations import extract_title
from pasa.tools.title_index import MetadataRecord, parse_version_date

Lookup = Callable[[str], MetadataRecord | None]  # arXiv id -> its metadata snapshot record
Citation = tuple[str, str | None]  # (cited title, cited arXiv id or None)


@dataclass
class ConvertedPaper:
    arxiv_id: str
    title: str
    abstract: str
    published: str | None
    categories: str
    sections: dict[str, list[str]]
    section_ids: dict[str, list[str | None]]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (count kind, detail)
    counts: Counter = field(default_factory=Counter)

    def to_entry(self) -> dict:
        """The zip entry JSON (released keys first)."""
        entry = {"title": self.title, "abstract": self.abstract, "sections": self.sections}
        entry["section_ids"] = self.section_ids
        if self.published:
            entry["published"] = self.published
        return entry


def _fold(text) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


def _stopped(name: str) -> bool:
    low = name.lower()
    return any(word in low for word in STOP_WORDS)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def cited_arxiv_id(bib: dict) -> str | None:
    """The arXiv id of a bibliography entry: unarXive's resolved one, else the only id written in it.

    >>> cited_arxiv_id({"ids": {"arxiv_id": "2104.06921"}})
    '2104.06921'
    >>> cited_arxiv_id({"ids": {"arxiv_id": ""}, "contained_arXiv_ids": [{"id": "2002.11768v2"}]})
    '2002.11768'
    """
    ids = _dict(bib.get("ids"))
    if isinstance(ids.get("arxiv_id"), str) and ids["arxiv_id"].strip():
        return normalize_arxiv_id(ids["arxiv_id"])
    contained = bib.get("contained_arXiv_ids") or []
    found = {normalize_arxiv_id(c["id"]) for c in contained if isinstance(c, dict) and isinstance(c.get("id"), str)}
    return found.pop() if len(found) == 1 else None


def section_keys(body_text: list[dict]) -> Iterator[tuple[str | None, dict]]:
    """(section key, paragraph) in document order, with the released ar5iv keys.

    ``sec_type`` ``section`` opens a top-level section; ``subsection`` a ``"<section> <subsection>"`` key; anything
    deeper (``subsubsection``, paragraph headings) stays in the open key. Paragraphs before any named section get
    ``None``; sections named like references/acknowledgements/appendix (and what is below them) get ``None``.

    >>> paras = [{"section": "Intro", "sec_type": "section"}, {"section": "Setup", "sec_type": "subsection"},
    ...          {"section": "Detail", "sec_type": "subsubsection"}, {"section": "Acknowledgments", "sec_type": "section"}]
    >>> [k for k, _ in section_keys(paras)]
    ['Intro', 'Intro Setup', 'Intro Setup', None]
    """
    top: str | None = None
    sub: str | None = None
    for para in body_text:
        if not isinstance(para, dict):
            continue
        name = _fold(para.get("section"))
        kind = para.get("sec_type") or ""
        if kind == "section" and name:
            top, sub = name, None
        elif kind == "subsection" and name:
            sub = name
        elif name and top is None and sub is None:
            top = name  # a heading below section level with no section open: the best name there is
        if top is None and sub is None:
            yield None, para
            continue
        if (top and _stopped(top)) or (sub and _stopped(sub)):
            yield None, para
            continue
        key = top if sub is None else (f"{top} {sub}" if top else sub)
        yield key, para


def resolve_reference(bib, lookup: Lookup | None) -> tuple[Citation | None, str]:
    """A bibliography entry -> ``(title, arxiv id)`` or None, and the count kind that says how (``COUNT_HELP`` in
    ``pasa.build_db``): the metadata snapshot's title when the entry has a known arXiv id, else the title in its raw
    string.

    >>> resolve_reference({"bib_entry_raw": 'A. Smith. "Deep nets for graphs". In NeurIPS, 2020.'}, None)
    (('Deep nets for graphs', None), 'titles_extracted')
    >>> resolve_reference(None, None)
    (None, 'cite_without_bib_entry')
    """
    if not isinstance(bib, dict):
        return None, "cite_without_bib_entry"
    cited_id = cited_arxiv_id(bib)
    cited = lookup(cited_id) if (lookup and cited_id) else None
    if cited is not None:
        return (cited.title, cited_id), "titles_from_metadata"
    raw = _fold(bib.get("bib_entry_raw"))
    if not raw:
        return None, "cited_id_without_title" if cited_id else "bib_without_text"
    extracted = extract_title(raw)
    if extracted:
        return (extracted, cited_id), "titles_extracted"
    return None, "cited_id_without_title" if cited_id else "bib_no_title"


def _paper_header(record: dict, lookup: Lookup | None) -> ConvertedPaper | None:
    """The paper's id, title, abstract, date and categories (the snapshot's when it knows the id, else the
    record's), with no sections yet; None without an id or a title."""
    meta = _dict(record.get("metadata"))
    raw_id = record.get("paper_id") or meta.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        return None
    arxiv_id = normalize_arxiv_id(raw_id)
    snap = lookup(arxiv_id) if lookup else None
    title = snap.title if snap else _fold(meta.get("title"))
    if not title:
        return None
    abstract = snap.abstract if snap else _fold(meta.get("abstract"))
    if not abstract and isinstance(record.get("abstract"), dict):
        abstract = _fold(record["abstract"].get("text"))
    published = snap.published if snap else None
    if published is None and meta.get("versions"):
        first = meta["versions"][0]
        published = parse_version_date(first.get("created", "")) if isinstance(first, dict) else None
    categories = snap.categories if snap else _fold(meta.get("categories"))
    return ConvertedPaper(arxiv_id, title, abstract, published, categories, {}, {})


def convert_paper(record: dict, lookup: Lookup | None = None) -> ConvertedPaper | None:
    """One unarXive record -> the database entry (``None`` when it has no id or no title).

    ``lookup`` maps an arXiv id to its metadata snapshot record (``TitleIndex.get_record``); without it titles,
    abstracts and dates come from the record itself and every cited title from its raw string.
    """
    paper = _paper_header(record, lookup)
    if paper is None:
        return None
    body = _list(record.get("body_text"))
    if not body:
        paper.counts["no_body_text"] += 1
        paper.problems.append(("no_body_text", "no paragraphs"))
        return paper

    bib_entries = _dict(record.get("bib_entries"))
    resolved: dict[str, Citation | None] = {}  # bib key -> citation; each entry is resolved (and counted) once
    listed: dict[str, set[str]] = {}  # section -> title keys already listed (no repeats inside a section)
    for key, para in section_keys(body):
        if key is None:
            continue
        for span in _list(para.get("cite_spans")):
            ref_id = span.get("ref_id") if isinstance(span, dict) else None
            if not isinstance(ref_id, str):
                continue
            paper.counts["cites"] += 1
            if ref_id not in resolved:
                resolved[ref_id] = _resolve_counted(paper, ref_id, bib_entries.get(ref_id), lookup)
            if resolved[ref_id] is None:
                continue
            cited_title, cited_id = resolved[ref_id]
            seen = listed.setdefault(key, set())
            if title_key(cited_title) in seen:
                continue
            seen.add(title_key(cited_title))
            paper.sections.setdefault(key, []).append(cited_title)
            paper.section_ids.setdefault(key, []).append(cited_id)

    paper.counts["cited_with_id"] += sum(i is not None for v in paper.section_ids.values() for i in v)
    if not paper.sections:
        paper.counts["no_cited_sections"] += 1
        paper.problems.append(("no_cited_sections", "no section cites a resolvable reference"))
    return paper


def _resolve_counted(paper: ConvertedPaper, ref_id: str, bib, lookup: Lookup | None) -> Citation | None:
    """:func:`resolve_reference`, counted in ``paper.counts``; an entry with nothing in it is also a problem."""
    citation, kind = resolve_reference(bib, lookup)
    paper.counts[kind] += 1
    if kind == "bib_without_text":
        paper.problems.append(("bib_without_text", f"bib entry {ref_id} has no text"))
    return citation


def matches_categories(categories: str, patterns: list[str]) -> bool:
    """Whether any of a paper's space-separated categories matches any glob (``cs.*``).

    >>> matches_categories("math.PR cs.LG", ["cs.*"]), matches_categories("math.PR", ["cs.*", "stat.ML"])
    (True, False)
    """
    return any(fnmatch.fnmatchcase(c, p) for c in categories.split() for p in patterns)
