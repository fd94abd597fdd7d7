"""Micro-batching: concurrent requests' work gathered into one call on a worker thread.

A batched decode on the refiner costs little more than a single one (see
benchmarks/serve_load.py), so requests that arrive within a short window share it. The model
runs on a dedicated thread: torch releases the GIL in its kernels, so the event loop keeps
accepting, streaming and answering while a batch decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from recast.errors import RecastError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("recast.serve")


class QueueFull(RecastError):
    """The batcher's queue is at its bound: the request is refused, not queued."""


class Stopped(RecastError):
    """The batcher was stopped before the item was processed."""


@dataclass
class _Item(Generic[T]):
    value: T
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[T, R]):
    """Calls `fn(values) -> results` (same order, same length) on batches of at most `max_batch`
    submitted values, on one worker thread.

    A batch starts when `max_batch` values wait or when its oldest value has waited `window_s`;
    a value that queued behind a running batch has already waited, so it does not wait again.
    At most `max_queue` values wait (those being processed not counted): `submit` beyond that
    raises QueueFull at once, so overload is answered quickly instead of piling up latency.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        window_s: float,
        max_queue: int,
        name: str = "batcher",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.fn, self.max_batch, self.window_s, self.max_queue = fn, max_batch, window_s, max_queue
        self.name = name
        self.on_batch = on_batch
        """Called with (batch size, seconds) after each batch (metrics)."""
        self._items: deque[_Item[T]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Values waiting (not yet in a batch)."""
        return len(self._items)

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running batch, fail the waiting values with Stopped."""
        with self._cond:
            self._stopping = True
            waiting = list(self._items)
            self._items.clear()
            self._cond.notify_all()
        for item in waiting:
            _resolve(item, error=Stopped(f"{self.name} stopped before this request ran"))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def submit(self, value: T) -> R:
        loop = asyncio.get_running_loop()
        item: _Item[T] = _Item(value, loop, loop.create_future())
        with self._cond:
            if self._stopping or self._thread is None:
                raise Stopped(f"{self.name} is not running")
            if len(self._items) >= self.max_queue:
                raise QueueFull(
                    f"{self.name} queue is full ({self.max_queue} waiting): retry later, or raise "
                    "serve.max_queue / serve.max_batch"
                )
            self._items.append(item)
            self._cond.notify()
        return await item.future

    def _next_batch(self) -> list[_Item[T]] | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                # Requests whose client went away need no work.
                while self._items and self._items[0].future.cancelled():
                    self._items.popleft()
                if not self._items:
                    self._cond.wait()
                    continue
                wait = self._items[0].enqueued + self.window_s - time.monotonic()
                if len(self._items) >= self.max_batch or wait <= 0:
                    n = min(self.max_batch, len(self._items))
                    return [self._items.popleft() for _ in range(n)]
                self._cond.wait(wait)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch = [item for item in batch if not item.future.cancelled()]
            if not batch:
                continue
            start = time.perf_counter()
            self._process(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - start)

    def _process(self, batch: list[_Item[T]]) -> None:
        try:
            results = self.fn([item.value for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} values")
        except Exception as error:
            if len(batch) == 1:
                _resolve(batch[0], error=error)
                return
            # One bad value (a query too long for the refiner, say) must not fail the requests
            # it happened to share a batch with: run them one at a time to find it.
            log.warning(
                "%s: a batch of %d failed (%s); retrying one at a time",
                self.name,
                len(batch),
                error,
            )
            for item in batch:
                self._process([item])
            return
        for item, result in zip(batch, results, strict=True):
            _resolve(item, result=result)


def _resolve(item: _Item, result: object = None, error: BaseException | None = None) -> None:
    """Complete an item's future on its own loop (futures are not thread-safe)."""

    def done() -> None:
        if item.future.done():  # cancelled meanwhile
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
        item.loop.call_soon_threadsafe(done)


async def throughput(
    fn: Callable[[list[T]], Sequence[R]], values: list[T], max_batch: int, window_s: float = 0.01
) -> float:
    """Values per second through a MicroBatcher of `max_batch`, all submitted at once: the
    micro-batching measure of benchmarks/serve_load.py and scripts/gpu_check.py (max_batch 1
    is one at a time, through the same thread and queue)."""
    batcher: MicroBatcher[T, R] = MicroBatcher(
        fn, max_batch=max_batch, window_s=window_s, max_queue=len(values)
    )
    batcher.start()
    try:
        start = time.perf_counter()
        await asyncio.gather(*(batcher.submit(v) for v in values))
        return len(values) / (time.perf_counter() - start)
    finally:
        batcher.stop()
