"""Capacity of the speech server: who gets in, where synthesis runs, and whether it still progresses.

The speech server's AdmissionGate (voxc/http_guard.py) asks `Capacity.admit()` on the event loop for
every speech request before its body is read: it answers at once (a `Ticket`, held until the whole
exchange ends, or None when workers + queue are taken: 503). Admitted work runs step by step (one
segment or one streamed chunk at a time) in a dedicated thread pool of `workers` threads, separate
from the loop's default executor; an asyncio.Semaphore on the loop hands out the pool's threads, so
nothing ever blocks a thread waiting for capacity and a step never queues behind another inside the
pool. Free threads go to the waiting step of the earliest-started request first (`Slots`), so under
overload the oldest requests run to completion at full speed instead of every admitted request
crawling along together; a request whose client reads slowly asks for its next step only when the
last one was sent, so it never holds a thread while it waits. A `Job` wraps one request's synchronous
generator (the runtime's pieces or chunks): each next() is one step, and closing the job stops the
generator between steps (a client that left, a deadline).

The watchdog: every finished step is progress; `stalled()` is true when steps are running or waiting
and none has finished for `stall_s` seconds (a wedged pool), which /health reports as a failure.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Test-only: seconds each synthesis step sleeps first, to wedge the pool on purpose (tests/test_server.py
# checks that /health then fails). Never set it in production.
WEDGE_ENV = "VOXC_SERVE_TEST_WEDGE_S"

_END = object()


class Ticket:
    """One admitted request's place; release() is idempotent and may be called from any path."""

    def __init__(self, capacity: "Capacity"):
        self._capacity, self.released = capacity, False
        self.started = time.monotonic()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._capacity._leave()


class Slots:
    """An asyncio semaphore that wakes the waiter with the lowest priority number first (event loop only)."""

    def __init__(self, n: int):
        self.free = n
        self._waiters: list = []
        self._seq = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self.free > 0:               # a free slot means nobody waits: release() hands slots to waiters first
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():      # handed a slot just as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Capacity:
    def __init__(self, workers: int, queue: int, stall_s: float = 30.0, on_depth=None):
        self.workers, self.limit, self.stall_s = workers, workers + queue, stall_s
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="voxc-synth")
        self.admitted = 0                # requests holding a ticket (running or waiting)
        self.busy = 0                    # steps submitted to the pool and not finished
        self.waiting = 0                 # steps waiting for a pool thread
        self.steps = 0                   # steps finished (progress)
        self.last_progress = time.monotonic()
        self.draining = False
        self._on_depth = on_depth or (lambda n: None)
        self._slots = Slots(workers)
        self._order = itertools.count()
        self._wedge = float(os.environ.get(WEDGE_ENV, "0") or 0)

    # ---- admission (event loop only) ------------------------------------------------------------------

    def admit(self) -> Ticket | None:
        if self.draining or self.admitted >= self.limit:
            return None
        self.admitted += 1
        self._on_depth(self.admitted)
        return Ticket(self)

    def _leave(self) -> None:
        self.admitted -= 1
        self._on_depth(self.admitted)

    @property
    def ready(self) -> bool:
        return not self.draining and self.admitted < self.limit

    def stalled(self) -> bool:
        return (self.busy + self.waiting) > 0 and time.monotonic() - self.last_progress > self.stall_s

    # ---- running steps in the pool ----------------------------------------------------------------------

    def order(self) -> int:
        """A request's place in line for pool threads (earlier: served first)."""
        return next(self._order)

    async def run(self, fn, *args, priority: int | None = None):
        """fn(*args) on a pool thread once one is free (lowest `priority` first; None: behind everyone
        now waiting); the thread is handed back when fn returns, also when the awaiting request was
        cancelled meanwhile."""
        loop = asyncio.get_running_loop()
        if self.busy + self.waiting == 0:
            self.last_progress = time.monotonic()
        self.waiting += 1
        try:
            await self._slots.acquire(self.order() if priority is None else priority)
        finally:
            self.waiting -= 1
        self.busy += 1

        def finished(_):
            try:
                loop.call_soon_threadsafe(self._finished)
            except RuntimeError:         # the loop is closed: the server is exiting
                pass
        try:
            fut = self.pool.submit(self._step, fn, *args)
        except RuntimeError:             # the pool was shut down
            self._finished()
            raise
        fut.add_done_callback(finished)
        return await asyncio.wrap_future(fut)

    def _step(self, fn, *args):
        if self._wedge:
            time.sleep(self._wedge)
        return fn(*args)

    def _finished(self) -> None:
        self.busy -= 1
        self.steps += 1
        self.last_progress = time.monotonic()
        self._slots.release()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Job:
    """One request's synchronous generator stepped in the pool; close() stops it between steps."""

    def __init__(self, capacity: Capacity, gen, transform=None):
        self.capacity, self.gen = capacity, gen
        self.priority = capacity.order()
        self.transform = transform or (lambda x: x)
        self._lock = threading.Lock()
        self._running = False
        self._closed = False

    def _next(self):
        with self._lock:
            if self._closed:
                return _END
            self._running = True
        try:
            try:
                item = next(self.gen)
            except StopIteration:
                return _END
            return self.transform(item)
        finally:
            with self._lock:
                self._running = False
                closed = self._closed
            if closed:
                self.gen.close()

    async def next(self):
        """The next transformed item, or None at the end."""
        item = await self.capacity.run(self._next, priority=self.priority)
        return None if item is _END else item

    def close(self) -> None:
        """Stops the generator: now if no step runs, else right after the running step."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running
        if not running:
            self.gen.close()
