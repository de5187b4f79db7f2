"""Throughput of the ar5iv parser (``pasa.tools.ar5iv.parse_ar5iv_html``) over saved pages.

Pages: the committed fixtures (``tests/fixtures/ar5iv_*.html``), any pages given with ``--pages`` (e.g. real ar5iv
pages saved under ../shared/data), and a synthetic full-size page built from the BERT fixture (its sections and
bibliography repeated 16 times: ~80 cited sections, ~180 references, ~180 KiB), since the fixtures
are hand-trimmed and much smaller than real pages.

    python bench/parse_ar5iv.py
    python bench/parse_ar5iv.py --pages '../shared/data/ar5iv/*.html' --seconds 5
"""

from __future__ import annotations

import argparse
import glob
import re
import statistics
import time
from pathlib import Path

from pasa.tools.ar5iv import parse_ar5iv_html

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def synthetic_full_page(copies: int = 16) -> str:
    """The BERT fixture with its body sections and bibliography repeated ``copies`` times (ids made unique)."""
    html = (FIXTURES / "ar5iv_1810.04805.html").read_text(encoding="utf-8")
    body_start = html.index('<section class="ltx_section" id="S1">')
    bib_start = html.index('<section class="ltx_bibliography"')
    items_start, items_end = html.index("<li class", bib_start), html.index("</ul>", bib_start)
    body, items = html[body_start:bib_start], html[items_start:items_end]
    bodies, bibs = [], []
    for c in range(copies):
        renumber = lambda m, c=c: f"bib.bib{c + 1}{int(m.group(1)):03d}"  # noqa: E731  (real-shaped, unique)
        copy = re.sub(r"bib\.bib(\d+)", renumber, re.sub(r'id="S(\d)', rf'id="C{c}S\1', body))
        copy = re.sub(r'(ltx_tag_(?:sub)*section">)', rf"\g<1>{c}.", copy)  # distinct section titles per copy
        bodies.append(copy)
        bibs.append(re.sub(r"bib\.bib(\d+)", renumber, items))
    return html[:body_start] + "".join(bodies) + html[bib_start:items_start] + "".join(bibs) + html[items_end:]


def bench_page(name: str, html: str, seconds: float) -> dict:
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        doc = parse_ar5iv_html(html)
        times.append(time.perf_counter() - start)
    return {
        "name": name,
        "kb": len(html.encode("utf-8")) / 1024,
        "sections": len(doc.section_citations),
        "refs": len(doc.references),
        "ms": statistics.median(times) * 1000,
        "pages_s": 1 / statistics.median(times),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default=None, help="glob of extra saved pages to parse")
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per page")
    args = parser.parse_args(argv)

    pages = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("ar5iv_*.html"))]
    pages.append(("synthetic full-size page", synthetic_full_page()))
    for path in sorted(glob.glob(args.pages)) if args.pages else []:
        pages.append((Path(path).name, Path(path).read_text(encoding="utf-8", errors="replace")))

    print(f"{'page':<32} {'KiB':>7} {'sections':>8} {'refs':>5} {'ms/page':>8} {'pages/s':>8}")
    results = [bench_page(name, html, args.seconds) for name, html in pages]
    for r in results:
        print(f"{r['name']:<32} {r['kb']:7.1f} {r['sections']:8d} {r['refs']:5d} {r['ms']:8.2f} {r['pages_s']:8.1f}")
    total_kb = sum(r["kb"] for r in results)
    total_s = sum(r["ms"] for r in results) / 1000
    print(f"throughput: {total_kb / 1024 / total_s:.2f} MiB of HTML per second (single thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
