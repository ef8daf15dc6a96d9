"""Benchmark: nanoseconds per Tracker.try_acquire through the binding.

Uses a private tracker with two models of all four windows (rpm, tpm, rpd,
tpd): ``bench/m`` with limits too high to be reached, so every call is
admitted and recorded, and ``bench/spent`` whose day's one request is used,
so every call is refused. Next to them, the floor: ctypes' own cost,
``rt_version_number()`` (a C function that only returns a constant) called
through the same ctypes library object, in the same kind of lambda.

The three are timed in interleaved rounds (so they share the machine's
drifts); each figure is the median of the rounds. Prints one line:
``BENCH python try_acquire_ns=<float> floor_ns=<float> refused_ns=<float>``
after a line with each figure's range.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import timeit

import ratetrack

BIG = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000,
       "rpd": 1_000_000_000_000, "tpd": 1_000_000_000_000}
CONFIG = {
    "builtin_tiers": False,
    "limits": {"bench/m": BIG, "bench/spent": dict(BIG, rpd=1)},
}
ROUNDS = 9


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with ratetrack.open(CONFIG) as tracker:
        try_acquire = tracker.try_acquire
        assert try_acquire("bench/m", 100)
        assert try_acquire("bench/spent", 100)
        assert not try_acquire("bench/spent", 100)
        lib = tracker._lib
        version_number = lib.rt_version_number
        version_number.argtypes = []
        version_number.restype = ctypes.c_int
        cases = {
            "admitted": timeit.Timer(lambda: try_acquire("bench/m", 100)),
            "refused": timeit.Timer(lambda: try_acquire("bench/spent", 100)),
            "floor": timeit.Timer(lambda: version_number()),
        }
        ns = {name: [] for name in cases}  # type: dict[str, list[float]]
        for _ in range(ROUNDS):
            for name, timer in cases.items():
                ns[name].append(timer.timeit(number) / number * 1e9)
        calls = tracker.stats()["models"]["bench/m"]["requests_per_minute"]["current"]
    med = {name: statistics.median(v) for name, v in ns.items()}
    ranges = ", ".join(f"{name} {med[name]:.1f} ({min(v):.1f}-{max(v):.1f})" for name, v in ns.items())
    print(f"ratetrack {ratetrack.version()} via {ratetrack._library.loaded_from()}: "
          f"{number} calls x {ROUNDS} interleaved rounds, median (range) ns: {ranges}; "
          f"{calls} recorded in the last minute")
    # Ratios within each round, their median and range: what the machine's
    # drifts move least.
    per_floor = [a / f for a, f in zip(ns["admitted"], ns["floor"])]
    per_admit = [r / a for r, a in zip(ns["refused"], ns["admitted"])]
    print(f"per round: admitted / floor {statistics.median(per_floor):.2f} "
          f"({min(per_floor):.2f}-{max(per_floor):.2f}), refused / admitted "
          f"{statistics.median(per_admit):.2f} ({min(per_admit):.2f}-{max(per_admit):.2f})")
    print(f"BENCH python try_acquire_ns={med['admitted']:.1f} floor_ns={med['floor']:.1f} "
          f"refused_ns={med['refused']:.1f}")


if __name__ == "__main__":
    main()
