"""pasa.tools.ar5iv on saved LaTeXML pages: the released section map (hand-derived expectations), the released
multi-cite slip behind its flag, bibliography titles (parse_metadata table), pages missing pieces, and fetch."""

import pytest

from pasa.tools.ar5iv import Reference, fetch_ar5iv_html, fetch_section_citations, parse_ar5iv_html, parse_metadata
from pasa.tools.http import BadAnswerError, PaperNotFoundError
from tests.pasa.tools.test_http import Reply, Script, make_client, serve

SEMI = "Semi-supervised sequence learning."
ELMO = "Deep contextualized word representations."
GPT = "Improving language understanding with unsupervised learning."
ULMFIT = "Universal language model fine-tuning for text classification."
BROWN = "Class-based n-gram models of natural language."
W2V = "Distributed representations of words and phrases and their compositionality."
GLOVE = "Glove: Global vectors for word representation."
SKIP = "Skip-thought vectors"  # a one-block entry: title split out of the joined string
LOGES = "An efficient framework for learning sentence representations."
ATTN = "Attention is all you need."

# Derived by hand from tests/fixtures/ar5iv_1810.04805.html:
# - "1 Introduction": its own text cites bib9+bib34, then (nested cite) bib36, then bib9 again (kept once);
# - "2 Related Work": the section's own text before its first subsection (bib17);
# - "2.1": own text (bib4; bib28+bib33; bib99 is not in the bibliography) + its subsubsection 2.1.1 (bib21+bib25);
#   the figure caption's cite (bib44) is skipped (captions are ignored, as released);
# - "2.2": bib9, bib17, bib36; the table cell's cite (bib45) is skipped; the title's line break is folded;
# - "3 BERT": no own text; its \paragraph (h5) becomes "3 BERT Model Architecture";
# - dropped: "5 Conclusion" (cites nothing), Acknowledgments, References, Appendix A.
# the released title split keeps the block's trailing period; the default extractor drops it
EXPECTED_RELEASED_TITLES = {
    "1 Introduction": [SEMI, ELMO, GPT],
    "2 Related Work": [ULMFIT],
    "2 Related Work 2.1 Unsupervised Feature-based Approaches": [BROWN, W2V, GLOVE, SKIP, LOGES],
    "2 Related Work 2.2 Unsupervised Fine-tuning Approaches": [SEMI, ULMFIT, GPT],
    "3 BERT Model Architecture": [ATTN],
}
EXPECTED = {k: [t.rstrip(".") for t in v] for k, v in EXPECTED_RELEASED_TITLES.items()}
# released_cite_split=True: only the first reference of each multi-reference <cite> survives
EXPECTED_RELEASED = {
    "1 Introduction": [SEMI, GPT],
    "2 Related Work": [ULMFIT],
    "2 Related Work 2.1 Unsupervised Feature-based Approaches": [BROWN, W2V, SKIP],
    "2 Related Work 2.2 Unsupervised Fine-tuning Approaches": [SEMI],
    "3 BERT Model Architecture": [ATTN],
}


@pytest.fixture(scope="module")
def bert_html(fixtures_dir):
    return (fixtures_dir / "ar5iv_1810.04805.html").read_text(encoding="utf-8")


def test_section_map_of_a_full_page(bert_html):
    doc = parse_ar5iv_html(bert_html)
    assert doc.section_citations == EXPECTED
    assert doc.reason is None


def test_released_flags(bert_html):
    released = parse_ar5iv_html(bert_html, released_cite_split=True, released_titles=True).section_citations
    assert released == EXPECTED_RELEASED and released.section_ids is None
    assert parse_ar5iv_html(bert_html, released_titles=True).section_citations == EXPECTED_RELEASED_TITLES
    assert parse_ar5iv_html(bert_html, released_cite_split=True).section_citations == {
        k: [t.rstrip(".") for t in v] for k, v in EXPECTED_RELEASED.items()
    }


def test_title_abstract_and_toc(bert_html):
    doc = parse_ar5iv_html(bert_html)
    assert doc.title == "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
    assert doc.abstract.startswith("We introduce a new language representation model called BERT")
    assert "Abstract" not in doc.abstract
    tree = [(s.title.strip(), [c.title.strip() for c in s.subsections]) for s in doc.sections]
    assert tree == [
        ("1 Introduction", []),
        ("2 Related Work", ["2.1 Unsupervised Feature-based Approaches", "2.2 Unsupervised Fine-tuning\nApproaches"]),
        ("3 BERT", ["Model Architecture"]),
        ("5 Conclusion", []),
    ]
    (sub,) = doc.sections[1].subsections[0].subsections
    assert sub.title.strip() == "2.1.1 Sentence Embeddings" and sub.cites == ["bib.bib21", "bib.bib25"]


def test_bibliography(bert_html):
    refs = parse_ar5iv_html(bert_html).references
    assert len(refs) == 11
    assert refs["bib.bib28"].title == W2V.rstrip(".")
    assert refs["bib.bib28"].journal.startswith("In Advances in Neural Information Processing Systems 26")
    assert refs["bib.bib21"].authors.startswith("Ryan Kiros") and refs["bib.bib21"].title == SKIP
    released = parse_ar5iv_html(bert_html, released_titles=True).references
    assert released["bib.bib28"].title == W2V and released["bib.bib28"].arxiv_id is None


@pytest.mark.parametrize(
    "metas, authors, title, journal",
    [
        (
            ["A. Author and B. Author. 2020.", "A three block title.", "In Venue."],
            "A. Author and B. Author. 2020.",
            "A three block title.",
            "In Venue.",
        ),
        (
            ["Kaiming He, Xiangyu Zhang. 2016. Deep residual learning for image recognition. In CVPR."],
            "Kaiming He, Xiangyu Zhang.",
            "Deep residual learning for image recognition",
            "In CVPR.",
        ),
        (["Jane Doe. 2019a. Lettered year suffix. Journal."], "Jane Doe.", "Lettered year suffix", "Journal."),
        (["Doe, J.", "Two blocks only. arXiv preprint."], "Doe, J.", "Two blocks only", "arXiv preprint."),
        (["No sentence break at all"], "", "", ""),
        ([], "", "", ""),
        (["Line\nbreaks. Are folded. Here."], "Line breaks.", "Are folded", "Here."),
    ],
)
def test_parse_metadata_table(metas, authors, title, journal):
    ref = parse_metadata(metas)
    assert isinstance(ref, Reference)
    assert (ref.authors, ref.title, ref.journal) == (authors, title, journal)


def test_page_without_sections_returns_empty_with_reason(fixtures_dir):
    doc = parse_ar5iv_html((fixtures_dir / "ar5iv_no_sections.html").read_text())
    assert doc.section_citations == {} and doc.sections == [] and doc.references == {}
    assert doc.title == "A Short Note Without Sections"
    assert doc.reason == "no abstract; no bibliography; no sections"


def test_non_latexml_page_returns_empty_with_reason(fixtures_dir):
    doc = parse_ar5iv_html((fixtures_dir / "ar5iv_not_latexml.html").read_text())
    assert doc.section_citations == {} and "not a LaTeXML page" in doc.reason


def test_sections_without_bibliography(bert_html):
    start, end = bert_html.index('<section class="ltx_bibliography"'), bert_html.index('<section class="ltx_appendix"')
    doc = parse_ar5iv_html(bert_html[:start] + bert_html[end:])
    assert doc.section_citations == {} and doc.reason == "no bibliography"
    assert len(doc.sections) == 4


def test_page_without_h1_uses_top_level_sections(bert_html):
    start = bert_html.index("<h1")
    end = bert_html.index("</h1>") + len("</h1>")
    doc = parse_ar5iv_html(bert_html[:start] + bert_html[end:])
    assert doc.section_citations == EXPECTED


@pytest.mark.parametrize(
    "html",
    [
        "",
        b"\x00\xff\xfe garbage",
        "<html><body><article class='ltx_document'><section id='S1'><h2>1 Open",
        "<article class='ltx_document'>" + "<div>" * 3000 + "deep" + "</div>" * 3000 + "</article>",
        "<article class='ltx_document'><ul class='ltx_biblist'><li><span class='ltx_bibblock'>No id.</span></li></ul>"
        "<section id='S1'><h2>1 A</h2><p><cite><a class='ltx_ref'>no href</a></cite></p></section></article>",
    ],
)
def test_odd_pages_never_raise(html):
    doc = parse_ar5iv_html(html)
    assert doc.section_citations == {} and doc.reason


def test_fetch_section_citations_through_loopback(tmp_path, bert_html):
    script = Script({"/html/1810.04805": Reply(200, bert_html, {"Content-Type": "text/html; charset=utf-8"})})
    with serve(script) as url, make_client(tmp_path) as http:
        sections = fetch_section_citations(http, "1810.04805v2", url_template=f"{url}/html/{{arxiv_id}}")
        fetch_section_citations(http, "1810.04805", url_template=f"{url}/html/{{arxiv_id}}")
    assert sections == EXPECTED
    assert script.count() == 1  # second fetch served by the cache


def test_fetch_without_html_version_is_not_found(tmp_path, fixtures_dir):
    abs_page = (fixtures_dir / "ar5iv_not_latexml.html").read_text()
    script = Script(
        {
            "/html/2101.00002": Reply(302, "", {"Location": "/abs/2101.00002"}),
            "/abs/2101.00002": Reply(200, abs_page),
        }
    )
    with serve(script) as url, make_client(tmp_path) as http:
        with pytest.raises(PaperNotFoundError, match="no HTML version"):
            fetch_ar5iv_html(http, "2101.00002", url_template=f"{url}/html/{{arxiv_id}}")
        with pytest.raises(PaperNotFoundError, match="no HTML page"):
            fetch_ar5iv_html(http, "2101.00003", url_template=f"{url}/html/{{arxiv_id}}")  # 404


def test_fetch_page_with_nothing_citable_returns_empty(tmp_path, fixtures_dir):
    script = Script({"/html/2101.00001": Reply(200, (fixtures_dir / "ar5iv_no_sections.html").read_text())})
    with serve(script) as url, make_client(tmp_path) as http:
        assert fetch_section_citations(http, "2101.00001", url_template=f"{url}/html/{{arxiv_id}}") == {}


@pytest.mark.parametrize(
    "body, error",
    [
        ("", "empty answer"),
        ("<html><body>Service temporarily unavailable</body></html>", "not a LaTeXML page"),
        ("cut", "cut short"),  # replaced below by the first half of the real page
    ],
)
def test_bad_pages_are_bad_answers_never_cached(tmp_path, bert_html, body, error):
    if body == "cut":
        body = bert_html[: len(bert_html) // 2]
    script = Script({"/html/1810.04805": [Reply(200, body), Reply(200, bert_html)]})
    with serve(script) as url, make_client(tmp_path, max_retries=0) as http:
        template = f"{url}/html/{{arxiv_id}}"
        with pytest.raises(BadAnswerError, match=error):
            fetch_section_citations(http, "1810.04805", url_template=template)
        assert fetch_section_citations(http, "1810.04805", url_template=template) == EXPECTED  # not replayed
        assert fetch_section_citations(http, "1810.04805", url_template=template) == EXPECTED  # cached now
    assert script.count() == 2


def test_abstract_page_without_redirect_is_not_found(tmp_path, fixtures_dir):
    script = Script({"/html/2101.00002": Reply(200, (fixtures_dir / "ar5iv_not_latexml.html").read_text())})
    with serve(script) as url, make_client(tmp_path) as http, pytest.raises(PaperNotFoundError):
        fetch_section_citations(http, "2101.00002", url_template=f"{url}/html/{{arxiv_id}}")
