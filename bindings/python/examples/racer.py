"""A racer for the "shm:NAME" backend.

Racers in other processes (and other languages) that open the same NAME share
one budget, so together they are admitted exactly LIMIT times.

    python examples/racer.py NAME MODEL LIMIT ATTEMPTS [START_FILE]

Opens a private tracker on shm:NAME with LIMIT requests per hour for MODEL,
waits until START_FILE exists (if given), calls try_acquire(MODEL, 1)
ATTEMPTS times and prints "admitted <N>".
"""

from __future__ import annotations

import json
import os
import sys
import time

import ratetrack


def wait_for(path: str, max_seconds: float = 30.0) -> None:
    """Polls every millisecond until `path` exists, for at most max_seconds."""
    deadline = time.monotonic() + max_seconds
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{path} did not appear within {max_seconds:g} s")
        time.sleep(0.001)


def race(name: str, model: str, limit: int, attempts: int, start_file: str | None) -> int:
    config = json.dumps(
        {
            "backend": f"shm:{name}",
            "builtin_tiers": False,
            "limits": {model: {"windows": [{"unit": "requests", "limit": limit, "seconds": 3600}]}},
        }
    )
    with ratetrack.open(config) as tracker:
        if start_file is not None:
            wait_for(start_file)
        return sum(1 for _ in range(attempts) if tracker.try_acquire(model, 1))


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print("usage: racer.py NAME MODEL LIMIT ATTEMPTS [START_FILE]", file=sys.stderr)
        return 2
    try:
        limit, attempts = int(argv[2]), int(argv[3])
        if limit < 0 or attempts < 0:
            raise ValueError("LIMIT and ATTEMPTS must be non-negative")
        admitted = race(argv[0], argv[1], limit, attempts, argv[4] if len(argv) == 5 else None)
    except (ValueError, TimeoutError, ratetrack.RateTrackError) as err:
        print(f"racer: {err}", file=sys.stderr)
        return 1
    print(f"admitted {admitted}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
