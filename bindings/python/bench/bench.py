"""Benchmark: nanoseconds per Tracker.try_acquire through the binding, through
ratetrack._fast and through ctypes.

Uses private trackers with models of all four windows (rpm, tpm, rpd, tpd):
``bench/m`` with limits too high to be reached, so every call is admitted and
recorded, and ``bench/spent`` whose day's one request is used, so every call
is refused. Next to them, the floors: the cost of an empty C call,
``rt_version_number()`` (a C function that only returns a constant), through
ctypes (the same ctypes library object, in the same kind of lambda) and
through ratetrack._fast (``_fast.floor()``).

The two paths are measured in one process: a tracker whose ``_fast`` is
set to None takes the ctypes path, as everywhere ratetrack._fast is not built
or ``RATETRACK_PYTHON_FAST=0``. The cases run in interleaved rounds (so they
share the machine's drifts); each figure is the median of the rounds, with
their range; ratios are medians of the per-round ratios.

Then threads: 1, 2 and 4 threads calling try_acquire (admitted) at once,
on one model and on a model each, on both paths; the figure is the wall time
per call (all threads' calls over the wall time). Python threads share the
GIL: only one runs Python code at a time, so more threads never make more
calls per second here; what the rows show is what the handing over of the
GIL costs. Both paths release the GIL during each call into libratetrack
(ctypes always does; ratetrack._fast does because a call on a Redis backend
is a network round trip, and the binding's async forms rely on several
being in flight at once from worker threads), so with two threads or more
each call can hand the GIL to another thread. A build of ratetrack._fast
that keeps the GIL (``CFLAGS=-DRT_FAST_HOLD_GIL ./run-bench.sh``, never
shipped: it would stall every thread for a Redis round trip) shows what
releasing it costs; figures in docs/performance.md.

Prints the tables, then one line for scripts/bench.sh:
``BENCH python try_acquire_ns=<float> floor_ns=<float> refused_ns=<float> ...``
where try_acquire, floor and refused are the path in use (ratetrack._fast
where built) and ``ctypes_*`` the ctypes path.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import threading
import time
import timeit
from typing import Callable, Dict, List

import ratetrack
from ratetrack import _library

BIG = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000,
       "rpd": 1_000_000_000_000, "tpd": 1_000_000_000_000}
MODELS = ["bench/m", "bench/m1", "bench/m2", "bench/m3"]
# A day of one request each, spent before the thread rows: their refusals.
SPENT = ["bench/spent0", "bench/spent1", "bench/spent2", "bench/spent3"]
CONFIG = {
    "builtin_tiers": False,
    "limits": dict({m: BIG for m in MODELS}, **{m: dict(BIG, rpd=1) for m in ["bench/spent"] + SPENT}),
}
ROUNDS = 9
THREAD_ROUNDS = 5


def _stat(values: List[float]) -> str:
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def _ratio(a: List[float], b: List[float]) -> str:
    r = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"


def single_thread(number: int, fast: ratetrack.Tracker, slow: ratetrack.Tracker) -> Dict[str, List[float]]:
    lib = fast._lib
    version_number = lib.rt_version_number
    version_number.argtypes = []
    version_number.restype = ctypes.c_int
    fast_try, slow_try = fast.try_acquire, slow.try_acquire
    cases: Dict[str, Callable[[], object]] = {
        "floor ctypes": lambda: version_number(),
        "admitted ctypes": lambda: slow_try("bench/m", 100),
        "refused ctypes": lambda: slow_try("bench/spent", 100),
    }
    if fast._fast is not None:
        fast_floor = _library.FAST_MODULE.floor  # type: ignore[union-attr]
        cases.update({
            "floor _fast": lambda: fast_floor(),
            "admitted _fast": lambda: fast_try("bench/m", 100),
            "refused _fast": lambda: fast_try("bench/spent", 100),
        })
    timers = {name: timeit.Timer(call) for name, call in cases.items()}
    ns: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, timer in timers.items():
            ns[name].append(timer.timeit(number) / number * 1e9)
    return ns


def threaded(tracker: ratetrack.Tracker, threads: int, same_model: bool, calls: int,
             models: List[str] = MODELS) -> float:
    """Wall ns per call of `threads` threads each making `calls` try_acquire
    on `models` (MODELS: admitted; SPENT: refused)."""
    start = threading.Barrier(threads + 1)
    try_acquire = tracker.try_acquire

    def work(model: str) -> None:
        start.wait()
        for _ in range(calls):
            try_acquire(model, 100)

    workers = [threading.Thread(target=work, args=(models[0] if same_model else models[i],))
               for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    return (time.perf_counter() - began) / (threads * calls) * 1e9


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with ratetrack.open(CONFIG) as fast, ratetrack.open(CONFIG) as slow:
        slow._fast = None  # the ctypes path
        for t in (fast, slow):
            assert t.try_acquire("bench/m", 100)
            for m in ["bench/spent"] + SPENT:
                assert t.try_acquire(m, 100)
                assert not t.try_acquire(m, 100)
        ns = single_thread(number, fast, slow)
        paths = {"ctypes": slow}
        if fast._fast is not None:
            paths["_fast"] = fast
        thread_ns: Dict[str, List[float]] = {}
        per_thread = max(number // 10, 1000)
        for _ in range(THREAD_ROUNDS):
            for threads in (1, 2, 4):
                for same in (True, False):
                    if threads == 1 and not same:
                        continue
                    for path, tracker in paths.items():
                        key = f"{threads} thread{'s' if threads > 1 else ''}, " \
                              f"{'one model' if same or threads == 1 else 'a model each'}, {path}"
                        thread_ns.setdefault(key, []).append(threaded(tracker, threads, same, per_thread))
                        thread_ns.setdefault(key + ", refused", []).append(
                            threaded(tracker, threads, same, per_thread, SPENT))
        calls = fast.stats()["models"]["bench/m"]["requests_per_minute"]["current"]

    print(f"ratetrack {ratetrack.version()} via {_library.loaded_from()}; Python {sys.version.split()[0]}; "
          f"{_library.fast_path_reason()}")
    print(f"one thread: {number} calls x {ROUNDS} interleaved rounds, ns per call, median (range); "
          f"{calls} recorded in the last minute on one tracker")
    for name, values in ns.items():
        print(f"  {name:18} {_stat(values)}")
    print("per round:")
    print(f"  ctypes: admitted / ctypes floor {_ratio(ns['admitted ctypes'], ns['floor ctypes'])}, "
          f"refused / admitted {_ratio(ns['refused ctypes'], ns['admitted ctypes'])}")
    if "admitted _fast" in ns:
        print(f"  _fast: admitted / ctypes floor {_ratio(ns['admitted _fast'], ns['floor ctypes'])}, "
              f"admitted / _fast floor {_ratio(ns['admitted _fast'], ns['floor _fast'])}, "
              f"refused / admitted {_ratio(ns['refused _fast'], ns['admitted _fast'])}")
        print(f"  _fast / ctypes: admitted {_ratio(ns['admitted _fast'], ns['admitted ctypes'])}, "
              f"refused {_ratio(ns['refused _fast'], ns['refused ctypes'])}, "
              f"floor {_ratio(ns['floor _fast'], ns['floor ctypes'])}")
    print(f"threads (GIL shared): {per_thread} calls per thread x {THREAD_ROUNDS} interleaved rounds, "
          "wall ns per call, median (range)")
    for name, values in thread_ns.items():
        print(f"  {name:43} {_stat(values)}")
    used = "_fast" if "admitted _fast" in ns else "ctypes"
    # The thread rows of the path in use, for scripts/bench.sh's table.
    print(f"THREADS python: a thread is a threading.Thread calling one private Tracker through {used} "
          "(the GIL is released during each call into the library)")
    for threads in (1, 2, 4):
        for same in (True, False):
            if threads == 1 and not same:
                continue
            key = f"{threads} thread{'s' if threads > 1 else ''}, " \
                  f"{'one model' if same or threads == 1 else 'a model each'}, {used}"
            admitted, refused = thread_ns[key], thread_ns[key + ", refused"]
            ratios = [r / a for r, a in zip(refused, admitted)]
            print(f"THREAD_ROW python threads={threads} models={'one' if same else 'each'} "
                  f"admitted_ns={statistics.median(admitted):.1f} refused_ns={statistics.median(refused):.1f} "
                  f"ratio={statistics.median(ratios):.2f} ratio_min={min(ratios):.2f} ratio_max={max(ratios):.2f}")
    med = {name: statistics.median(v) for name, v in ns.items()}
    line = (f"BENCH python try_acquire_ns={med['admitted ' + used]:.1f} floor_ns={med['floor ' + used]:.1f} "
            f"refused_ns={med['refused ' + used]:.1f} path={used}")
    if used == "_fast":
        line += (f" ctypes_try_acquire_ns={med['admitted ctypes']:.1f} ctypes_floor_ns={med['floor ctypes']:.1f}"
                 f" ctypes_refused_ns={med['refused ctypes']:.1f}")
    print(line)


if __name__ == "__main__":
    main()
