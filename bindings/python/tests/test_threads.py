"""Python threads racing on one tracker: the library admits exactly the limit."""

from __future__ import annotations

import threading
import time
from typing import List

import ratetrack
from conftest import MODEL

LIMIT = 250
THREADS = 8
TRIES = 100  # 800 tries for 250 slots


def test_threads_racing_try_acquire_admit_exactly_the_limit(library_path: str) -> None:
    config = {"builtin_tiers": False, "limits": {"race/m": {"rpm": LIMIT}}}
    with ratetrack.open(config) as t:
        barrier = threading.Barrier(THREADS)
        admitted: List[int] = [0] * THREADS
        refused: List[int] = [0] * THREADS
        errors: List[BaseException] = []

        def worker(i: int) -> None:
            try:
                barrier.wait()
                for _ in range(TRIES):
                    result = t.try_acquire_grant("race/m", 1) if i % 2 else t.try_acquire("race/m", 1)
                    if result:
                        admitted[i] += 1
                    else:
                        assert result.retry_after > 0
                        refused[i] += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert sum(admitted) == LIMIT
        assert sum(refused) == THREADS * TRIES - LIMIT
        assert t.stats()["models"]["race/m"]["requests_per_minute"]["current"] == LIMIT


def test_last_error_is_per_thread(library_path: str) -> None:
    """Each thread's exception carries its own failure's message."""
    messages: dict = {}

    def bad_config(i: int) -> None:
        for _ in range(200):
            try:
                ratetrack.open({f"unknown_key_{i}": 1})
            except ratetrack.ConfigError as exc:
                messages.setdefault(i, set()).add(exc.message)

    threads = [threading.Thread(target=bad_config, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(4):
        assert len(messages[i]) == 1
        (text,) = messages[i]
        assert f"unknown_key_{i}" in text


def test_threads_share_the_global(clean_global: None) -> None:
    def agent() -> None:
        g = ratetrack.global_tracker("tier1")
        for _ in range(50):
            g.record(MODEL, 2)

    threads = [threading.Thread(target=agent) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = ratetrack.global_stats()
    assert stats is not None
    assert stats["models"][MODEL]["requests_per_minute"]["current"] == 200
    assert stats["models"][MODEL]["tokens_per_minute"]["current"] == 400


def test_blocking_acquire_from_threads(library_path: str) -> None:
    """6 threads, 2 requests per 1 s window: the last ones wait about two windows."""
    from conftest import short_window

    with ratetrack.open(short_window(2, seconds=1)) as t:
        grants: List[ratetrack.Grant] = []
        lock = threading.Lock()

        def worker() -> None:
            g = t.acquire("acme/m", timeout=60)
            with lock:
                grants.append(g)

        start = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - start
        assert len(grants) == 6
        assert 1.5 < elapsed < 12.0  # about two 1 s windows; generous for a loaded machine
