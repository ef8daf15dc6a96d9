"""Blocking acquire (sleeps for the retry-after) and its asyncio form, on short windows.

Timing bounds are generous (the machine may be loaded): a lower bound shows
that a call really waited for its window, an upper bound (several windows)
that it did not wait for nothing; timeouts meant to pass first use windows
far longer than the timeout, so that a stall cannot turn them into successes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import ratetrack
from conftest import short_window


def test_acquire_waits_for_the_window(library_path: str) -> None:
    with ratetrack.open(short_window(2, seconds=1)) as t:
        t.acquire("acme/m")
        t.acquire("acme/m")
        start = time.monotonic()
        grant = t.acquire("acme/m", timeout=30)
        elapsed = time.monotonic() - start
        assert isinstance(grant, ratetrack.Grant) and grant.ticket
        assert 0.5 < elapsed < 6.0  # about one 1 s window
        assert t.stats()["models"]["acme/m"]["requests_per_1s"]["current"] >= 1


def test_acquire_times_out_without_recording(library_path: str) -> None:
    with ratetrack.open(short_window(1, seconds=30)) as t:
        t.acquire("acme/m", timeout=0)
        start = time.monotonic()
        with pytest.raises(ratetrack.AcquireTimeout) as info:
            t.acquire("acme/m", timeout=0.3)
        elapsed = time.monotonic() - start
        assert 0.29 < elapsed < 10.0  # it slept until the timeout, not for the 30 s window
        assert info.value.code == 1 and info.value.retry_after > 0
        with pytest.raises(TimeoutError):
            t.acquire("acme/m", timeout=0)  # try once
        assert t.stats()["models"]["acme/m"]["requests_per_30s"]["current"] == 1


def test_acquire_async_does_not_block_the_loop(library_path: str) -> None:
    async def main(t: ratetrack.Tracker) -> tuple:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        start = time.monotonic()
        grants = await asyncio.gather(*(t.acquire_async("acme/m", timeout=30) for _ in range(3)))
        elapsed = time.monotonic() - start
        stop = True
        await tick_task
        return grants, elapsed, ticks

    with ratetrack.open(short_window(2, seconds=1)) as t:
        grants, elapsed, ticks = asyncio.run(main(t))
        assert len(grants) == 3 and all(isinstance(g, ratetrack.Grant) for g in grants)
        assert 0.5 < elapsed < 6.0  # the third one waited for the 1 s window
        assert ticks >= 10  # the event loop kept running meanwhile


def test_acquire_async_timeout_and_too_large(library_path: str) -> None:
    async def main(t: ratetrack.Tracker) -> None:
        await t.acquire_async("acme/m")
        with pytest.raises(ratetrack.AcquireTimeout):
            await t.acquire_async("acme/m", timeout=0.2)

    with ratetrack.open(short_window(1, seconds=30)) as t:
        asyncio.run(main(t))
    with ratetrack.open({"builtin_tiers": False, "limits": {"acme/m": {"tpm": 10}}}) as t:
        with pytest.raises(ratetrack.TooLarge):
            asyncio.run(t.acquire_async("acme/m", 11))
