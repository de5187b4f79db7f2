"""How well the ar5iv parser reads cited titles and arXiv ids, in the default and the released mode.

Two kinds of page:

* **unarXive page** — a LaTeXML-shaped page built from the hand-labelled reference strings of
  ``tests/fixtures/unarxive/bib_titles.jsonl`` (the ones that carry a title), every reference one ``ltx_bibblock``
  (as hand-written ``\\bibitem`` lists and styles without ``\\newblock`` render) or split into author / title / venue
  blocks. The arXiv ids the strings write were read by hand into ``bib_written_ids.jsonl``.
* **LaTeXML pages** — real ``latexml`` output of one ``.bib`` in several bibliography styles, committed under
  ``tests/fixtures/latexml/`` with their gold titles and ids (``scripts/make_latexml_fixtures.py`` makes them).

Exact match compares ``pasa.tools.citations.normalize_for_match`` forms case-insensitively (styles such as
``plain`` lower-case titles); id recall is the share of written arXiv ids the parser returns.

    python bench/ar5iv_titles.py
"""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

from pasa.tools.ar5iv import parse_ar5iv_html
from pasa.tools.citations import extract_title, normalize_for_match

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
UNARXIVE = FIXTURES / "unarxive"
LATEXML = FIXTURES / "latexml"
MODES = {"default": {}, "released": {"released_cite_split": True, "released_titles": True}}


def unarxive_gold() -> list[dict]:
    """The labelled strings that carry a title, each with the arXiv id it writes (None when it writes none)."""
    written = {}
    for line in (UNARXIVE / "bib_written_ids.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        written[row["source"]] = row["arxiv_id"]
    rows = [json.loads(line) for line in (UNARXIVE / "bib_titles.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{**r, "written_id": written.get(r["source"])} for r in rows if r["title"]]


def _three_blocks(raw: str, title: str) -> list[str]:
    start = raw.index(title)
    return [raw[:start].strip(), raw[start : start + len(title)] + ".", raw[start + len(title) :].lstrip(". ")]


def latexml_page(references: list[list[str]]) -> str:
    """A page shaped like ar5iv's: one section citing every reference, one ``li.ltx_bibitem`` per reference with
    one ``span.ltx_bibblock`` per block."""
    items = []
    for n, blocks in enumerate(references, 1):
        spans = "\n".join(f'<span class="ltx_bibblock">{html_lib.escape(b)}\n</span>' for b in blocks)
        items.append(f'<li id="bib.bib{n}" class="ltx_bibitem">\n{spans}\n</li>')
    cites = ", ".join(f'<a href="#bib.bib{n}" class="ltx_ref">{n}</a>' for n in range(1, len(references) + 1))
    return (
        '<html><body><article class="ltx_document"><h1 class="ltx_title ltx_title_document">References</h1>'
        '<div class="ltx_abstract"><p>Cited references.</p></div>'
        f'<section class="ltx_section" id="S1"><h2 class="ltx_title">1 Cited</h2><div class="ltx_para"><p>Text '
        f'<cite class="ltx_cite">[{cites}]</cite>.</p></div></section>'
        '<section class="ltx_bibliography" id="bib"><h2 class="ltx_title">References</h2>'
        f'<ul class="ltx_biblist">{"".join(items)}</ul></section></article></body></html>'
    )


def score_page(page: str, gold: dict[str, dict], mode: str, title_extractor=None) -> dict[str, float]:
    """Exact titles and arXiv id recall of a page's parsed references against ``gold`` (li id -> title, id);
    ``title_extractor`` (``pasa.tools.title_llm.LLMTitleExtractor``) rereads the unread titles first."""
    refs = parse_ar5iv_html(page, **MODES[mode]).references
    if title_extractor is not None:
        title_extractor.refine(refs.values())
    exact = sum(
        normalize_for_match(refs[k].title).casefold() == normalize_for_match(g["title"]).casefold()
        for k, g in gold.items()
        if k in refs
    )
    with_id = [k for k, g in gold.items() if g.get("arxiv_id")]
    found = sum(k in refs and refs[k].arxiv_id == gold[k]["arxiv_id"] for k in with_id)
    return {
        "n": len(gold),
        "exact": exact / (len(gold) or 1),
        "ids": len(with_id),
        "id_recall": found / (len(with_id) or 1),
    }


def unarxive_scores() -> dict[str, dict[str, float]]:
    """Per (blocks, mode): the unarXive page scores."""
    rows = unarxive_gold()
    gold = {f"bib.bib{n}": {"title": r["title"], "arxiv_id": r["written_id"]} for n, r in enumerate(rows, 1)}
    pages = {
        "one block": latexml_page([[r["raw"]] for r in rows]),
        "three blocks": latexml_page([_three_blocks(r["raw"], r["title"]) for r in rows]),
    }
    return {f"{blocks}, {mode}": score_page(page, gold, mode) for blocks, page in pages.items() for mode in MODES}


def latexml_scores() -> dict[str, dict[str, float]]:
    """Per (style, mode): the committed LaTeXML pages' scores, plus the total over styles."""
    out: dict[str, dict[str, float]] = {}
    gold_all = json.loads((LATEXML / "gold.json").read_text(encoding="utf-8"))
    for mode in MODES:
        total = {"n": 0, "exact": 0.0, "ids": 0, "found": 0.0}
        for style, gold in gold_all.items():
            page = (LATEXML / f"{style}.html").read_text(encoding="utf-8")
            s = out[f"{style}, {mode}"] = score_page(page, gold, mode)
            total["n"] += s["n"]
            total["exact"] += s["exact"] * s["n"]
            total["ids"] += s["ids"]
            total["found"] += s["id_recall"] * s["ids"]
        out[f"all styles, {mode}"] = {
            "n": total["n"],
            "exact": total["exact"] / (total["n"] or 1),
            "ids": total["ids"],
            "id_recall": total["found"] / (total["ids"] or 1),
        }
    return out


def oracle_llm(pages: list[tuple[str, dict[str, dict]]]):
    """A scripted model that answers each numbered reference with its gold title: the most the LLM step can add."""
    from pasa.llm.scripted import ScriptedLLM

    answers = {}
    for page, gold in pages:
        refs = parse_ar5iv_html(page).references
        answers.update({refs[k].text: g["title"] for k, g in gold.items() if k in refs})

    def reply(prompt: str) -> str:
        lines = re.findall(r"^\d+\. (.*)$", prompt.split("\n\n", 1)[1], flags=re.MULTILINE)
        return json.dumps([answers.get(line, "") for line in lines])

    return ScriptedLLM(reply_fn=reply)


def llm_scores() -> dict[str, dict[str, float]]:
    """The default mode with the LLM step (an oracle scripted model) on the unarXive one-block page and the
    LaTeXML pages: exact titles and how many references each page sent to the model."""
    from pasa.tools.title_llm import LLMTitleExtractor

    rows = unarxive_gold()
    pages = {"unarXive one block": (latexml_page([[r["raw"]] for r in rows]),
                                    {f"bib.bib{n}": {"title": r["title"], "arxiv_id": r["written_id"]}
                                     for n, r in enumerate(rows, 1)})}  # fmt: skip
    gold_all = json.loads((LATEXML / "gold.json").read_text(encoding="utf-8"))
    for style, gold in gold_all.items():
        pages[style] = ((LATEXML / f"{style}.html").read_text(encoding="utf-8"), gold)
    llm = oracle_llm(list(pages.values()))
    out = {}
    for name, (page, gold) in pages.items():
        extractor = LLMTitleExtractor(llm)
        before = len(llm.calls)
        out[name] = score_page(page, gold, "default", extractor)
        out[name]["calls"] = len(llm.calls) - before
        out[name]["sent"] = len(extractor.cache)
    return out


def main() -> None:
    rows = unarxive_gold()
    alone = sum(
        normalize_for_match(extract_title(r["raw"])).casefold() == normalize_for_match(r["title"]).casefold()
        for r in rows
    )
    print(f"extract_title alone on the {len(rows)} titled unarXive strings: {alone}/{len(rows)} exact")
    for name, table in (("unarXive page", unarxive_scores()), ("LaTeXML pages", latexml_scores())):
        print(f"\n{name}")
        print(f"{'page, mode':34s} {'refs':>5s} {'exact':>7s} {'ids':>4s} {'id recall':>9s}")
        for key, s in table.items():
            print(f"{key:34s} {s['n']:5d} {s['exact']:7.1%} {s['ids']:4d} {s['id_recall']:9.1%}")
    print("\ndefault mode + LLM title step (oracle scripted model: the most it can add)")
    print(f"{'page':34s} {'refs':>5s} {'sent':>5s} {'calls':>5s} {'exact':>7s}")
    for key, s in llm_scores().items():
        print(f"{key:34s} {s['n']:5d} {s['sent']:5d} {s['calls']:5d} {s['exact']:7.1%}")


if __name__ == "__main__":
    main()
