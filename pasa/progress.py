"""Live counts of the agent's stages while one query runs (``pasa run --query``'s status line).

:class:`StageProgress` counts, per layer, what the agent did: layer 0 is the search round (crawler queries,
searches, id lookups, selector), layer N the N-th expansion (section fetches, crawler, citation lookups, selector).
An agent that reports its own events (``PaperAgent.run(..., on_event=progress.on_event)``) feeds it directly;
:func:`with_stage_progress` feeds it from an agent that does not, by wrapping its crawler, selector and source.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from pasa.paper import normalize_arxiv_id

if TYPE_CHECKING:
    from pasa.agent import PaperAgent


class StageProgress:
    """Counts of the agent's stages while one query runs, per layer: layer 0 is the search (crawler queries,
    searches, id lookups, selector), layer N the N-th expansion (section fetches, crawler, citation lookups,
    selector).

    Fed by the agent's events (:meth:`on_event`), or by the wrappers of :func:`with_stage_progress`, which place
    each call in its layer from the papers it concerns (a paper found by search is at depth 0; one cited by a
    depth-d paper at depth d + 1). The agent streams, so layers overlap and all counts run at once. ``on_update``
    (a live status) sees every change; ``write`` gets the lines at most every ``interval`` seconds while counts
    change (for logs, where there is no live status) and once at the end.
    """

    def __init__(self, write=None, on_update=None, interval: float = 10.0):
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))
        self.on_update = on_update
        self.interval = interval
        self.counts: Counter = Counter()  # (layer, key) -> n
        self.started = time.perf_counter()
        self._last_write = self.started
        self._written = ""
        self._lock = threading.Lock()
        # what the wrappers learned about the run's papers (guarded by _lock)
        self.title_depth: dict[str, int] = {}  # paper title (and cited string) -> depth
        self.id_depth: dict[str, int] = {}  # arXiv id -> depth
        self.sections: dict[str, dict] = {}  # paper title -> its sections (section -> cited titles)
        self.section_ids: dict[str, dict] = {}  # paper title -> its cited arXiv ids, parallel to sections
        self.id_title: dict[str, str] = {}  # arXiv id -> title

    def add(self, key: str, n: int = 1, layer: int = 0) -> None:
        with self._lock:
            self.counts[(layer, key)] += n
            text = self.text()
            due = self.interval and time.perf_counter() - self._last_write >= self.interval
            if due:
                self._last_write = time.perf_counter()
        if self.on_update is not None:
            self.on_update(text)
        if due:
            self._emit(text)

    def on_event(self, event) -> None:
        """Count one ``pasa.agent.AgentEvent`` (``kind`` is one of the stage keys, ``layer`` its layer)."""
        self.add(event.kind, event.count, event.layer)

    def learn(self, paper, depth: int) -> None:
        """Record a paper the source returned, at ``depth`` (the first depth seen wins, as ``touch_ids``)."""
        if paper is None:
            return
        with self._lock:
            self.title_depth.setdefault(paper.title, depth)
            if paper.arxiv_id:
                self.id_depth.setdefault(normalize_arxiv_id(paper.arxiv_id), depth)
                self.id_title.setdefault(normalize_arxiv_id(paper.arxiv_id), paper.title)
            if isinstance(paper.sections, dict):
                self.sections.setdefault(paper.title, paper.sections)
                if getattr(paper, "section_ids", None):
                    self.section_ids.setdefault(paper.title, paper.section_ids)

    def finish(self) -> None:
        with self._lock:
            text = self.text()
        self._emit(text)

    def _emit(self, text: str) -> None:
        if text != self._written:
            self._written = text
            self.write(text)

    def text(self) -> str:
        """One line per stage started::

        [12.3s] search: 5 queries, 5 calls -> 47 ids, 40 lookups; selector 38 scored, 6 selected
        [12.3s] layer 1: 30 sections fetched, crawler 30 papers -> 61 sections, 220 lookups -> 150 found; ...
        """
        c = self.counts
        elapsed = f"[{time.perf_counter() - self.started:.1f}s]"
        layers = sorted({layer for layer, _ in c})
        lines = []
        for layer in layers or [0]:
            if layer == 0:
                line = (
                    f"search: {c[0, 'queries']} queries, {c[0, 'search']} calls -> {c[0, 'ids']} ids, "
                    f"{c[0, 'lookup']} lookups"
                )
            else:
                line = (
                    f"layer {layer}: {c[layer, 'sections']} sections fetched, crawler {c[layer, 'crawler']} papers "
                    f"-> {c[layer, 'chosen']} sections, {c[layer, 'lookup']} lookups -> {c[layer, 'found']} found"
                )
            line += f"; selector {c[layer, 'scored']} scored, {c[layer, 'selected']} selected"
            if c[layer, "failed"]:
                line += f"; {c[layer, 'failed']} failed calls"
            lines.append(f"{elapsed} {line}")
        return "\n".join(lines)


class _Delegate:
    def __init__(self, inner, progress: StageProgress):
        self._inner, self._progress = inner, progress

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _ProgressCrawler(_Delegate):
    """Counts the crawler's search queries and expansions; marks the cited titles and ids of chosen sections."""

    def search_queries(self, *args, **kwargs):
        out = self._inner.search_queries(*args, **kwargs)
        self._progress.add("queries", len(out[0]) if isinstance(out, tuple) else len(out))
        return out

    def expand_sections(self, user_query, papers, *args, **kwargs):
        out = self._inner.expand_sections(user_query, papers, *args, **kwargs)
        p = self._progress
        per_layer: Counter = Counter()
        for item, (chosen, *_) in zip(papers, out, strict=False):
            title = item[0]
            with p._lock:
                layer = p.title_depth.get(title, 0) + 1
                sections, ids = p.sections.get(title) or {}, p.section_ids.get(title) or {}
                for section in chosen:
                    for cited in sections.get(section) or []:
                        if isinstance(cited, str):
                            p.title_depth.setdefault(cited, layer)
                    for arxiv_id in ids.get(section) or []:
                        if arxiv_id:
                            p.id_depth.setdefault(normalize_arxiv_id(arxiv_id), layer)
            per_layer[layer, "crawler"] += 1
            per_layer[layer, "chosen"] += len(chosen)
        for (layer, key), n in per_layer.items():
            p.add(key, n, layer)
        return out


class _ProgressSelector(_Delegate):
    def score(self, user_query, papers, *args, **kwargs):
        scores = self._inner.score(user_query, papers, *args, **kwargs)
        p = self._progress
        per_layer: Counter = Counter()
        for (title, *_), score in zip(papers, scores, strict=False):
            with p._lock:
                layer = p.title_depth.get(title, 0)
            per_layer[layer, "scored"] += 1
            per_layer[layer, "selected"] += bool(self._inner.is_selected(score))
        for (layer, key), n in per_layer.items():
            p.add(key, n, layer)
        return scores


class _ProgressSource(_Delegate):
    def _call(self, key: str, layer: int, method: str, *args, **kwargs):
        try:
            out = getattr(self._inner, method)(*args, **kwargs)
        except Exception:
            self._progress.add("failed", 1, layer)
            raise
        self._progress.add(key, 1, layer)
        return out

    def search(self, *args, **kwargs):
        ids = self._call("search", 0, "search", *args, **kwargs)
        self._progress.add("ids", len(ids or []))
        return ids

    def get_by_id(self, arxiv_id, *args, **kwargs):
        with self._progress._lock:  # a cited id (expansion) or a search result (layer 0)
            layer = self._progress.id_depth.get(normalize_arxiv_id(arxiv_id), 0)
        paper = self._call("lookup", layer, "get_by_id", arxiv_id, *args, **kwargs)
        if paper is not None and layer:
            self._progress.add("found", 1, layer)
        self._progress.learn(paper, layer)
        return paper

    def get_sections(self, arxiv_id, *args, **kwargs):
        p, key = self._progress, normalize_arxiv_id(arxiv_id)
        with p._lock:
            depth = p.id_depth.get(key, 0)
        sections = self._call("sections", depth + 1, "get_sections", arxiv_id, *args, **kwargs)
        with p._lock:
            if isinstance(sections, dict) and sections and key in p.id_title:
                p.sections[p.id_title[key]] = sections  # the agent expands these (fetched sections carry no ids)
                p.section_ids.pop(p.id_title[key], None)
        return sections

    def get_by_title(self, title, *args, **kwargs):
        with self._progress._lock:
            layer = self._progress.title_depth.get(title, 1)
        paper = self._call("lookup", layer, "get_by_title", title, *args, **kwargs)
        if paper is not None:
            self._progress.add("found", 1, layer)
        self._progress.learn(paper, layer)
        return paper


def with_stage_progress(agent: PaperAgent, progress: StageProgress) -> PaperAgent:
    """A copy of ``agent`` whose crawler, selector and source report to ``progress`` (same results)."""
    from pasa.agent import PaperAgent

    return PaperAgent(
        _ProgressCrawler(agent.crawler, progress),
        _ProgressSelector(agent.selector, progress),
        _ProgressSource(agent.source, progress),
        agent.config,
    )
