"""ar5iv / arXiv HTML (LaTeXML) -> title, abstract, section tree, bibliography and the crawler's section map.

The crawler expands a paper through *second-level section name -> titles of the papers cited there*
(DESIGN §1.1 step 2). ``parse_ar5iv_html`` [pure] rebuilds it with the released ``utils.py`` semantics:

* the table of contents is every ``h1``-``h5`` heading in page order, nested by level (``generate_full_toc``); a
  heading's text is its nearest enclosing ``<section id>``'s own content, stopping at the first nested section and
  skipping ``a, figure, center, caption, td, h1-h4, sup`` and navigation (``parse_text``);
* sections whose title contains ``references``, ``acknowledgments``/``acknowledgements``, ``about this document``
  or ``appendix`` are dropped with their subsections (``remove_stop_word_sections_and_extract_text``; the released
  list spelled it ``apopendix``, which never matched, but its appendix keys were dropped later anyway);
* keys are ``"<section title>"`` (the section's own text) and ``"<section title> <subsection title>"`` (the
  subsection's text plus everything below it), newlines folded, keys containing ``appendix`` dropped
  (``get_2nd_section``/``get_1st_section``/``get_subsection``);
* each ``<cite>``'s ``a.ltx_ref`` targets (``#bib.bibN``) are looked up in the bibliography
  (``ul.ltx_biblist > li.ltx_bibitem``); sections citing nothing are dropped.

The released code read a reference's title by splitting its ``span.ltx_bibblock`` texts (``parse_metadata``: the
middle of three blocks, else the second ``". "``-field), which returns an author or a venue for the one-block
references of hand-written lists and styles without ``\newblock``. By default the title is read by
``reference_title`` (the block rule, else ``pasa.tools.citations.extract_title``) and each reference's written
arXiv id (``find_arxiv_id``) and DOI are kept; the section map is a ``pasa.paper.CitedSections`` with the cited
ids parallel to the titles. ``bench/ar5iv_titles.py`` measures both on labelled strings and real LaTeXML pages.

Released slips are fixed by default, each behind a flag: ``released_titles=True`` keeps the released title split
and reads no ids; ``released_cite_split=True`` keeps only the first reference of a multi-reference ``<cite>`` (the
released code split ``"bib.bib1, bib.bib2"`` on ``","`` and the leading space made every later id miss the
bibliography); cited titles keep page order instead of a ``set``'s. Empty reference titles are never returned.

The parser never raises on a page missing pieces: what is missing is listed in ``Ar5ivDocument.problems``
(``reason`` joins them) and the section map is then empty. ``fetch_section_citations`` [I/O] fetches through the
shared ``HttpClient`` (ar5iv, or arXiv's own HTML at ``ARXIV_HTML_URL``: the same markup) and raises
``UnparsedBibliographyError`` for a page whose sections cite references its bibliography does not give.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import bs4

from pasa.paper import CitedSections, Sections, normalize_arxiv_id
from pasa.tools.citations import AUTHORS_RE, clean_reference, extract_title, is_venue
from pasa.tools.http import HttpClient, PaperNotFoundError, ServiceError

logger = logging.getLogger(__name__)

AR5IV_URL = "https://ar5iv.labs.arxiv.org/html/{arxiv_id}"
ARXIV_HTML_URL = "https://arxiv.org/html/{arxiv_id}"  # arXiv's own LaTeXML pages (newer papers), same markup
HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5}
IGNORED_TAGS = frozenset({"a", "figure", "center", "caption", "td", "h1", "h2", "h3", "h4", "sup"})
STOP_WORDS = ("references", "acknowledgments", "acknowledgements", "about this document", "appendix")
YEAR_SUFFIX_RE = re.compile(r"\.\s\d{4}[a-z]?\.")
META_RE = re.compile(r"^(.*?\.\s)(.*?)(\.\s.*|$)", re.DOTALL)
# arXiv's archives before 2007 (old-style ids are <archive>[.<subject class>]/YYMMNNN)
OLD_ARCHIVES = (
    "acc-phys|adap-org|alg-geom|ao-sci|astro-ph|atom-ph|bayes-an|chao-dyn|chem-ph|cmp-lg|comp-gas|cond-mat|cs|dg-ga|"
    "funct-an|gr-qc|hep-ex|hep-lat|hep-ph|hep-th|math-ph|math|mtrl-th|nlin|nucl-ex|nucl-th|patt-sol|physics|"
    "plasm-ph|q-alg|q-bio|quant-ph|solv-int|supr-con"
)
_NEW_ID = r"(?P<id>\d{4}\.\d{4,5})(?:v\d+)?(?!\d)"
ARXIV_REF_RES = (
    # arXiv:2101.00001, arxiv.org/abs|pdf|html/2101.00001, arxiv.org/2101.00001, arXiv's DOI 10.48550/arXiv.2101.00001
    re.compile(rf"(?:arxiv\s?:\s?|arxiv\.org/(?:(?:abs|pdf|html)/)?|10\.48550/arxiv\.){_NEW_ID}", re.IGNORECASE),
    re.compile(rf"(?<![\w.-])(?P<id>(?:{OLD_ARCHIVES})(?:\.[A-Za-z]{{2}})?/\d{{7}})(?:v\d+)?(?!\d)", re.IGNORECASE),
    re.compile(rf"\[{_NEW_ID}(?=[\]\s,;])"),  # physics styles: "JHEP 11 (2019) 061 [1906.04669]"
)
LOWER_WORD_RE = re.compile(r"\b[a-z]{4,}\b")
NAME_LIST_WORDS = frozenset({"others", "della", "editor", "editors"})
DOI_RE = re.compile(r"\b10\.\d{4,9}/[^\s\"<>]+")


@dataclass
class Reference:
    """One bibliography entry (released ``parse_metadata`` fields)."""

    meta_list: list[str]
    meta_string: str
    authors: str
    title: str
    journal: str
    arxiv_id: str | None = None  # written in the reference (text or link); never guessed
    doi: str | None = None

    @property
    def text(self) -> str:
        """The reference as written (its blocks joined, whitespace folded)."""
        return " ".join(" ".join(self.meta_list).split())


@dataclass
class TocEntry:
    """A heading of the page with its section's own content (cited bibliography ids, in order)."""

    title: str
    id: str | None
    level: int
    has_text: bool = False
    cites: list[str] = field(default_factory=list)
    subsections: list[TocEntry] = field(default_factory=list)


@dataclass
class Ar5ivDocument:
    """A parsed page. ``problems`` lists what was missing; ``section_citations`` is the crawler's map."""

    title: str = ""
    abstract: str = ""
    sections: list[TocEntry] = field(default_factory=list)
    references: dict[str, Reference] = field(default_factory=dict)
    section_cites: dict[str, list[str]] = field(default_factory=dict)  # section -> cited bibliography ids
    section_citations: CitedSections = field(default_factory=lambda: CitedSections({}))
    problems: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """Why parts of the result are empty, or ``None`` when nothing was missing."""
        return "; ".join(self.problems) or None


# -- bibliography -------------------------------------------------------------------------------------------------
def parse_metadata(metas: list[str]) -> Reference:
    """[pure] Authors, title and venue of a reference from its ``ltx_bibblock`` texts (released ``parse_metadata``).

    Three blocks are taken as author / title / venue; otherwise the joined string is split at the first ``". "``
    after a year suffix (``2022a.``) is removed.

    >>> parse_metadata(["Ashish Vaswani, Noam Shazeer.", "Attention is all you need.", "NeurIPS, 2017."]).title
    'Attention is all you need.'
    >>> parse_metadata(["Kaiming He, Xiangyu Zhang. 2016. Deep residual learning for image recognition. In CVPR."]).title
    'Deep residual learning for image recognition'
    """
    metas = [item.replace("\n", " ") for item in metas]
    meta_string = " ".join(metas)
    authors, title, journal = "", "", ""
    if len(metas) == 3:
        authors, title, journal = metas
    else:
        meta_string = YEAR_SUFFIX_RE.sub(".", meta_string)
        match = META_RE.match(meta_string)
        if match:
            authors = (match.group(1) or "").strip()
            title = (match.group(2) or "").strip()
            journal = (match.group(3) or "").strip()
            if journal.startswith(". "):
                journal = journal[2:]
    return Reference(metas, meta_string, authors, title, journal)


def find_arxiv_id(text: str) -> str | None:
    """[pure] The arXiv identifier a reference writes, without version: ``arXiv:2101.00001``, ``arxiv.org/abs/...``
    and ``/pdf/`` links, old-style ids (``hep-th/0312171``, subject class dropped), a bracketed bare id as physics
    styles write it (``[1906.04669]``) and arXiv's DOI (``10.48550/arXiv.2203.03454``); None when it writes none.

    >>> find_arxiv_id("Ellis, Int. J. Mod. Phys. A 29 (2014), arXiv:1409.4232v2 [hep-ph].")
    '1409.4232'
    >>> find_arxiv_id("C. Gilson, J. Phys. A 40, 3839 (2007) [nlin.si/0701027]."), find_arxiv_id("JHEP 11 (2019) 061")
    ('nlin/0701027', None)
    """
    for pattern in ARXIV_REF_RES:
        for match in pattern.finditer(text):
            arxiv_id = match.group("id")
            if "/" in arxiv_id:
                archive, number = arxiv_id.split("/")
                return f"{archive.split('.')[0].lower()}/{number}"
            if 1 <= int(arxiv_id[2:4]) <= 12:  # YYMM.NNNNN: a month, so "1234.5678" page ranges are not ids
                return arxiv_id
    return None


def find_doi(text: str) -> str | None:
    """[pure] The first DOI a reference writes (``10.1103/PhysRevD.104.094031``), trailing punctuation dropped."""
    match = DOI_RE.search(text)
    return match.group(0).rstrip(".,;:)]}") if match else None


def _block_text(block: bs4.Tag) -> str:
    return " ".join(block.get_text().split())


def reference_title(blocks: list[str]) -> str:
    """[pure] The cited title of a reference from its ``ltx_bibblock`` texts, with ``pasa.tools.citations``.

    ``.bbl`` styles with ``\\newblock`` give LaTeXML one block per part: when the first block is an author list
    and the second reads as a title, the second is the title. Otherwise (one block: a hand-written ``\\bibitem``
    or a style without ``\\newblock``) the extractor reads the joined text.

    >>> reference_title(["Ashish Vaswani, Noam Shazeer.", "Attention is all you need.", "In NeurIPS, 2017."])
    'Attention is all you need'
    >>> reference_title(["Y. Cao and P. Jarillo-Herrero, Nature 556, 43 (2018)."])
    ''
    """
    blocks = [b for b in (" ".join(x.split()) for x in blocks) if b]
    if len(blocks) >= 2 and (title := _second_block_title(blocks)):
        return title
    return extract_title(" ".join(blocks))


def _second_block_title(blocks: list[str]) -> str:
    """The second block when the first reads as an author list and the second as a title (not a venue)."""
    authors, candidate = clean_reference(blocks[0]), clean_reference(blocks[1])
    if not _looks_like_authors(authors) or is_venue(candidate):
        return ""
    title = _strip_title(candidate)
    return title if len(title.split()) >= 2 else ""


def _looks_like_authors(text: str) -> bool:
    """Names from the start (``pasa.tools.citations.AUTHORS_RE``) and no lower-case word a title would have
    (``Le Cun, Y., Bottou, L., and Bengio, Y. (1997).``, ``A. v. d. Oord, S. Dieleman, and K. Kavukcuoglu.``)."""
    if AUTHORS_RE.match(text) is None:
        return False
    return not any(w not in NAME_LIST_WORDS for w in LOWER_WORD_RE.findall(text))


def _strip_title(text: str) -> str:
    return text.strip().strip("“”\"'").strip().rstrip(".,;:").strip()


def _reference(li: bs4.Tag, released: bool) -> Reference:
    blocks = li.find_all("span", class_="ltx_bibblock")
    if released:  # every block, as the released parse_metadata saw them
        return parse_metadata([x.get_text().strip() for x in blocks])
    # LaTeXML formatting a .bib itself adds a "Cited by: §1" block
    blocks = [b for b in blocks if "ltx_bib_cited" not in (b.get("class") or [])]
    ref = parse_metadata([x.get_text().strip() for x in blocks])
    texts = [_block_text(b) for b in blocks]
    marked = li.find(class_="ltx_bib_title")  # LaTeXML formatting a .bib itself marks the title
    ref.title = _strip_title(_block_text(marked)) if marked is not None else reference_title(texts)
    hrefs = " ".join(a.get("href") or "" for a in li.find_all("a"))
    joined = " ".join(texts)
    ref.arxiv_id = find_arxiv_id(hrefs) or find_arxiv_id(joined)
    ref.doi = find_doi(hrefs) or find_doi(joined)
    return ref


def parse_bibliography(soup: bs4.BeautifulSoup, released_titles: bool = False) -> dict[str, Reference]:
    """[pure] ``li`` id (``bib.bibN``) -> parsed reference, from the first ``ltx_biblist``.

    Default: titles by ``reference_title`` and the arXiv id and DOI each reference writes (text or links).
    ``released_titles``: the released ``parse_metadata`` split, no ids.
    """
    biblist = soup.find(class_="ltx_biblist")
    if biblist is None:
        return {}
    references = {}
    for li in biblist.find_all("li", recursive=False):
        li_id = li.get("id")
        if not li_id:  # the released code raised KeyError here
            continue
        references[li_id] = _reference(li, released_titles)
    return references


# -- table of contents and section contents ----------------------------------------------------------------------
def _cite_ids(cite: bs4.Tag) -> list[str]:
    ids = []
    for a in cite.find_all("a", class_="ltx_ref"):
        href = (a.get("href") or "").strip()
        ids.append(href.rsplit("#", 1)[-1] if "#" in href else href)
    return ids


def _collect(tag: bs4.Tag, entry: TocEntry, released_cite_split: bool) -> None:
    """Walk a section's own content like the released ``parse_text``: text presence and cites, in page order."""
    for child in tag.children:
        if isinstance(child, bs4.Comment):
            continue
        if isinstance(child, bs4.NavigableString):
            if str(child).strip():
                entry.has_text = True
            continue
        if not isinstance(child, bs4.Tag):
            continue
        classes = child.get("class") or []
        if child.name in IGNORED_TAGS or (classes and classes[0] == "navigation"):
            continue
        if child.name == "cite":
            ids = [i for i in _cite_ids(child) if i]
            entry.has_text = True
            entry.cites.extend(ids[:1] if released_cite_split else ids)
        elif child.name == "img":
            entry.has_text = entry.has_text or bool(child.get("alt"))
        elif child.name == "section":
            return  # released: a nested section ends this level's text
        elif classes and classes[0] in ("ltx_Math", "ltx_equation"):
            entry.has_text = entry.has_text or bool(child.get_text().strip())
        else:
            _collect(child, entry, released_cite_split)


def build_toc(soup: bs4.BeautifulSoup) -> list[TocEntry]:
    """[pure] Every ``h1``-``h5`` heading, nested by level, with the id of its nearest enclosing ``<section id>``."""
    toc: list[TocEntry] = []
    stack: list[tuple[int, list[TocEntry]]] = [(0, toc)]
    for tag in soup.find_all(list(HEADING_LEVELS)):
        level = HEADING_LEVELS[tag.name]
        while stack and stack[-1][0] >= level:
            stack.pop()
        section = tag.find_parent("section", id=True)
        entry = TocEntry(title=tag.get_text(), id=section.get("id") if section else None, level=level)
        stack[-1][1].append(entry)
        stack.append((level, entry.subsections))
    return toc


def _fill_and_filter(entries: list[TocEntry], by_id: dict[str, bs4.Tag], released_cite_split: bool) -> list[TocEntry]:
    kept = []
    for entry in entries:
        if any(word in entry.title.lower() for word in STOP_WORDS):
            continue
        section = by_id.get(entry.id) if entry.id else None
        if section is not None:
            _collect(section, entry, released_cite_split)
        entry.subsections = _fill_and_filter(entry.subsections, by_id, released_cite_split)
        kept.append(entry)
    return kept


def _key(title: str) -> str:
    return " ".join(title.strip().split("\n")).strip()


def _flatten(entries: list[TocEntry]) -> dict[str, TocEntry]:
    """Released ``get_subsection``: every descendant with text, keyed by title (a repeated title overwrites)."""
    out: dict[str, TocEntry] = {}
    for entry in entries:
        if entry.has_text:
            out[entry.title.strip()] = entry
        out.update(_flatten(entry.subsections))
    return out


def second_level_citations(sections: list[TocEntry]) -> dict[str, list[str]]:
    """[pure] Released ``get_2nd_section`` over the top-level sections, with cite ids instead of text.

    Keys: ``"<section>"`` for a section's own content, ``"<section> <subsection>"`` for a subsection and all its
    descendants; keys containing ``appendix`` are dropped.
    """
    res: dict[str, list[str]] = {}
    for section in sections:
        if section.has_text:
            res[section.title.strip()] = list(section.cites)
        # released get_1st_section over the subsections
        first: dict[str, list[str]] = {}
        for sub in section.subsections:
            below = _flatten(sub.subsections)
            if sub.has_text or below:
                first[sub.title.strip()] = list(sub.cites) + [c for e in below.values() for c in e.cites]
        for k, cites in first.items():
            if "appendix" not in k.lower():
                res[section.title.strip() + " " + _key(k)] = cites
    return {_key(k): v for k, v in res.items() if "appendix" not in k.lower()}


def cited_titles(
    section_cites: dict[str, list[str]], references: dict[str, Reference], source: str = ""
) -> CitedSections:
    """[pure] Section -> titles of the references it cites (page order, no duplicates), with the arXiv ids they
    write in parallel (``section_ids``; None when no reference writes one). A reference with an id but no title
    is cited as its text (followed by its id; its text keeps title keys apart); sections citing nothing known are
    dropped."""
    out: Sections = {}
    ids_out: dict[str, list[str | None]] = {}
    for name, bib_ids in section_cites.items():
        titles: list[str] = []
        ids: list[str | None] = []
        for bib_id in bib_ids:
            ref = references.get(bib_id)
            if ref is None:
                continue
            title = ref.title or (ref.text if ref.arxiv_id else "")
            if not title or title in titles or (ref.arxiv_id and ref.arxiv_id in ids):
                continue
            titles.append(title)
            ids.append(ref.arxiv_id)
        if titles:
            out[name] = titles
            ids_out[name] = ids
    has_ids = any(i for ids in ids_out.values() for i in ids)
    return CitedSections(out, ids_out if has_ids else None, source)


def _title(soup: bs4.BeautifulSoup) -> str:
    h1 = soup.find(class_="ltx_title_document") or soup.find("h1")
    if h1 is not None:
        h1 = bs4.BeautifulSoup(str(h1), "lxml")
        for note in h1.find_all(class_="ltx_note"):  # \thanks footnotes
            note.decompose()
        return " ".join(h1.get_text(" ").split())
    head_title = soup.find("title")
    if head_title is not None:  # ar5iv: "[2307.00235] Title"
        return re.sub(r"^\[[^\]]*\]\s*", "", " ".join(head_title.get_text().split()))
    return ""


def _abstract(soup: bs4.BeautifulSoup) -> str:
    block = soup.find(class_="ltx_abstract")
    if block is None:
        return ""
    paragraphs = block.find_all("p")
    if paragraphs:
        return " ".join(" ".join(p.get_text().split()) for p in paragraphs)
    heading = block.find(class_="ltx_title")
    text = block.get_text()
    if heading is not None:
        text = text.replace(heading.get_text(), "", 1)
    return " ".join(text.split())


def parse_ar5iv_html(
    html: str | bytes, released_cite_split: bool = False, released_titles: bool = False, source: str = ""
) -> Ar5ivDocument:
    """[pure] Parse a LaTeXML page (ar5iv or arxiv.org/html). Never raises; see ``Ar5ivDocument.problems``.

    ``released_cite_split``: only the first reference of a multi-reference ``<cite>``; ``released_titles``: the
    released title split and no arXiv ids (``parse_bibliography``); ``source`` names the page on the result."""
    doc = Ar5ivDocument()
    try:
        soup = bs4.BeautifulSoup(html, "lxml")
        if soup.find(class_="ltx_document") is None:
            doc.problems.append("not a LaTeXML page (no ltx_document)")
            return doc
        doc.title = _title(soup)
        doc.abstract = _abstract(soup)
        if not doc.abstract:
            doc.problems.append("no abstract")
        doc.references = parse_bibliography(soup, released_titles)
        if not doc.references:
            doc.problems.append("no bibliography")
        toc = build_toc(soup)
        # released: document["sections"][0]["subsections"] (the sections under the h1 title); a page without an h1
        # has its sections at the top level
        top = toc[0].subsections if toc and toc[0].level == 1 else toc
        by_id: dict[str, bs4.Tag] = {}
        for tag in soup.find_all(id=True):  # first element per id, as soup.find(id=...) (one pass, not one per entry)
            by_id.setdefault(tag["id"], tag)
        doc.sections = _fill_and_filter(top, by_id, released_cite_split)
        if not doc.sections:
            doc.problems.append("no sections")
        doc.section_cites = second_level_citations(doc.sections)
        doc.section_citations = cited_titles(doc.section_cites, doc.references, source)
        if doc.sections and doc.references and not doc.section_citations:
            doc.problems.append("no section cites a parsed reference")
    except (RecursionError, AttributeError, KeyError, TypeError, ValueError) as err:  # malformed markup
        doc.problems.append(f"unparseable page: {type(err).__name__}: {err}")
        doc.section_citations = CitedSections({})
    return doc


# -- I/O ----------------------------------------------------------------------------------------------------------
ABS_PAGE_MARKERS = ('name="citation_arxiv_id"', 'id="abs"', "arxiv.org/abs/")


def check_ar5iv_answer(
    resp, released_cite_split: bool = False, released_titles: bool = False, source: str = "ar5iv"
) -> Ar5ivDocument:
    """The HTTP layer's validator for an ar5iv answer: the parsed page, or why it is no answer.

    A LaTeXML page (``ltx_document``) that ends with ``</html>`` is parsed. arXiv's abstract page (ar5iv redirects
    there when it has no HTML version) is ``PaperNotFoundError``: a valid, cacheable answer. Anything else (an
    empty 200, a page cut short, an error page served with 200) raises ``ServiceError``, so the HTTP layer evicts
    it from the cache and retries.
    """
    html = resp.text
    if "ltx_document" in html:
        if "</html>" not in html[-4096:].lower():
            raise ServiceError(f"{source} page of {len(html)} characters is cut short (no closing </html>)")
        doc = parse_ar5iv_html(html, released_cite_split, released_titles, source)
        if any(p.startswith("unparseable page") for p in doc.problems):
            raise ServiceError(f"{source} page does not parse: {doc.reason}")
        return doc
    if resp.history or "/abs/" in (resp.url or "") or any(m in html for m in ABS_PAGE_MARKERS):
        raise PaperNotFoundError(
            f"no HTML version at {resp.request.url if resp.request else ''} (answered {resp.url})"
        )
    what = "an empty answer" if not html.strip() else f"{len(html)} characters that are not a LaTeXML page"
    raise ServiceError(f"{source} answered {what}")


def fetch_ar5iv_document(
    http: HttpClient,
    arxiv_id: str,
    url_template: str = AR5IV_URL,
    released_cite_split: bool = False,
    released_titles: bool = False,
    source: str = "ar5iv",
) -> Ar5ivDocument:
    """The parsed LaTeXML page of a paper (parsed inside the HTTP layer: a bad page is never cached).

    Raises:
        PaperNotFoundError: no HTML version (a 404, or a redirect to the abstract page).
        ServiceError: HTTP failure after retries, or a page that never parsed (``BadAnswerError``).
    """
    return _get_ar5iv(
        http,
        arxiv_id,
        url_template,
        lambda resp: check_ar5iv_answer(resp, released_cite_split, released_titles, source),
    )


def fetch_ar5iv_html(http: HttpClient, arxiv_id: str, url_template: str = AR5IV_URL) -> str:
    """The LaTeXML page of a paper, validated like ``fetch_ar5iv_document``.

    Raises:
        PaperNotFoundError: no HTML version (not a LaTeXML page).
        ServiceError: HTTP failure after retries (a 404 is a ``PaperNotFoundError``).
    """

    def check(resp) -> str:
        check_ar5iv_answer(resp)
        return resp.text

    return _get_ar5iv(http, arxiv_id, url_template, check)


def _get_ar5iv(http: HttpClient, arxiv_id: str, url_template: str, parse):
    """``parse(response)`` of the paper's page; a 404 or a page that is not LaTeXML is ``PaperNotFoundError``."""
    from pasa.tools.http import HTTPStatusError

    url = url_template.format(arxiv_id=normalize_arxiv_id(arxiv_id))
    try:
        return http.get_parsed(url, parse)
    except HTTPStatusError as err:
        if err.status_code == 404:
            raise PaperNotFoundError(f"no HTML page for {arxiv_id!r} at {url}") from err
        raise
    except PaperNotFoundError as err:
        raise PaperNotFoundError(f"no HTML version of {arxiv_id!r} at {url}: {err}") from err


class UnparsedBibliographyError(ServiceError):
    """A page whose sections cite references that its bibliography does not give (no ``ltx_biblist``, or no
    title or id in any cited entry): the full text is there but its citations could not be read."""


def fetch_section_citations(
    http: HttpClient,
    arxiv_id: str,
    url_template: str = AR5IV_URL,
    released_cite_split: bool = False,
    released_titles: bool = False,
    source: str = "ar5iv",
    title_extractor=None,
) -> CitedSections:
    """Section name -> cited titles for a paper (released ``search_section_by_arxiv_id``), with the cited arXiv ids
    (``section_ids``) and ``source`` naming the page; ``{}`` if the page parsed but cites nothing (a fact about the
    paper, logged at INFO). ``title_extractor`` (``pasa.tools.title_llm.LLMTitleExtractor``) rereads the titles the
    rules could not read, in one call for the page.

    Raises:
        PaperNotFoundError: no HTML version.
        UnparsedBibliographyError: the sections cite references the bibliography does not give.
        ServiceError: HTTP failure after retries, or a page that never parsed.
    """
    doc = fetch_ar5iv_document(http, arxiv_id, url_template, released_cite_split, released_titles, source)
    if title_extractor is not None and title_extractor.refine(doc.references.values()):
        doc.section_citations = cited_titles(doc.section_cites, doc.references, source)
    check_bibliography(doc, arxiv_id)
    if not doc.section_citations:
        logger.info("%s page of %s has no citable sections: %s", source, arxiv_id, doc.reason or "no citations")
    return doc.section_citations


def check_bibliography(doc: Ar5ivDocument, arxiv_id: str) -> None:
    """[pure] Raise ``UnparsedBibliographyError`` when the page's sections cite references but none could be read."""
    cited = sum(len(ids) for ids in doc.section_cites.values())
    if cited and not doc.section_citations:
        raise UnparsedBibliographyError(
            f"page of {arxiv_id} cites {cited} references but its bibliography gave none "
            f"({doc.reason or 'no title or arXiv id in the cited entries'})"
        )
