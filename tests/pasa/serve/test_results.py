"""Ranked papers, BibTeX and CSV of a result tree (pure functions of ``pasa.serve.results``)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

import pytest

from pasa.paper import Paper, PaperNode
from pasa.serve.results import arxiv_year, bibtex_key, stage_counts, to_bibtex, to_csv, tree_papers


def small_tree() -> dict:
    root = PaperNode.root("graph neural networks")
    gcn = PaperNode.from_paper(Paper("1609.02907", "Semi-Supervised Classification with GCNs", "GCN."), 0, "s", 0.8)
    gat = PaperNode.from_paper(Paper("1710.10903", "Graph Attention Networks", "GAT."), 0, "s", 0.4)
    mpnn = PaperNode.from_paper(Paper("1704.01212", "Neural {Message} Passing & 100% $chemistry$", ""), 1, "e", 0.95)
    old = PaperNode.from_paper(Paper("cond-mat/0102001", "An old-style id", ""), 1, "e", 0.6)
    gcn.child["2 Related Work"] = [mpnn, old]
    root.child["[Seed]"] = [gat]
    root.child["graph neural networks"] = [gcn]
    return root.to_dict()


def test_tree_papers_rank_and_say_how_each_was_found():
    papers = tree_papers(small_tree())
    assert [p["arxiv_id"] for p in papers] == ["1704.01212", "1609.02907", "cond-mat/0102001", "1710.10903"]
    assert [p["selected"] for p in papers] == [True, True, True, False]
    found = {p["arxiv_id"]: p["found_by"] for p in papers}
    assert found == {
        "1704.01212": "Semi-Supervised Classification with GCNs > 2 Related Work",
        "1609.02907": "graph neural networks",
        "cond-mat/0102001": "Semi-Supervised Classification with GCNs > 2 Related Work",
        "1710.10903": "[Seed]",
    }
    assert [p["depth"] for p in papers] == [1, 0, 1, 0]


def test_ties_break_by_arxiv_id():
    root = PaperNode.root("q")
    root.child["q"] = [
        PaperNode.from_paper(Paper(i, f"paper {i}", ""), 0, "s", 0.5) for i in ("2001.00002", "2001.00001")
    ]
    assert [p["arxiv_id"] for p in tree_papers(root.to_dict())] == ["2001.00001", "2001.00002"]


def test_empty_tree_has_no_paper():
    assert tree_papers(PaperNode.root("q").to_dict()) == []
    assert tree_papers({}) == []


def test_bibtex_has_the_selected_papers_with_eprint_and_escaped_titles():
    bib = to_bibtex(tree_papers(small_tree()))
    assert bib.count("@misc{") == 3
    assert "@misc{arxiv1704_01212," in bib and "@misc{arxiv_cond_mat_0102001," in bib
    assert "eprint = {1704.01212}" in bib and "eprint = {cond-mat/0102001}" in bib
    assert "title = {{Neural \\{Message\\} Passing \\& 100\\% \\$chemistry\\$}}" in bib
    assert "year = {2017}" in bib
    assert "1710.10903" not in bib  # not selected


def test_bibtex_without_selected_papers_says_so():
    papers = [p | {"selected": False} for p in tree_papers(small_tree())]
    assert to_bibtex(papers).startswith("% no paper")


@pytest.mark.skipif(shutil.which("bibtex") is None, reason="bibtex is not installed")
def test_bibtex_export_is_read_by_bibtex_without_warnings(tmp_path):
    (tmp_path / "refs.bib").write_text(to_bibtex(tree_papers(small_tree())), encoding="utf-8")
    (tmp_path / "doc.aux").write_text("\\citation{*}\n\\bibstyle{plain}\n\\bibdata{refs}\n")
    run = subprocess.run(["bibtex", "doc"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout
    assert "error" not in run.stdout.lower()
    bbl = (tmp_path / "doc.bbl").read_text()
    assert bbl.count("\\bibitem") == 3


def test_csv_has_every_paper_in_rank_order():
    papers = tree_papers(small_tree())
    rows = list(csv.DictReader(io.StringIO(to_csv(papers))))
    assert [r["arxiv_id"] for r in rows] == [p["arxiv_id"] for p in papers]
    assert rows[0]["rank"] == "1" and rows[0]["url"] == "https://arxiv.org/abs/1704.01212"
    assert rows[0]["title"] == "Neural {Message} Passing & 100% $chemistry$"
    assert float(rows[-1]["score"]) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "arxiv_id, key, year",
    [
        ("2005.11401", "arxiv2005_11401", "2020"),
        ("0704.0001v2", "arxiv0704_0001", "2007"),
        ("hep-th/9901001", "arxiv_hep_th_9901001", None),
    ],
)
def test_bibtex_key_and_year(arxiv_id, key, year):
    assert bibtex_key(arxiv_id) == key
    assert arxiv_year(arxiv_id) == year


def test_stage_counts_follow_the_progress_lines():
    counts = stage_counts({(0, "queries"): 5, (0, "scored"): 9, (2, "crawler"): 3, (2, "failed"): 1})
    assert list(counts) == ["search", "layer 2"]
    assert counts["search"]["queries"] == 5 and counts["search"]["ids"] == 0
    assert counts["layer 2"] == {
        "sections": 0,
        "crawler": 3,
        "chosen": 0,
        "lookup": 0,
        "found": 0,
        "scored": 0,
        "selected": 0,
        "failed": 1,
    }
    assert stage_counts({}) == {}


def test_doctests():
    import doctest

    from pasa.serve import jobs, results, server

    for module in (results, jobs, server):
        assert doctest.testmod(module).failed == 0, module.__name__
