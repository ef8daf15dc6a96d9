"""Async callers on a redis:// tracker: throughput of 1 and 8 concurrent
asyncio callers in one process, and how long the event loop was ever blocked.

    RATETRACK_LIBRARY=/path/to/libratetrack.so.0 python bench/async_redis.py [redis://host:port/0] [--ops N]

Without a URL it starts its own redis-server (``$RATETRACK_REDIS_SERVER`` or
the one on PATH) on a free loopback port, without persistence, and stops it
at the end. Prints figures, checks nothing:

    BENCH python async_redis callers=1 mode=async ops_per_s=... loop_lag_max_ms=... loop_lag_p99_ms=...

``callers=0 mode=idle`` is the ticker alone: the lag the machine's own
scheduling causes, to read the other figures against. ``mode=async`` is ``await tracker.try_acquire_async(...)`` (the C call in the
binding's worker threads on Redis); ``mode=blocking`` is the plain
``tracker.try_acquire(...)`` called from the coroutines, for comparison: it
holds the event loop for each round trip. The loop's lag is measured by a
ticker task that sleeps 0.5 ms at a time and records how late it wakes up.
``--latency-ms L`` puts a proxy process between the tracker and Redis that
delays every reply by L ms, as a Redis across a network would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import ratetrack  # noqa: E402

MODEL = "bench/async"
TICK = 0.0005

# A TCP proxy that delays every reply of the server by LATENCY ms (keeping
# their order), to stand for a Redis across a network: run as its own process.
PROXY = r"""
import asyncio, sys
listen_port, target_port, latency = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0

async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if delay:
                loop.call_later(delay, writer.write, data)
            else:
                writer.write(data)
    finally:
        loop.call_later(delay + 0.01, writer.close)

async def handle(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    await asyncio.gather(pipe(client_reader, server_writer, 0.0), pipe(server_reader, client_writer, latency))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> Tuple["subprocess.Popen[bytes]", str, str]:
    binary = os.environ.get("RATETRACK_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ratetrack-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0", workdir
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("redis-server did not start")


async def run(tracker: ratetrack.Tracker, callers: int, ops: int, mode: str) -> Tuple[float, List[float]]:
    lags: List[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - began - TICK)

    async def caller(count: int) -> None:
        for _ in range(count):
            if mode == "async":
                result = await tracker.try_acquire_async(MODEL)
            else:
                result = tracker.try_acquire(MODEL)
                await asyncio.sleep(0)  # let the others run between calls
            assert result, "the benchmark's limit was reached"

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    if callers == 0:  # the baseline: the ticker alone, as long as a short run
        await asyncio.sleep(ops / 20000)
        stop.set()
        await tick
        return 0.0, lags
    await asyncio.gather(*(caller(ops // callers) for _ in range(callers)))
    elapsed = time.perf_counter() - began
    stop.set()
    await tick
    return (ops // callers) * callers / elapsed, lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="redis:// URL (default: start a redis-server)")
    parser.add_argument("--ops", type=int, default=4000, help="calls per run (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting, best kept (default 3)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay every Redis reply by this much, through a proxy process (a Redis across "
                             "a network; default 0: direct)")
    parser.add_argument("--options", default="", help="more URL options, e.g. connections=8")
    args = parser.parse_args()

    proc: Optional["subprocess.Popen[bytes]"] = None
    proxy: Optional["subprocess.Popen[bytes]"] = None
    workdir = None
    url = args.url
    if url is None:
        proc, url, workdir = start_redis()
    if args.latency_ms > 0:
        target = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        port = free_port()
        proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(port), str(target), str(args.latency_ms)],
                                 stdout=subprocess.PIPE)
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == b"ready"
        url = url.replace(f":{target}", f":{port}", 1)
    prefix = "bench-" + uuid.uuid4().hex[:8]
    sep = "&" if "?" in url else "?"
    config = {"builtin_tiers": False, "backend": f"{url}{sep}prefix={prefix}&timeout_ms=2000"
                         + (f"&{args.options}" if args.options else ""),
              "limits": {MODEL: {"rpm": 10**12}}}
    try:
        with ratetrack.open(config) as tracker:
            tracker.try_acquire(MODEL)  # connect
            figures = {}
            idle: List[float] = []
            for _ in range(args.rounds):
                idle.extend(asyncio.run(run(tracker, 0, args.ops, "async"))[1])
            idle.sort()
            print(f"BENCH python async_redis callers=0 mode=idle loop_lag_max_ms={idle[-1] * 1000:.3f} "
                  f"loop_lag_p99_ms={idle[int(len(idle) * 0.99)] * 1000:.3f} ticks={len(idle)} "
                  "(the machine's own scheduling noise)", flush=True)
            for mode in ("async", "blocking"):
                for callers in (1, 8):
                    best = 0.0
                    worst_lag: List[float] = []
                    for _ in range(args.rounds):
                        rate, lags = asyncio.run(run(tracker, callers, args.ops, mode))
                        best = max(best, rate)
                        worst_lag.extend(lags)
                    worst_lag.sort()
                    p99 = worst_lag[int(len(worst_lag) * 0.99)] if worst_lag else 0.0
                    lag_max = worst_lag[-1] if worst_lag else 0.0
                    figures[(mode, callers)] = best
                    print(f"BENCH python async_redis latency_ms={args.latency_ms:g} callers={callers} "
                          f"mode={mode} ops_per_s={best:.0f} "
                          f"loop_lag_max_ms={lag_max * 1000:.3f} loop_lag_p99_ms={p99 * 1000:.3f} "
                          f"ticks={len(worst_lag)}", flush=True)
            for mode in ("async", "blocking"):
                print(f"BENCH python async_redis mode={mode} speedup_8_vs_1="
                      f"{figures[(mode, 8)] / figures[(mode, 1)]:.2f}")
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        if proc is not None:
            proc.kill()
            proc.wait()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
