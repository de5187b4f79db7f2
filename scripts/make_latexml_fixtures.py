"""Render one real ``.bib`` through BibTeX and LaTeXML in several bibliography styles: the fixture pages on which
the ar5iv parser's titles and arXiv ids are measured (``bench/ar5iv_titles.py``, ``tests/pasa/tools``).

For each style: a small article citing every entry (two sections, multi-reference ``\\cite``s) gets its ``.bbl``
from ``bibtex`` and is converted by ``latexml`` + ``latexmlpost`` with only the ``.bbl`` beside it, as arXiv
sources are (ar5iv renders what the authors' ``.bbl`` says). Two more pages: ``latexml_bib``, LaTeXML formatting the
``.bib`` itself (what ar5iv does when a source ships the ``.bib``), and ``handwritten``, a hand-typed
``\\bibitem`` list of the same papers (``source/handwritten.tex``). The pages, trimmed of their stylesheet links,
go to ``tests/fixtures/latexml/<style>.html``; ``gold.json`` maps each page's ``bib.bibN`` to the entry's title
(from the ``.bib``, braces removed) and the arXiv id it carries (read by hand, ``ARXIV_IDS``).

Needs Debian's ``latexml`` and ``bibtex`` (TeX Live styles). Takes about a minute:

    python scripts/make_latexml_fixtures.py
    python scripts/make_latexml_fixtures.py --out /tmp/latexml_pages
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pasa.paper import title_key

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "latexml"
SOURCE = FIXTURES / "source"
BIB = SOURCE / "conv_arithmetic.bib"
HANDWRITTEN = SOURCE / "handwritten.tex"
# style -> (BibTeX style, LaTeX packages): numeric (plain, abbrv, ieeetr, siam), author-year (plainnat, apalike:
# "Authors (Year). Title." as ACL/APA styles), and the AMS comma style of mathematics and physics papers
STYLES = {
    "plain": ("plain", ""),
    "abbrv": ("abbrv", ""),
    "ieeetr": ("ieeetr", ""),
    "siam": ("siam", ""),
    "plainnat": ("plainnat", r"\usepackage{natbib}"),
    "apalike": ("apalike", ""),
    "amsplain": ("amsplain", ""),
}
# The arXiv identifier each entry carries (in its journal field or url), read by hand from the .bib
ARXIV_IDS = {
    "bastien2012theano": "1211.5590",
    "chen2014semantic": "1412.7062",
    "radford2015unsupervised": "1511.06434",
    "im2016generating": "1602.05110",
    "visin15": "1511.07053",
    "yu2015multi": "1511.07122",
    "oord2016wavenet": "1609.03499",
}
ENTRY_RE = re.compile(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", re.DOTALL)
TITLE_RE = re.compile(r"\btitle\s*=\s*[{\"](.*?)[}\"]\s*,?\s*\n", re.DOTALL | re.IGNORECASE)
BIBITEM_RE = re.compile(r"\\bibitem\s*(?:\[(?:[^\[\]]|\[[^\]]*\])*\])?\s*\{([^}]+)\}")

DOCUMENT = r"""\documentclass{article}
%(packages)s
\begin{document}
\title{Bibliography fixture: %(style)s}
\author{PaSa tests}
\maketitle
\begin{abstract}A page that cites every entry of one bibliography.\end{abstract}
\section{Introduction}
Early work %(first)s.
\section{Related Work}
Later work %(second)s.
%(bibliography)s
\end{document}
"""


def read_bib(path: Path) -> dict[str, str]:
    """Entry key -> title with braces removed, in file order."""
    entries = {}
    for key, body in ENTRY_RE.findall(path.read_text(encoding="utf-8")):
        match = TITLE_RE.search(body + "\n")
        entries[key] = " ".join(match.group(1).replace("{", "").replace("}", "").split()) if match else ""
    return entries


def _cites(keys: list[str]) -> str:
    return " ".join(r"\cite{" + ",".join(keys[i : i + 3]) + "}" for i in range(0, len(keys), 3))


def render(workdir: Path, style: str, bibstyle: str | None, packages: str, keys: list[str], bib: Path) -> str:
    """The LaTeXML page of a document citing ``keys`` (``bibstyle`` None: the hand-written list)."""
    half = len(keys) // 2
    if bibstyle is None:
        bibliography = HANDWRITTEN.read_text(encoding="utf-8")
    else:
        bibliography = rf"\bibliographystyle{{{bibstyle}}}" + "\n" + rf"\bibliography{{{bib.stem}}}"
    tex = DOCUMENT % {
        "packages": packages,
        "style": style,
        "first": _cites(keys[:half]),
        "second": _cites(keys[half:]),
        "bibliography": bibliography,
    }
    (workdir / "doc.tex").write_text(tex, encoding="utf-8")
    if bibstyle is not None:
        shutil.copy(bib, workdir / bib.name)
        aux = "".join(rf"\citation{{{k}}}" + "\n" for k in keys)
        aux += rf"\bibstyle{{{bibstyle}}}" + "\n" + rf"\bibdata{{{bib.stem}}}" + "\n"
        (workdir / "doc.aux").write_text(aux, encoding="utf-8")
        subprocess.run(["bibtex", "doc"], cwd=workdir, check=True, capture_output=True)
        if style != "latexml_bib":
            (workdir / bib.name).unlink()  # only the .bbl, as in an arXiv source
    subprocess.run(["latexml", "--quiet", "--dest=doc.xml", "doc.tex"], cwd=workdir, check=True, capture_output=True)
    subprocess.run(
        ["latexmlpost", "--quiet", "--format=html5", "--dest=doc.html", "doc.xml"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    html = (workdir / "doc.html").read_text(encoding="utf-8")
    return re.sub(r'<link rel="stylesheet"[^>]*>\n?', "", html)


def gold_of(html: str, order: list[str], titles: dict[str, str], by_title: bool) -> dict[str, dict]:
    """``bib.bibN`` -> gold title and id (when the page prints it): by ``.bbl`` order, or (LaTeXML's own sorting)
    by the entry whose title the item's text contains."""
    ids = re.findall(r'<li id="(bib\.bib\w+)"', html)
    if not by_title:
        if len(ids) != len(order):
            raise SystemExit(f"{len(ids)} references on the page, {len(order)} in the .bbl")
        keys = order
    else:
        items = re.split(r'<li id="bib\.bib\w+"', html)[1:]
        keys = []
        for item in items:
            text = title_key(re.sub(r"<[^>]+>", " ", item))
            hits = [k for k in order if titles[k] and title_key(titles[k]) in text]
            if len(hits) != 1:
                raise SystemExit(f"cannot tell which entry a reference is: {hits}")
            keys.append(hits[0])
    items = dict(zip(ids, re.split(r'<li id="bib\.bib\w+"', html)[1:]))
    gold = {}
    for bib_id, k in zip(ids, keys):  # an id counts where the style prints it (plain drops a .bib url field)
        arxiv_id = ARXIV_IDS.get(k)
        gold[bib_id] = {
            "key": k,
            "title": titles[k],
            "arxiv_id": arxiv_id if arxiv_id and arxiv_id in items[bib_id] else None,
        }
    return gold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(FIXTURES), help="Folder for the pages and gold.json.")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    titles = read_bib(BIB)
    handwritten_keys = BIBITEM_RE.findall(HANDWRITTEN.read_text(encoding="utf-8"))
    jobs = {name: (bst, pkg, list(titles)) for name, (bst, pkg) in STYLES.items()}
    jobs["latexml_bib"] = ("plain", "", list(titles))
    jobs["handwritten"] = (None, "", handwritten_keys)
    gold: dict[str, dict] = {}
    for name, (bibstyle, packages, keys) in jobs.items():
        with tempfile.TemporaryDirectory() as tmp:
            html = render(Path(tmp), name, bibstyle, packages, keys, BIB)
            bbl = Path(tmp) / "doc.bbl"
            order = BIBITEM_RE.findall(bbl.read_text(encoding="utf-8")) if bbl.exists() else keys
        gold[name] = gold_of(html, order, titles, by_title=name == "latexml_bib")
        if name == "handwritten":  # typed without a title
            gold[name] = {
                k: {**g, "title": ""} if g["key"] == "im2016generating" else g for k, g in gold[name].items()
            }
        (out / f"{name}.html").write_text(html, encoding="utf-8")
        print(f"{name}: {len(gold[name])} references, {len(html) // 1024} KiB")
    (out / "gold.json").write_text(json.dumps(gold, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
