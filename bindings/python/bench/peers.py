"""libratetrack's try_acquire next to ``limits`` (moving window, memory
storage) and ``pyrate-limiter`` (in-memory buckets) in one process:
interleaved rounds, each case timed in every round. Run by
scripts/bench-peers.sh; figures, not a test.

The limits of a real model: rpm 500, tpm 200,000, rpd 10,000, tpd 2,000,000;
100 tokens a decision. Every batch starts from fresh state (libratetrack:
reset(); a peer: new limiters and storage), outside the timing. Admitting:
400 decisions, all admitted (they fit every limit). Refusing: the limit
spent first (untimed), then 400 decisions, all refused.
"""

from __future__ import annotations

import importlib.metadata
import os
import time

import limits
import pyrate_limiter as pyrate
import ratetrack
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

MODEL = "peers/m"
TOKENS = 100
K = 400
ROUNDS = int(os.environ.get("PEERS_ROUNDS", "11"))
BATCHES = int(os.environ.get("PEERS_BATCHES", "5"))
# (limit, per minute?, cost is the tokens?)
WINDOWS = [(500, True, False), (200_000, True, True), (10_000, False, False), (2_000_000, False, True)]


def limits_four():
    """Four moving windows on one storage, composed as a user would: test()
    each, then hit() each. Not atomic across windows."""
    strategy = MovingWindowRateLimiter(MemoryStorage())
    items = [((limits.RateLimitItemPerMinute if minute else limits.RateLimitItemPerDay)(limit),
              weighted) for limit, minute, weighted in WINDOWS]
    return strategy, items


def limits_decide(state, n):
    strategy, items = state
    for item, weighted in items:
        if not strategy.test(item, "k", cost=n if weighted else 1):
            return False
    for item, weighted in items:
        strategy.hit(item, "k", cost=n if weighted else 1)
    return True


def limits_one():
    return MovingWindowRateLimiter(MemoryStorage()), limits.RateLimitItemPerMinute(200_000)


def pyrate_four():
    """One Limiter per window (a bucket's weight counts against all its
    rates, so requests and tokens need separate buckets). pyrate-limiter
    cannot look without consuming: acquire from each in turn, stop at the
    first refusal (the earlier ones stay consumed)."""
    return [(pyrate.Limiter(pyrate.InMemoryBucket(
        [pyrate.Rate(limit, pyrate.Duration.MINUTE if minute else pyrate.Duration.DAY)])), weighted)
        for limit, minute, weighted in WINDOWS]


def pyrate_decide(state, n):
    for limiter, weighted in state:
        if not limiter.try_acquire("k", n if weighted else 1, blocking=False):
            return False
    return True


def main() -> None:
    with ratetrack.open({"builtin_tiers": False, "limits": {
            MODEL: {"rpm": 500, "tpm": 200_000, "rpd": 10_000, "tpd": 2_000_000}}}) as t:
        try_acquire = t.try_acquire

        def rt_fresh():
            t.reset()

        cases = [
            ("libratetrack try_acquire (4 windows)", rt_fresh,
             lambda s: bool(try_acquire(MODEL, TOKENS))),
            ("limits (moving window), 4 limiters composed", limits_four,
             lambda s: limits_decide(s, TOKENS)),
            ("limits (moving window), 1 limiter (tpm only)", limits_one,
             lambda s: s[0].hit(s[1], "k", cost=TOKENS)),
            ("pyrate-limiter, 4 limiters composed", pyrate_four,
             lambda s: pyrate_decide(s, TOKENS)),
            ("pyrate-limiter, 1 limiter (tpm only)",
             lambda: pyrate.Limiter(pyrate.InMemoryBucket([pyrate.Rate(200_000, pyrate.Duration.MINUTE)])),
             lambda s: s.try_acquire("k", TOKENS, blocking=False)),
        ]
        ns = [[[] for _ in cases], [[] for _ in cases]]
        for rnd in range(ROUNDS + 1):
            for refusing in (False, True):
                for i in range(len(cases)):
                    c = (i + rnd) % len(cases)
                    name, fresh, decide = cases[c]
                    total = 0
                    for _ in range(BATCHES):
                        s = fresh()
                        if refusing:
                            spent = 0
                            while decide(s):
                                spent += 1
                                if spent > 100_000:
                                    raise RuntimeError(f"{name}: never refused")
                        admitted = 0
                        start = time.perf_counter_ns()
                        for _ in range(K):
                            if decide(s):
                                admitted += 1
                        total += time.perf_counter_ns() - start
                        if admitted != (0 if refusing else K):
                            raise RuntimeError(f"{name}: {admitted} of {K} admitted")
                    if rnd > 0:  # round 0 warms up
                        ns[refusing][c].append(total / (BATCHES * K))
    print(f"ROUNDS {ROUNDS} x {BATCHES} batches of {K} decisions per case")
    for r, kind in enumerate(("admitting", "refusing")):
        for c, (name, _, _) in enumerate(cases):
            print(f"CASE\tpython\t{kind}\t{name}\t" + ",".join(f"{x:.2f}" for x in ns[r][c]))
    path = "ratetrack._fast" if ratetrack._library.fast_path() else "ctypes"
    print(f"VERSION\tpython\tlimits {importlib.metadata.version('limits')}, "
          f"pyrate-limiter {importlib.metadata.version('pyrate-limiter')}, libratetrack through {path}")


if __name__ == "__main__":
    main()
