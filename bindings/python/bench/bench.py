"""Benchmark: nanoseconds per Tracker.try_acquire through the binding.

Uses a private tracker whose model has all four windows (rpm, tpm, rpd, tpd)
with limits too high to be reached, so every call is admitted and recorded.
Prints one line: ``BENCH python try_acquire_ns=<float> floor_ns=<float>``
(best of 5 runs each). The floor is ctypes' own cost: ``rt_version_number()``,
a C function that only returns a constant, called through the same ctypes
library object (and the same lambda) as the binding's call.
"""

from __future__ import annotations

import ctypes
import sys
import timeit

import ratetrack

CONFIG = {
    "builtin_tiers": False,
    "limits": {
        "bench/m": {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000,
                    "rpd": 1_000_000_000_000, "tpd": 1_000_000_000_000},
    },
}


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with ratetrack.open(CONFIG) as tracker:
        try_acquire = tracker.try_acquire
        assert try_acquire("bench/m", 100)
        timer = timeit.Timer(lambda: try_acquire("bench/m", 100))
        runs = timer.repeat(repeat=5, number=number)
        ns = min(runs) / number * 1e9
        # The same through bare ctypes, to show the binding's own overhead.
        lib = tracker._lib
        handle = tracker._handle
        raw = timeit.Timer(lambda: lib.rt_try_acquire(handle, b"bench/m", 100, None))
        raw_ns = min(raw.repeat(repeat=5, number=number)) / number * 1e9
        # The floor: a C call that does nothing, through the same mechanism.
        version_number = lib.rt_version_number
        version_number.argtypes = []
        version_number.restype = ctypes.c_int
        floor = timeit.Timer(lambda: version_number())
        floor_ns = min(floor.repeat(repeat=5, number=number)) / number * 1e9
        calls = tracker.stats()["models"]["bench/m"]["requests_per_minute"]["current"]
    print(f"ratetrack {ratetrack.version()} via {ratetrack._library.loaded_from()}: "
          f"{number} calls x 5 runs, raw ctypes call {raw_ns:.1f} ns, {calls} recorded in the last minute")
    print(f"BENCH python try_acquire_ns={ns:.1f} floor_ns={floor_ns:.1f}")


if __name__ == "__main__":
    main()
