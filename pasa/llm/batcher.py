"""MicroBatcher: single model requests, awaited one by one, gathered into batched calls.

A coroutine asks for one result, ``await batcher.submit(item, key)``, as soon as its inputs are ready; the batcher
decides when to call the model: when ``batch_size`` requests are waiting, when nothing but a model answer can
produce more requests (``idle()``, e.g. no tool call is running), or when the oldest waiting request has waited
``wait_s``. At most ``max_concurrency`` calls are in flight: 1 for a model on one device (its calls would queue
anyway, so waiting requests are gathered into the next call), more for a server that overlaps concurrent requests
(waiting requests are then split evenly over the free slots). A call takes the waiting requests in key order, so
results and the order of calls do not depend on which coroutine asked first.

The backends are synchronous: calls run in the batcher's own threads. Use it inside a running event loop::

    async with MicroBatcher(lambda items: selector.score(query, items)) as batcher:
        score = await batcher.submit(("A title", "An abstract"), key=0)
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# Loop passes a woken batcher yields before it decides: a finished tool call reaches the requests it leads to
# (lookup -> citation -> paper -> score request) within a few passes, and those requests should join the call.
# A poke during the passes starts them again, so the last tool call to end always gets all of them.
SETTLE_PASSES = 12


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
    future: asyncio.Future = field(compare=False)


class MicroBatcher:
    """Gather requests for one model method into calls of ``call(items) -> results`` (same length and order).

    Args:
        call: the batched model method, e.g. ``lambda items: selector.score(query, items)``.
        batch_size: most prompts per call; 0 = no limit (the backend splits a call itself).
        max_concurrency: calls in flight at once.
        wait_s: longest a request waits for company while ``idle()`` is False.
        idle: True when no request can arrive before a model call ends; then waiting requests go at once.
    """

    def __init__(
        self,
        call: Callable[[list], list],
        batch_size: int = 0,
        max_concurrency: int = 1,
        wait_s: float = 0.25,
        idle: Callable[[], bool] = lambda: True,
        name: str = "model",
    ):
        self.call = call
        self.batch_size = max(0, batch_size)
        self.max_concurrency = max(1, max_concurrency)
        self.wait_s = wait_s
        self.idle = idle
        self.name = name
        self.spans: list[CallSpan] = []
        self._pending: list[_Request] = []
        self._oldest: float | None = None
        self._inflight = 0
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()
        self._pool: ThreadPoolExecutor | None = None

    async def submit(self, item: Any, key: Any = 0) -> Any:
        """The model's result for ``item``. Lower keys go first when requests wait together."""
        if self._dispatcher is None:
            raise RuntimeError(f"{self.name} batcher is not running: use `async with batcher:`")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(key, next(self._seq), item, future))
        if self._oldest is None:
            self._oldest = time.perf_counter()
        self.poke()
        return await future

    def poke(self) -> None:
        """Something changed (a request arrived, a call or a tool call ended): look again at what is due."""
        if self._wake is not None:
            self._wake.set()

    async def __aenter__(self) -> MicroBatcher:
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix=f"pasa-{self.name}")
        self._dispatcher = asyncio.create_task(self._dispatch_forever())
        return self

    async def __aexit__(self, *exc) -> None:
        """Stop dispatching; calls still running finish in their threads (nobody waits for their results)."""
        tasks = [self._dispatcher, *self._calls]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = None
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    # -- dispatch ------------------------------------------------------------------------------------------------
    async def _dispatch_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._time_to_deadline())
            except TimeoutError:
                pass
            await self._settle()
            self._start_due_calls()

    async def _settle(self) -> None:
        """Yield SETTLE_PASSES loop passes in a row with no poke."""
        while True:
            self._wake.clear()
            for _ in range(SETTLE_PASSES):
                await asyncio.sleep(0)
            if not self._wake.is_set():
                return

    def _time_to_deadline(self) -> float | None:
        """Seconds until the oldest request is due; None while nothing waits or no call slot is free."""
        if self._oldest is None or self._inflight >= self.max_concurrency:
            return None
        return max(0.0, self._oldest + self.wait_s - time.perf_counter())

    def _start_due_calls(self) -> None:
        while self._pending and self._inflight < self.max_concurrency:
            full = self.batch_size > 0 and len(self._pending) >= self.batch_size
            due = self.idle() or time.perf_counter() >= self._oldest + self.wait_s
            if not (full or due):
                return
            self._pending.sort()
            if due:  # everything waiting goes now, split evenly over the free slots
                take = math.ceil(len(self._pending) / (self.max_concurrency - self._inflight))
                if self.batch_size:
                    take = min(take, self.batch_size)
            else:
                take = self.batch_size
            batch, self._pending = self._pending[:take], self._pending[take:]
            if not self._pending:
                self._oldest = None
            self._inflight += 1
            task = asyncio.create_task(self._run_call(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _run_call(self, batch: list[_Request]) -> None:
        span = CallSpan(len(batch), time.perf_counter())
        self.spans.append(span)
        try:
            items = [r.item for r in batch]
            results = await asyncio.get_running_loop().run_in_executor(self._pool, self.call, items)
            if len(results) != len(batch):
                raise RuntimeError(f"model call returned {len(results)} results for {len(batch)} prompts")
        except Exception as err:  # every request of the call gets the error
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(err)
        else:
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
        finally:
            span.end = time.perf_counter()
            self._inflight -= 1
            self.poke()
