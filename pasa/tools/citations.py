"""[pure] The title of a cited paper from a raw bibliography string, as written in a paper's reference list.

unarXive keeps each reference as the string the authors wrote (``bib_entry_raw``); a PaSa paper database maps a
section to the *titles* it cites, so a reference without a resolved arXiv id needs its title read out of that
string. ``extract_title`` does it with rules for the common reference styles, and returns ``""`` when the string
carries no title (physics and astronomy styles often cite ``Authors, Journal Vol, page (Year)`` only), so the
database never records a journal name or an author list as a title.

The rules, in order (first that applies wins):

1. **Quoted title** (IEEE, APS, many physics styles): the first ``“...”``/``"..."``/`````...''``` span of two or
   more words that is not a URL.
2. **Author list**: a run of person names from the start (``J. B. Hough``, ``Ball, J. M.``, ``Bayles AV``,
   ``Alex M Lamb``, joined by ``,``/``;``/``and``/``&``, optionally ``et al.``), then what ends it decides the style:

   * ``(2014).`` (APA) or ``. 2019.`` (ACL/AAAI natbib): the title is the next sentence;
   * ``. `` (plain/amsplain, Vancouver) or ``: `` (Springer LNCS): the title is the next sentence;
   * `` 2017, `` (astronomy): a title only when the next comma-field is not a venue (most are not titles);
   * ``, `` (AMS/physics comma style): no title when the next field is a journal reference (``Nature 574, 505``,
     ``Phys. Rev. D 104 (2021)``); otherwise the title runs to the comma before the venue.

3. Otherwise ``""``.

A "sentence" ends at ``. ``/``? ``/``! `` followed by a capital, digit or bracket (so ``i.i.d. random`` and
``Experimental. and`` stay inside), at ``, volume``/``, In ``/``, pages`` and at a trailing ``(2020)``.

Web and software references (``Title, accessed: 2022-09-11``) are taken first: the field before the date. An
enumeration inside a comma-style title (``Principles, Algorithms, and Applications``) stays in it.

Measured on 219 hand-read strings of the unarXive sample (``tests/fixtures/unarxive/bib_titles.jsonl``; 45 of
them labelled after the last revision and never tuned on: 0.956 exact match): see ``docs/build_db.md`` for exact
match and token F1, and the comparison with the released ar5iv split (``pasa.tools.ar5iv.parse_metadata``), which
always takes the second ``". "``-field and so returns a journal or an author for title-less references.
"""

from __future__ import annotations

import re

# -- cleaning -------------------------------------------------------------------------------------------------------
_LATEX_SPACE_RE = re.compile(r"\s*\d+(?:\.\d+)?em minus [\d.]+em\s*")  # \newblock spacing left by LaTeX-to-text
_SPACE_RE = re.compile(r"\s+")


def clean_reference(raw: str) -> str:
    """[pure] Whitespace, LaTeX quotes/ties and ``\\newblock`` spacing normalised.

    >>> clean_reference("Q.~Li and T.~Westerlund, ``Multi-Modal LiDAR Dataset,'' 2022.")
    'Q. Li and T. Westerlund, “Multi-Modal LiDAR Dataset,” 2022.'
    """
    text = raw.replace("~", " ").replace("``", "“").replace("''", "”")
    text = _LATEX_SPACE_RE.sub(". ", text)
    return _SPACE_RE.sub(" ", text).strip()


# -- names ----------------------------------------------------------------------------------------------------------
_UP = r"[^\W\d_a-z]"  # an upper-case letter, accented ones included (Python has no \p{Lu})
_INIT = rf"(?:Th|Ch|Sh|Ph|Kh|Zh|Ts|Sz|Gy|Yu|Ju|{_UP})\.(?:\s?-\s?{_UP}\.)?"  # J.  Th.  J.-F.
_INITS = rf"{_INIT}(?:\s?{_INIT})*"
_PART = r"(?:(?:van|von|de|der|den|da|di|del|della|la|le|du|dos|das|ter|ten|al|el|bin|v\.\s?d\.)\s)*"  # v. d. Oord
_CAPW = rf"(?:{_UP}[\w'’\-]*|[A-Z]\w*-\w+)"  # Hough, O’Rourke, Pinto-Gomez
_SUFFIX = r"(?:\s(?:Jr\.?|Sr\.?|II|III|IV))?"
_NAME = (
    rf"(?:{_INITS}\s?{_PART}{_CAPW}(?:\s{_CAPW})?{_SUFFIX}"  # J. B. Hough, W. A. Goddard III
    rf"|{_CAPW}(?:\s(?:{_INIT}|{_UP}\b|{_PART}{_CAPW})){{0,3}}\s{_PART}{_CAPW}{_SUFFIX}"  # Alex M Lamb, M Cerezo
    rf"|{_PART}{_CAPW}(?:\s{_PART}{_CAPW})?,\s(?:{_CAPW}\s)?{_INITS}(?:\s[a-z]\.){{0,2}}{_SUFFIX}"  # Ball, J. M.  Oord, A. v. d.
    rf"|{_PART}{_CAPW}\s(?:{_INITS}|[A-Z]{{1,3}}\b)"  # Aguilera D. N.   Bayles AV
    r")"
    # a name ends at a separator, never inside a phrase: "Smooth Kuranishi atlases" is not a person
    r"(?:(?<=\.)|(?=[,.;:]|\s(?:and\s|&|et\sal|[(\[“\"])|\s(?:1[89]|20)\d\d[a-z]?[,.]|$))"
)
_SEP = r"(?:,\s(?:and\s|&\s)?|;\s(?:and\s)?|\s(?:and|&)\s)"
_ETAL = r"(?:,?\s(?:et\sal\.?|and\sothers))?"
_COLLAB = r"(?:\s?[\[(][^\])]{1,30}[\])])?"  # [ZEUS], (ALICE)
AUTHORS_RE = re.compile(rf"^(?:{_NAME}(?:{_SEP}{_NAME})*{_ETAL}){_COLLAB}")

# -- what follows the author list -----------------------------------------------------------------------------------
_YEAR = r"(?:1[89]|20)\d\d[a-z]?"
_APA_RE = re.compile(rf"^\.?\s?\({_YEAR}\)\.?\s")  # "(2014). Title"
_NATBIB_RE = re.compile(rf"^\.?\s(?:\d{{1,2}}\s)?{_YEAR}\.\s")  # ". 2019. Title"
_ASTRO_RE = re.compile(rf"^,?\s{_YEAR},\s")  # " 2017, , 836" / ", 2009, Phys. Rev. Lett."
_QUOTE_RE = re.compile(r"[“\"]([^”\"]{3,}?)[,.]?\s?[”\"]")
_SENTENCE_END_RE = re.compile(
    r"(?:[.?!]\s(?=[A-Z0-9(\[]|In\s|arXiv|arxiv)"  # ". Journal", "? In Proc", ". 2020"
    r"|[.?!]$"
    rf"|,\s(?=volume\s|vol\.|pages\s|pp\.|[Ii]n[:\s]|arXiv|Preprint|preprint|{_YEAR}\b|\d)"
    rf"|\s\({_YEAR}\)\.?$"
    r"|\s(?=arXiv\spreprint))"
)
# "Nature 574, 505", "Phys. Rev. D 104 (2021)", "J. Phys. A 40, 3839", "RIMS Kokyuroku 439 (1981) 30"
_JOURNAL_REF_RE = re.compile(r"^[^,;“”\"]{1,80}?\s[A-Z]?\d+[a-z]?(?:\s?,|\s\(|\s?:|\sno\.|$)")
_VENUE_START_RE = re.compile(r"^(?:in[:\s]|In:\s|arXiv|ArXiv|Ph\.\s?D|PhD|preprint|Preprint|https?:|doi|DOI)")


def _strip(title: str) -> str:
    return title.strip().strip("“”\"'").strip().rstrip(",;:").strip()


def _first_sentence(text: str) -> str:
    match = _SENTENCE_END_RE.search(text)
    return _strip(text[: match.start()] if match else text)


_LONG_LOWER_RE = re.compile(r"\b[a-z]{4,}\b")
_ACCESSED_RE = re.compile(r"(?:^|,\s)([^,]+?),\s(?:last\s)?[Aa]ccessed\b")  # web/software: "Title, accessed: date"
_DIGIT_FIELD_RE = re.compile(rf"^(?:{_YEAR}|\(?\d)")


def _journal_ref(text: str) -> bool:
    """``Name 12, 345``-like, where the name has at most one long lower-case word (``Nature communications 12``,
    ``Phys. Rev. D 104 (2021)``), so a title ending in a number (``... in dimension 2 by 2``) is not one."""
    match = _JOURNAL_REF_RE.match(text)
    return bool(match) and len(_LONG_LOWER_RE.findall(match.group(0))) <= 1


def is_venue(field: str) -> bool:
    """A comma-field that is a venue or a journal reference rather than a title."""
    field = field.strip()
    if not field or _VENUE_START_RE.match(field) or _journal_ref(field):
        return True
    words = field.split()
    # abbreviations only ("Phys. Rev. Lett."), or a short name with no lower-case word ("Science", "Nature Physics")
    if all(w.endswith(".") or w[:1].isupper() for w in words) and (
        len(words) <= 3 or all(w.endswith(".") for w in words)
    ):
        return True
    return False


def _comma_title(rest: str) -> str:
    """Comma style: the title is the leading comma-fields up to the first venue-like one."""
    fields = rest.split(", ")
    if is_venue(fields[0]):
        return ""
    kept = [fields[0]]
    i = 1
    while i < len(fields):
        field = fields[i]
        if is_venue(field) or _DIGIT_FIELD_RE.match(field) or field[:1].isupper():
            # an enumeration inside the title ("Principles, Algorithms, and Applications"): short capitalised
            # fields closed by an "and ..." field
            end = next((j for j in range(i, min(i + 4, len(fields))) if fields[j].startswith("and ")), None)
            short = end is not None and all(
                len(f.split()) <= 3 and not _DIGIT_FIELD_RE.match(f) for f in fields[i:end]
            )
            if not (field[:1].isupper() and short):
                break
            kept += fields[i : end + 1]
            i = end + 1
            continue
        kept.append(field)
        i += 1
    title = ", ".join(kept)
    title = re.sub(rf"\s\({_YEAR}\)\.?$", "", title)
    title = re.split(r"\s\[(?:arXiv:|hep-|math|gr-qc|\d)", title)[0]
    return _first_sentence(title) if ". " in title and not re.search(r"\.\s[IVX]+\.\s", title) else _strip(title)


def extract_title(raw: str) -> str:
    """[pure] The cited paper's title in a raw reference string, or ``""`` when it carries none.

    >>> extract_title("T. Alazard, O. Lazar, and Q. H. Nguyen. On the dynamics of the roots of polynomials under "
    ...               "differentiation. Journal de Mathématiques Pures et Appliquées, 162:1–22, 2022.")
    'On the dynamics of the roots of polynomials under differentiation'
    >>> extract_title("W. E. Wong, R. Gao, and Y. Li, “A survey on software fault localization,” IEEE TSE, 2016.")
    'A survey on software fault localization'
    >>> extract_title("Devlin, J.; Chang, M.-W.; Lee, K.; and Toutanova, K. 2019. BERT: Pre-training of Deep "
    ...               "Bidirectional Transformers for Language Understanding. In NAACL.")
    'BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding'
    >>> extract_title("Cheng, Y., Wang, D., Zhou, P., Zhang, T.: A survey of model compression and acceleration for "
    ...               "deep neural networks. arXiv preprint arXiv:1710.09282 (2017)")
    'A survey of model compression and acceleration for deep neural networks'
    >>> extract_title("Ethier, S. N. and Lee, J. (2010). A Markovian slot machine and Parrondo's paradox. "
    ...               "The Annals of Applied Probability, 20(3), 1098-1125.")
    "A Markovian slot machine and Parrondo's paradox"
    >>> extract_title("R. Bartnik, The existence of maximal hypersurfaces in asymptotically flat spacetimes, "
    ...               "Commun. Math. Phys. 94 (1984), 155–175.")
    'The existence of maximal hypersurfaces in asymptotically flat spacetimes'
    >>> extract_title("Y. Cao, V. Fatemi, S. Fang, and P. Jarillo-Herrero, Nature 556, 43 (2018).")
    ''
    >>> extract_title("Airapetian, V. S., Glocer, A., Khazanov, G. V., et al. 2017, , 836, L3")
    ''
    """
    text = clean_reference(raw)
    if not text:
        return ""
    if accessed := _ACCESSED_RE.search(text):  # web pages and software cite no venue: the field before the date
        return _strip(accessed.group(1))
    for match in _QUOTE_RE.finditer(text):
        quoted = _strip(match.group(1))
        if " " in quoted and not quoted.lower().startswith(("http", "www.")):
            return quoted
    if text.startswith(","):  # ", Title, Journal": a repeated author list written as a dash, lost in LaTeX-to-text
        return _plausible(_comma_title(text.lstrip(",; ")))
    match = AUTHORS_RE.match(text)
    if match is None:
        return ""
    return _plausible(_title_after_authors(text, match.end()))


def _plausible(title: str) -> str:
    """``""`` for what is left of a journal reference rather than a title (``Phys``, ``A 40``)."""
    words = title.split()
    if len(words) < 2 or _journal_ref(title) or all(w.endswith(".") for w in words):
        return ""
    return title


def _title_after_authors(text: str, end: int) -> str:
    rest = text[end:]
    if (m := _APA_RE.match(rest)) or (m := _NATBIB_RE.match(rest)):
        return _first_sentence(rest[m.end() :])
    if m := _ASTRO_RE.match(rest):
        field = rest[m.end() :].split(", ")[0]
        return "" if is_venue(field) or len(field.split()) < 2 else _strip(field)
    if rest.startswith((". ", ": ")):
        return _first_sentence(rest[2:])
    if text[end - 1] == "." and rest.startswith(" "):  # the last initial's dot ends the list: "Ball, J. M. Title"
        return _first_sentence(rest[1:])
    if rest.startswith(", "):
        return _comma_title(rest[2:])
    return ""  # e.g. "David J. Griffiths Introduction to ..." (no separator after the names)


# -- measurement ----------------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"\w+")


def normalize_for_match(title: str) -> str:
    """[pure] What "exact match" compares: whitespace folded, outer quotes and trailing ``.,;:`` dropped."""
    return _strip(_SPACE_RE.sub(" ", title)).rstrip(".").strip()


def token_f1(predicted: str, gold: str) -> float:
    """[pure] SQuAD-style token F1 over lower-cased word tokens; two empty titles agree (1.0).

    >>> token_f1("Attention is all you need", "Attention Is All You Need."), token_f1("", "x"), token_f1("", "")
    (1.0, 0.0, 1.0)
    """
    from collections import Counter

    p, g = _TOKEN_RE.findall(predicted.lower()), _TOKEN_RE.findall(gold.lower())
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score_titles(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """[pure] Exact match (``normalize_for_match``), title-key match (letters only, what DB lookups compare) and
    mean token F1 of (predicted, gold) pairs, overall and on the strings that carry a title; ``no_title_acc`` is
    the share of title-less strings answered ``""``."""
    from pasa.paper import title_key

    def block(rows):
        n = len(rows) or 1
        return (
            sum(normalize_for_match(p) == normalize_for_match(g) for p, g in rows) / n,
            sum(title_key(p) == title_key(g) for p, g in rows) / n,
            sum(token_f1(p, g) for p, g in rows) / n,
        )

    with_title = [(p, g) for p, g in pairs if g]
    without = [(p, g) for p, g in pairs if not g]
    em, key_em, f1 = block(pairs)
    t_em, t_key_em, t_f1 = block(with_title)
    return {
        "n": len(pairs),
        "n_with_title": len(with_title),
        "exact_match": em,
        "key_match": key_em,
        "token_f1": f1,
        "exact_match_titled": t_em,
        "key_match_titled": t_key_em,
        "token_f1_titled": t_f1,
        "no_title_acc": sum(not p for p, _ in without) / (len(without) or 1),
    }
