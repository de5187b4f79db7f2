"""Measured quality of the ar5iv parser's cited titles and arXiv ids (``bench/ar5iv_titles.py``): the page built
from the hand-labelled unarXive strings and the real LaTeXML pages of ``tests/fixtures/latexml``, in both modes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pasa.tools.ar5iv import find_arxiv_id, find_doi, parse_ar5iv_html

BENCH = Path(__file__).resolve().parents[3] / "bench" / "ar5iv_titles.py"
LATEXML = Path(__file__).resolve().parents[2] / "fixtures" / "latexml"


def load_bench():
    """``bench/ar5iv_titles.py`` as a module."""
    spec = importlib.util.spec_from_file_location("_bench_ar5iv_titles", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


def test_one_block_references_from_labelled_strings(bench):
    scores = bench.unarxive_scores()
    default, released = scores["one block, default"], scores["one block, released"]
    assert default["n"] == 147 and default["ids"] == 15
    assert default["exact"] >= 0.95 and default["id_recall"] >= 0.9
    # the released split reads 32 of the 147 titles (22%) and no id
    assert round(released["exact"] * 147) == 32 and released["id_recall"] == 0.0
    assert scores["three blocks, default"]["exact"] >= 0.95 and scores["three blocks, released"]["exact"] >= 0.95


def test_latexml_styles(bench):
    scores = bench.latexml_scores()
    styles = json.loads((LATEXML / "gold.json").read_text(encoding="utf-8"))
    assert len(styles) >= 6
    assert scores["all styles, default"]["exact"] >= 0.95 and scores["all styles, default"]["id_recall"] >= 0.95
    for style in styles:
        assert scores[f"{style}, default"]["exact"] >= 0.9, style
        assert scores[f"{style}, released"]["id_recall"] == 0.0
    assert scores["all styles, released"]["exact"] < 0.6  # one-block styles defeat the released split


@pytest.mark.parametrize("style", ["plain", "ieeetr", "latexml_bib", "handwritten"])
def test_latexml_pages_map_sections_to_titles_and_ids(style):
    page = (LATEXML / f"{style}.html").read_text(encoding="utf-8")
    gold = json.loads((LATEXML / "gold.json").read_text(encoding="utf-8"))[style]
    sections = parse_ar5iv_html(page).section_citations
    assert list(sections) == ["1 Introduction", "2 Related Work"]
    assert sum(len(v) for v in sections.values()) == len(gold)
    cited_ids = {i for ids in sections.section_ids.values() for i in ids if i}
    assert cited_ids == {g["arxiv_id"] for g in gold.values() if g["arxiv_id"]}
    for name, titles in sections.items():
        assert len(sections.section_ids[name]) == len(titles)
    released = parse_ar5iv_html(page, released_cite_split=True, released_titles=True).section_citations
    assert released.section_ids is None


def test_reference_with_an_id_and_no_title_is_followed_by_id():
    page = (LATEXML / "handwritten.html").read_text(encoding="utf-8")
    sections = parse_ar5iv_html(page).section_citations
    pairs = [(t, i) for name in sections for t, i in zip(sections[name], sections.section_ids[name])]
    (cited,) = [t for t, i in pairs if i == "1602.05110"]
    assert cited == "D. J. Im, C. D. Kim, H. Jiang and R. Memisevic, arXiv:1602.05110 (2016)."


@pytest.mark.parametrize(
    "text, arxiv_id",
    [
        ("Tian et al. 2019. Contrastive multiview coding. arXiv preprint arXiv:1906.05849.", "1906.05849"),
        ("Available: https://arxiv.org/abs/2203.03454v2", "2203.03454"),
        ("https://arxiv.org/pdf/1706.03762.pdf", "1706.03762"),
        ("higher representations. arxiv.org/2009.09627, 2020.", "2009.09627"),
        ("JHEP 02, 004 (2004) [arXiv:hep-ph/0311268 [hep-ph]].", "hep-ph/0311268"),
        ("Nucl. Phys. B 691 (2004) 129 [hep-ph/0404111].", "hep-ph/0404111"),
        ("J. Phys. A 40, 3839 (2007) [nlin.si/0701027].", "nlin/0701027"),
        ("JHEP 03 (2010) 005 [0910.4347].", "0910.4347"),
        ("doi:10.48550/arXiv.2301.00001", "2301.00001"),
        ("Phys. Rev. D 104 (2021) no.9, 094031 doi:10.1103/PhysRevD.104.094031", None),
        ("Proc. IEEE 86(11), 2278-2324 [1998.1399]", None),  # month 99: not an id
        ("Comput. Phys. Commun. 222 (2018), 250-262 doi:10.1016/j.cpc.2017.08.025", None),
    ],
)
def test_find_arxiv_id(text, arxiv_id):
    assert find_arxiv_id(text) == arxiv_id


def test_find_doi():
    assert find_doi("Phys. Rev. D 104, doi:10.1103/PhysRevD.104.094031.") == "10.1103/PhysRevD.104.094031"
    assert find_doi("no doi here") is None
