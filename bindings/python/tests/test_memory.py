"""Owned strings are freed: 100k stats() calls do not grow the process's RSS."""

from __future__ import annotations

import gc

import ratetrack
from conftest import MODEL


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_stats_loop_does_not_leak(library_path: str) -> None:
    config = {"builtin_tiers": False, "limits": {MODEL: {"rpm": 500, "tpm": 200_000, "rpd": 10_000}}}
    with ratetrack.open(config) as t:
        t.record(MODEL, 10)
        size = len(ratetrack._tracker.json.dumps(t.stats()))
        for _ in range(5_000):  # warm up allocators
            t.stats()
        gc.collect()
        before = _rss_kib()
        for _ in range(100_000):
            t.stats()
        gc.collect()
        after = _rss_kib()
    # A leak of each JSON text would add about 100_000 * size bytes.
    leak_kib = 100_000 * size // 1024
    assert leak_kib > 20_000, size
    assert after - before < 4_096, f"RSS grew {after - before} KiB (a leak would be ~{leak_kib} KiB)"


def test_global_stats_loop_does_not_leak(clean_global: None) -> None:
    ratetrack.global_tracker("tier1").record(MODEL, 1)
    size = len(ratetrack._tracker.json.dumps(ratetrack.global_stats()))  # every tier1 model: ~15 KB
    for _ in range(1_000):
        ratetrack.global_stats()
    gc.collect()
    before = _rss_kib()
    for _ in range(5_000):
        ratetrack.global_stats()
    gc.collect()
    leak_kib = 5_000 * size // 1024
    assert leak_kib > 20_000, size
    assert _rss_kib() - before < 4_096
