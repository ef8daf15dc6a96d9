"""The async forms of the Tracker calls (issue #26): the event loop never waits
on a round trip. On the in-process and shared-memory backends they call the
library directly (no I/O); on Redis, in the binding's worker threads, so N
concurrent async callers have N calls in flight.

The Redis tests use test_redis.py's servers (skipped, as there, when
redis-server is missing). Concurrency is proven with a barrier, not timings:
8 calls that each wait for the 7 others can only finish if all 8 are in
flight at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, Iterator, List

import pytest

import ratetrack

M = "acme/m"


class Counting(ratetrack.Tracker):
    """A second handle on a tracker, recording the thread of each call and
    optionally holding each call at a barrier."""

    __slots__ = ()
    threads: List[int] = []
    barrier: Any = None

    @classmethod
    def over(cls, t: ratetrack.Tracker) -> "Counting":
        # is_global=True: this object never closes the handle (t owns it)
        return cls(t._lib, t._h(), True)

    def try_acquire(self, model: str, tokens: int = 0) -> ratetrack.Acquire:
        Counting.threads.append(threading.get_ident())
        if Counting.barrier is not None:
            Counting.barrier.wait()
        return super().try_acquire(model, tokens)


@pytest.fixture
def counting() -> Iterator[None]:
    Counting.threads = []
    Counting.barrier = None
    yield
    Counting.barrier = None


def test_async_forms_match_the_sync_ones(library_path: str, counting: None) -> None:
    cfg = {"builtin_tiers": False, "limits": {M: {"rpm": 3, "tpm": 1000}}}
    with ratetrack.open(cfg) as t:
        c = Counting.over(t)

        async def main() -> None:
            assert await c.try_acquire_async(M, 10)
            assert threading.get_ident() in Counting.threads  # memory: called on the loop's thread
            got = await t.try_acquire_grant_async(M, 5)
            assert got.grant is not None
            await t.settle_async(got.grant, 7)
            grant = await t.acquire_async(M, 2, timeout=0, output_tokens=3)
            await t.settle_io_async(grant, 1, 1)
            assert not await t.can_make_async(M)
            await t.record_async(M, 4)
            await t.record_tokens_async(M, 6, 4)
            assert (await t.try_acquire_io_async(M, 1, 1)).retry_after > 0
            assert not await t.pick_async([M])
            await t.observe_headers_async(M, {"x-ratelimit-remaining-requests": "0",
                                              "x-ratelimit-reset-requests": "30s"})
            await t.report_limited_async(M, "5")
            assert await t.wait_time_async(M) > 4  # the window (full) or the 429, whichever is later
            stats = await t.stats_async()
            window = stats["models"][M]
            assert window["requests_per_minute"]["current"] == 4
            assert window["tokens_per_minute"]["current"] == 10 + 7 + 2 + 4 + 10
            with pytest.raises(ratetrack.AcquireTimeout):
                await t.acquire_async(M, 1, timeout=0.05)

        asyncio.run(main())


def test_async_on_a_closed_tracker_raises(library_path: str) -> None:
    t = ratetrack.open()
    t.close()
    with pytest.raises(ratetrack.InvalidArgument):
        asyncio.run(t.try_acquire_async(M))
    with pytest.raises(ratetrack.InvalidArgument):
        asyncio.run(t.stats_async())


# The fork below is on purpose while worker threads exist (libratetrack supports
# it: see ratetrack.h, fork()); Python 3.12+ warns about any such fork.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_redis_async_callers_are_in_flight_together(library_path: str, counting: None) -> None:
    redis_tests = pytest.importorskip("test_redis")  # skips like test_redis.py without redis-server
    server = redis_tests.RedisServer().start()
    try:
        url = server.url(redis_tests.unique_prefix(), timeout_ms=2000)
        cfg = {"builtin_tiers": False, "backend": url, "limits": {M: {"rpm": 100}}}
        with ratetrack.open(cfg) as t:
            c = Counting.over(t)
            n = 8

            async def main() -> int:
                await c.stats_async()  # connect, and learn the backend
                Counting.barrier = threading.Barrier(n, timeout=60)
                ticks = 0
                done = asyncio.Event()

                async def ticker() -> None:
                    nonlocal ticks
                    while not done.is_set():
                        ticks += 1
                        await asyncio.sleep(0.001)

                tick_task = asyncio.ensure_future(ticker())
                results = await asyncio.gather(*(c.try_acquire_async(M) for _ in range(n)))
                done.set()
                await tick_task
                assert all(results)
                return ticks

            ticks = asyncio.run(main())
            # the 8 calls met at the barrier: all in flight at once, each on a
            # worker thread, and the loop kept running meanwhile
            assert len(Counting.threads) == n
            assert len(set(Counting.threads)) == n
            assert threading.get_ident() not in Counting.threads
            assert ticks >= 1
            assert t.stats()["models"][M]["requests_per_minute"]["current"] == n
            # A forked child has none of the parent's worker threads: it gets
            # a pool of its own (the alarm ends a child that would hang).
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 1
                try:
                    signal.alarm(60)
                    Counting.barrier = None
                    code = 0 if asyncio.run(t.try_acquire_async(M)) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
            assert t.stats()["models"][M]["requests_per_minute"]["current"] == n + 1
    finally:
        server.cleanup()
