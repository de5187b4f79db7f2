"""Live counts of the agent's stages while one query runs (``pasa run --query``'s status line).

:class:`StageProgress` counts, per layer, what the agent did: layer 0 is the search round (crawler queries,
searches, id lookups, selector), layer N the N-th expansion (section fetches, crawler, citation lookups, selector).
The agent reports each step as an event: ``PaperAgent.run(..., on_event=progress.on_event)``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter


class StageProgress:
    """Counts of the agent's stages while one query runs, per layer: layer 0 is the search (crawler queries,
    searches, id lookups, selector), layer N the N-th expansion (section fetches, crawler, citation lookups,
    selector).

    Fed by the agent's events (:meth:`on_event`). The agent streams, so layers overlap and all counts run at once.
    ``on_update`` (a live status) sees every change; ``write`` gets the lines at most every ``interval`` seconds
    while counts change (for logs, where there is no live status) and once at the end.
    """

    def __init__(self, write=None, on_update=None, interval: float = 10.0):
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))
        self.on_update = on_update
        self.interval = interval
        self.counts: Counter = Counter()  # (layer, key) -> n
        self.started = time.perf_counter()
        self._last_write = self.started
        self._written = ""
        self._lock = threading.Lock()  # a server may read the text while the agent's thread counts

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
