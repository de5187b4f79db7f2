"""What ``pasa serve`` shows and exports of a search: the ranked papers of a result tree, BibTeX, CSV, stage counts.

[pure] Functions over the released JSON tree (``PaperNode.to_dict``) and plain dicts; no I/O.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from typing import Any

from pasa.paper import ARXIV_ID_RE, normalize_arxiv_id

# A paper is selected when its score is strictly above this (pasa.selector.SELECT_THRESHOLD, released ``> 0.5``).
SELECT_THRESHOLD = 0.5
# The stage counts of ``pasa run --query``'s progress lines (pasa.runner.StageProgress.text), in the order shown.
SEARCH_STAGE_KEYS = ("queries", "search", "ids", "lookup", "scored", "selected", "failed")
LAYER_STAGE_KEYS = ("sections", "crawler", "chosen", "lookup", "found", "scored", "selected", "failed")
CSV_COLUMNS = ("rank", "arxiv_id", "title", "score", "selected", "depth", "found_by", "url", "abstract")
ARXIV_ABS_URL = "https://arxiv.org/abs/{arxiv_id}"
# BibTeX's special characters, escaped in field values (braces kept balanced by escaping them too).
_BIBTEX_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#"}
_BIBTEX_SPECIAL_RE = re.compile(r"[\\{}&%$#]")
_NEW_STYLE_ID_RE = re.compile(r"^(\d{2})(\d{2})\.\d{4,5}$")


def tree_papers(tree: Mapping[str, Any], threshold: float = SELECT_THRESHOLD) -> list[dict[str, Any]]:
    """Every paper of a result tree, best score first (ties: arXiv id), with how it was found.

    ``found_by`` is the search query for a paper found by search (``[Seed]`` for a seed paper) and
    ``"<citing paper> > <section>"`` for one found by following a citation.

    >>> tree = {"title": "q", "child": {"rag": [{"title": "A", "arxiv_id": "1", "depth": 0, "select_score": 0.2,
    ...     "child": {"Intro": [{"title": "B", "arxiv_id": "2", "depth": 1, "select_score": 0.9, "child": {}}]}}]}}
    >>> [(p["title"], p["selected"], p["found_by"]) for p in tree_papers(tree)]
    [('B', True, 'A > Intro'), ('A', False, 'rag')]
    """
    papers: list[dict[str, Any]] = []
    stack = [(tree, None)]
    while stack:
        node, parent_title = stack.pop()
        for key, children in (node.get("child") or {}).items():
            found_by = key if parent_title is None else f"{parent_title} > {key}"
            for child in children:
                score = float(child.get("select_score") or 0.0)
                papers.append(
                    {
                        "arxiv_id": child.get("arxiv_id") or "",
                        "title": child.get("title") or "",
                        "abstract": child.get("abstract") or "",
                        "score": score,
                        "selected": score > threshold,
                        "depth": child.get("depth", 0),
                        "found_by": found_by,
                    }
                )
                stack.append((child, child.get("title") or ""))
    papers.sort(key=lambda p: (-p["score"], p["arxiv_id"]))
    return papers


def paper_counts(papers: list[dict[str, Any]]) -> dict[str, int]:
    """``{"papers": n, "selected": n}`` of a ranked paper list."""
    return {"papers": len(papers), "selected": sum(p["selected"] for p in papers)}


def stage_counts(counts: Mapping[tuple[int, str], int]) -> dict[str, dict[str, int]]:
    """``StageProgress.counts`` ((layer, key) -> n) as ``{"search": {...}, "layer 1": {...}}``, the stages of
    ``pasa run --query``'s progress lines; a stage appears once one of its counts is set.

    >>> stage_counts({(0, "queries"): 3, (1, "crawler"): 2})["layer 1"]["crawler"]
    2
    """
    layers = sorted({layer for layer, _ in counts})
    out: dict[str, dict[str, int]] = {}
    for layer in layers:
        keys = SEARCH_STAGE_KEYS if layer == 0 else LAYER_STAGE_KEYS
        out["search" if layer == 0 else f"layer {layer}"] = {k: int(counts.get((layer, k), 0)) for k in keys}
    return out


def arxiv_url(arxiv_id: str) -> str:
    return ARXIV_ABS_URL.format(arxiv_id=normalize_arxiv_id(arxiv_id))


def _bibtex_escape(text: str) -> str:
    return _BIBTEX_SPECIAL_RE.sub(lambda m: _BIBTEX_ESCAPES[m.group(0)], " ".join(text.split()))


def bibtex_key(arxiv_id: str) -> str:
    """``arxiv:2005.11401`` -> ``arxiv2005_11401`` (letters, digits and ``_`` only, valid for BibTeX and biber).

    >>> bibtex_key("hep-th/9901001v2")
    'arxiv_hep_th_9901001'
    """
    arxiv_id = normalize_arxiv_id(arxiv_id)
    sep = "" if arxiv_id[:1].isdigit() else "_"
    return "arxiv" + sep + re.sub(r"[^A-Za-z0-9]", "_", arxiv_id)


def arxiv_year(arxiv_id: str) -> str | None:
    """The submission year of a new-style arXiv id (``2005.11401`` -> ``2020``); None for old-style ids.

    >>> arxiv_year("0704.0001"), arxiv_year("2501.10120"), arxiv_year("hep-th/9901001")
    ('2007', '2025', None)
    """
    match = _NEW_STYLE_ID_RE.match(normalize_arxiv_id(arxiv_id))
    return f"20{match.group(1)}" if match else None


def to_bibtex(papers: list[dict[str, Any]]) -> str:
    """``@misc`` entries with ``eprint``/``archivePrefix`` (the form arXiv's own BibTeX export uses) for the selected
    papers that have an arXiv id, in rank order. The tree stores no authors, so entries have none. With no such paper,
    a BibTeX comment saying so."""
    entries = []
    for p in papers:
        arxiv_id = normalize_arxiv_id(p["arxiv_id"] or "")
        if not p["selected"] or not ARXIV_ID_RE.match(arxiv_id):
            continue
        fields = [("title", "{" + _bibtex_escape(p["title"]) + "}")]
        year = arxiv_year(arxiv_id)
        if year:
            fields.append(("year", year))
        fields += [("eprint", arxiv_id), ("archivePrefix", "arXiv"), ("url", arxiv_url(arxiv_id))]
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        entries.append(f"@misc{{{bibtex_key(arxiv_id)},\n{body}\n}}\n")
    return "\n".join(entries) or f"% no paper with an arXiv id was selected (score > {SELECT_THRESHOLD})\n"


def to_csv(papers: list[dict[str, Any]]) -> str:
    """All papers in rank order, one row each (``CSV_COLUMNS``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rank, p in enumerate(papers, start=1):
        url = arxiv_url(p["arxiv_id"]) if p["arxiv_id"] else ""
        writer.writerow({**{k: p[k] for k in CSV_COLUMNS if k in p}, "rank": rank, "url": url})
    return out.getvalue()
