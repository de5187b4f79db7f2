"""MicroBatcher: single model requests gathered into batched calls (issue 13).

The agent's loop submits one prompt at a time, as soon as that prompt's inputs are ready; the batcher decides when
to call the model: when ``batch_size`` prompts are waiting, when the loop reports that nothing else can arrive
before a model answers (``idle``), or when the oldest waiting prompt has waited ``wait_s``. At most
``max_concurrency`` calls are in flight: 1 for a model on one device (its calls would queue anyway, so waiting
prompts are gathered into the next call), more for a server that overlaps concurrent requests (waiting prompts are
then split evenly over the free slots).

The batcher has no thread of its own for bookkeeping: ``submit`` and ``dispatch`` are called from the loop's
thread, calls run in a small pool, and each finished call is handed back to the loop through ``emit`` so that
results are applied on the loop's thread, in a deterministic order (waiting prompts are sorted by their key).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallSpan:
    """One model call: how many prompts, when it started and ended (``time.perf_counter``)."""

    size: int
    start: float
    end: float = 0.0


@dataclass(order=True)
class _Request:
    key: Any
    seq: int
    item: Any = field(compare=False)
    callback: Callable[[Any], None] = field(compare=False)


class MicroBatcher:
    """Gather requests for one model method into calls of ``call(items) -> results`` (same length and order).

    Args:
        call: the batched model method, e.g. ``lambda items: selector.score(query, items)``.
        emit: hands ``(function, argument)`` to the loop's thread; the loop runs ``function(argument)``.
        batch_size: most prompts per call; 0 = no limit (the backend splits a call itself).
        max_concurrency: calls in flight at once.
        wait_s: longest a prompt waits for more prompts while tool calls are still running.
    """

    def __init__(
        self,
        call: Callable[[list], list],
        emit: Callable[[Callable[[Any], None], Any], None],
        batch_size: int = 0,
        max_concurrency: int = 1,
        wait_s: float = 0.25,
        name: str = "model",
    ):
        self.call = call
        self.emit = emit
        self.batch_size = max(0, batch_size)
        self.max_concurrency = max(1, max_concurrency)
        self.wait_s = wait_s
        self.pending: list[_Request] = []
        self.inflight = 0
        self.spans: list[CallSpan] = []
        self._oldest: float | None = None
        self._seq = 0
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix=f"pasa-{name}")

    def submit(self, key: Any, item: Any, callback: Callable[[Any], None]) -> _Request:
        """Queue one request; ``callback(result)`` runs on the loop's thread. Lower keys go first.

        Returns the request: its ``key`` may be changed while it waits (e.g. once a paper's rank is known).
        """
        self._seq += 1
        request = _Request(key, self._seq, item, callback)
        self.pending.append(request)
        if self._oldest is None:
            self._oldest = time.perf_counter()
        return request

    def deadline(self) -> float | None:
        """When the oldest waiting request is due (``perf_counter`` time); None when nothing waits."""
        return None if self._oldest is None else self._oldest + self.wait_s

    @property
    def busy(self) -> bool:
        return bool(self.pending) or self.inflight > 0

    def dispatch(self, idle: bool) -> None:
        """Start the calls that are due. ``idle``: nothing but a model answer can produce new requests."""
        while self.pending and self.inflight < self.max_concurrency:
            full = self.batch_size > 0 and len(self.pending) >= self.batch_size
            due = idle or time.perf_counter() >= (self.deadline() or math.inf)
            if not (full or due):
                return
            self.pending.sort()
            if due:  # everything waiting goes now, split evenly over the free slots
                take = math.ceil(len(self.pending) / (self.max_concurrency - self.inflight))
                if self.batch_size:
                    take = min(take, self.batch_size)
            else:
                take = self.batch_size
            batch, self.pending = self.pending[:take], self.pending[take:]
            if not self.pending:
                self._oldest = None
            self.inflight += 1
            span = CallSpan(len(batch), time.perf_counter())
            self.spans.append(span)
            self._pool.submit(self._run, batch, span)

    def _run(self, batch: list[_Request], span: CallSpan) -> None:
        try:
            results = self.call([r.item for r in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"model call returned {len(results)} results for {len(batch)} prompts")
            error = None
        except BaseException as err:  # handed to the loop, which re-raises it on its own thread
            results, error = None, err
        span.end = time.perf_counter()
        self.emit(self._finish, (batch, results, error))

    def _finish(self, payload) -> None:
        batch, results, error = payload
        self.inflight -= 1
        if error is not None:
            raise error
        for request, result in zip(batch, results, strict=True):
            request.callback(result)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
