"""Running a C call off the event loop, for the async forms on a networked
backend (Redis): the call goes to one of the binding's worker threads
(ctypes releases the GIL while it is in C) and its result comes back to the
loop, so N concurrent async callers have N calls in flight.

Lighter than ``loop.run_in_executor``: jobs go through one
``queue.SimpleQueue``, and the results of calls that finish together wake the
loop once (one ``call_soon_threadsafe`` per batch, not per call). The pool
grows on demand to :data:`MAX_WORKERS` threads (daemon threads, idle ones
wait on the queue). A call whose awaiting task is cancelled still runs to its
end in C: what it booked stays booked (over-counting, never under-counting).
"""

from __future__ import annotations

import asyncio
import collections
import os
import queue
import threading
import weakref
from typing import Any, Callable, Deque, Tuple

#: Most worker threads, so most calls in flight at once per process.
MAX_WORKERS = 64


class _Results:
    """Finished calls of one event loop, handed over in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: Deque[Tuple["asyncio.Future[Any]", bool, Any]] = collections.deque()
        self.pending = False

    def post(self, future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:  # a worker thread
        self.done.append((future, ok, value))
        if not self.pending:
            self.pending = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop was closed meanwhile: nobody waits
                pass

    def drain(self) -> None:  # the loop's thread
        self.pending = False
        done = self.done
        while done:
            future, ok, value = done.popleft()
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class _Pool:
    def __init__(self) -> None:
        self.jobs: "queue.SimpleQueue[Tuple[_Results, asyncio.Future[Any], Callable[..., Any], Tuple[Any, ...]]]" = \
            queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0
        self.queued = 0
        self.results: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Results]" = weakref.WeakKeyDictionary()

    def submit(self, fn: Callable[..., Any], args: Tuple[Any, ...]) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        results = self.results.get(loop)
        if results is None:
            results = self.results[loop] = _Results(loop)
        future = loop.create_future()
        with self.lock:
            self.queued += 1
            start = self.queued > self.idle and self.threads < MAX_WORKERS
            if start:
                self.threads += 1
        if start:
            threading.Thread(target=self.work, name=f"ratetrack-async-{self.threads}", daemon=True).start()
        self.jobs.put((results, future, fn, args))
        return future

    def work(self) -> None:
        jobs = self.jobs
        lock = self.lock
        while True:
            with lock:
                self.idle += 1
            results, future, fn, args = jobs.get()
            with lock:
                self.idle -= 1
                self.queued -= 1
            try:
                value = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                results.post(future, False, exc)
            else:
                results.post(future, True, value)
            del results, future, fn, args


_pool = _Pool()


def _after_fork() -> None:
    """A forked child has none of the parent's threads: start from an empty pool."""
    global _pool
    _pool = _Pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def offload(fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
    """Runs ``fn(*args)`` on a worker thread; await the result on the loop."""
    return _pool.submit(fn, args)
