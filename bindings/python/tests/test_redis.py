"""The Redis backend, through the Python binding, against a real redis-server.

Each test talks to a redis-server started here (Debian's /usr/bin/redis-server,
or $RATETRACK_REDIS_SERVER) on a free loopback port, without persistence. The
module is skipped only when the binary is missing, and fails instead when $CI
or RATETRACK_REQUIRE_REDIS=1 is set: CI installs it, so there it must run. No Redis client library is used: readiness is a PING over a raw socket.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from typing import Callable, Dict, Iterator, List, Optional

import pytest

import ratetrack

REDIS_SERVER = os.environ.get("RATETRACK_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
if not (os.path.isfile(REDIS_SERVER) and os.access(REDIS_SERVER, os.X_OK)):
    _why = f"redis-server not found ({REDIS_SERVER}); install redis-server (scripts/install-deps.sh)"
    if os.environ.get("CI") or os.environ.get("RATETRACK_REQUIRE_REDIS") == "1":
        pytest.fail(_why + " [required: CI or RATETRACK_REQUIRE_REDIS=1 is set]", pytrace=False)
    pytest.skip(_why, allow_module_level=True)

PASSWORD = "s3cr3t-pw"
WRONG_PASSWORD = "wrong-pw"


def free_port() -> int:
    """A loopback port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers on the port (PONG, or NOAUTH: it is up but wants a password)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")


class RedisServer:
    """One redis-server process on 127.0.0.1:port, no persistence."""

    def __init__(self, port: Optional[int] = None, password: Optional[str] = None) -> None:
        self.port = port if port is not None else free_port()
        self.password = password
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.dir = tempfile.mkdtemp(prefix="ratetrack-redis-")
        self.log = os.path.join(self.dir, "redis.log")

    def start(self, timeout: float = 10.0) -> "RedisServer":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self.dir,
            "--logfile", self.log,
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server on port {self.port} exited ({self.proc.returncode}):\n{self._log()}")
            if ping(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"redis-server on port {self.port} did not answer PING within {timeout}s:\n{self._log()}")

    def _log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def url(self, prefix: str, on_error: str = "closed", timeout_ms: int = 5000,
            userinfo: str = "") -> str:
        # 5 s unless a test says otherwise: the library's 50 ms is for
        # production; on a loaded machine a call may take longer, and one that
        # timed out is on_error's to decide, which most tests do not check.
        return (f"redis://{userinfo}127.0.0.1:{self.port}/0"
                f"?prefix={prefix}&timeout_ms={timeout_ms}&on_error={on_error}")

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis(library_path: str) -> Iterator[RedisServer]:
    """The module's shared server (tests keep apart by key prefix)."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def servers() -> Iterator[List[RedisServer]]:
    """Extra servers a test starts (and kills); all stopped at the end of the test."""
    started: List[RedisServer] = []
    yield started
    for s in started:
        s.cleanup()


def unique_prefix() -> str:
    return "rtpy-" + uuid.uuid4().hex[:12]


def config(url: str, model: str, **limits: object) -> dict:
    return {"builtin_tiers": False, "backend": url, "limits": {model: limits}}


def requests_window(url: str, model: str, limit: int, seconds: int = 3600) -> dict:
    return config(url, model, windows=[{"unit": "requests", "limit": limit, "seconds": seconds}])


def window(stats: dict, model: str, name: str) -> dict:
    result: dict = stats["models"][model][name]
    return result


# -- (a) two processes race ---------------------------------------------------
RACER = textwrap.dedent(
    """
    import json, sys, time
    import ratetrack
    config, model, tries, start = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with ratetrack.open(config) as t:
        t.stats()  # connect before the start line
        while time.time() < start:
            time.sleep(0.001)
        admitted = refused = 0
        for _ in range(tries):
            if t.try_acquire(model):
                admitted += 1
            else:
                refused += 1
    print(json.dumps({"admitted": admitted, "refused": refused}))
    """
)


def test_two_processes_racing_admit_exactly_the_limit(redis: RedisServer) -> None:
    limit, tries, model = 300, 250, "race/m"  # one process alone can admit at most 250 of 300
    cfg = requests_window(redis.url(unique_prefix()), model, limit)
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, json.dumps(cfg), model, str(tries), str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode(errors="replace")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sum(r["admitted"] for r in results) == limit, results
    assert sum(r["refused"] for r in results) == 2 * tries - limit, results
    # A third tracker on the same Redis sees the whole usage and is refused.
    with ratetrack.open(cfg) as t:
        assert window(t.stats(), model, "requests_per_3600s")["current"] == limit
        assert not t.try_acquire(model)


# -- (b) settle ---------------------------------------------------------------
def test_settle_refund_goes_through_redis(redis: RedisServer) -> None:
    model = "settle/m"
    cfg = config(redis.url(unique_prefix()), model, tpm=1000)
    with ratetrack.open(cfg) as a, ratetrack.open(cfg) as b:
        got = a.try_acquire_grant(model, 1000)
        assert got and got.grant is not None
        refused = b.try_acquire(model, 1)
        assert not refused and refused.retry_after > 0
        a.settle(got.grant, 100)
        assert window(b.stats(), model, "tokens_per_minute")["current"] == 100
        assert b.try_acquire(model, 900)
        assert not b.try_acquire(model, 1)
        assert not a.try_acquire(model, 1)
        assert window(a.stats(), model, "tokens_per_minute")["current"] == 1000


# -- (c) conflicting configurations -------------------------------------------
def test_conflicting_limits_are_a_config_error(redis: RedisServer) -> None:
    model = "conflict/m"
    url = redis.url(unique_prefix())
    with ratetrack.open(config(url, model, rpm=10)) as a, ratetrack.open(config(url, model, rpm=20)) as b:
        assert a.try_acquire(model)
        with pytest.raises(ratetrack.ConfigError) as info:
            b.try_acquire(model)
        assert info.value.code == -2
        assert model in info.value.message
        assert a.try_acquire(model)  # the first configuration still works
        assert window(a.stats(), model, "requests_per_minute")["current"] == 2


# -- (d) the server goes away, then comes back ----------------------------------
def test_server_killed_then_restarted(servers: List[RedisServer], library_path: str) -> None:
    server = RedisServer().start()
    servers.append(server)
    prefix = unique_prefix()
    model, warm = "down/m", "down/warm"
    closed_cfg = requests_window(server.url(prefix, on_error="closed"), model, 3)
    local_cfg = requests_window(server.url(prefix, on_error="local"), model, 3)
    closed_cfg["limits"][warm] = local_cfg["limits"][warm] = {"rpm": 1000}
    with ratetrack.open(closed_cfg) as closed, ratetrack.open(local_cfg) as local:
        # Both are connected and work through Redis first.
        assert closed.try_acquire(warm)
        assert local.try_acquire(warm)
        assert local.stats()["backend_state"]["connected"] is True

        server.kill()

        # on_error=closed: an error, quickly, every time.
        for _ in range(5):
            began = time.monotonic()
            with pytest.raises(ratetrack.BackendError) as info:
                closed.try_acquire(model)
            assert time.monotonic() - began < 1.0
            assert info.value.code == -4
        state = closed.stats()["backend_state"]
        assert state["connected"] is False and state["errors"] > 0 and state["on_error"] == "closed"

        # on_error=local: the tracker enforces the limit by itself.
        began = time.monotonic()
        admitted = [bool(local.try_acquire(model)) for _ in range(5)]
        assert time.monotonic() - began < 5 * 1.0
        assert admitted == [True, True, True, False, False]
        state = local.stats()["backend_state"]
        assert state["connected"] is False
        assert state["errors"] > 0
        assert state["on_error"] == "local"
        assert state["degraded_since_unix_ms"] is not None
        assert state["last_error"]

        # The server comes back (empty) on the same port: the tracker returns
        # to it by itself (backoff is at most 2 s).
        server.start()
        deadline = time.monotonic() + 8.0
        while not local.stats()["backend_state"]["connected"]:
            assert time.monotonic() < deadline, local.stats()["backend_state"]
            time.sleep(0.1)
        # Redis is empty: 3 fit again there (locally they would not), then none.
        admitted = [bool(local.try_acquire(model)) for _ in range(4)]
        assert admitted == [True, True, True, False]
        assert local.stats()["backend_state"]["degraded_since_unix_ms"] is None
        # The closed tracker reconnects too, and sees the same budget in Redis.
        deadline = time.monotonic() + 8.0
        while True:
            try:
                result = closed.try_acquire(model)
                break
            except ratetrack.BackendError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert not result
        assert window(closed.stats(), model, "requests_per_3600s")["current"] == 3


# -- (e) the password never shows ----------------------------------------------
def test_password_never_appears(servers: List[RedisServer], library_path: str) -> None:
    server = RedisServer(password=PASSWORD).start()
    servers.append(server)
    model = "auth/m"
    prefix = unique_prefix()

    # A refused password is a misconfiguration, not an outage: open says so.
    bad = config(server.url(prefix, userinfo=f":{WRONG_PASSWORD}@"), model, rpm=5)
    with pytest.raises(ratetrack.ConfigError) as info:
        ratetrack.open(bad)
    assert "refuses these credentials" in str(info.value)
    for text in (str(info.value), info.value.message, repr(info.value)):
        assert WRONG_PASSWORD not in text

    good = config(server.url(prefix, userinfo=f":{PASSWORD}@"), model, rpm=5)
    with ratetrack.open(good) as t:
        assert [bool(t.try_acquire(model)) for _ in range(6)] == [True] * 5 + [False]
        stats = t.stats()
        assert stats["backend_state"]["connected"] is True
        assert window(stats, model, "requests_per_minute")["current"] == 5
        assert PASSWORD not in json.dumps(stats)


# -- a server that hangs (SIGSTOP): the timeout bounds every call --------------
def test_hung_server_costs_at_most_the_timeout(servers: List[RedisServer], library_path: str) -> None:
    server = RedisServer().start()
    servers.append(server)
    assert server.proc is not None
    prefix = unique_prefix()
    model = "hung/m"
    closed_cfg = requests_window(server.url(prefix, on_error="closed", timeout_ms=100), model, 3)
    local_cfg = requests_window(server.url(prefix, on_error="local", timeout_ms=100), model, 3)
    with ratetrack.open(closed_cfg) as closed, ratetrack.open(local_cfg) as local:
        assert closed.try_acquire(model)
        assert local.try_acquire(model)
        server.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        try:
            for _ in range(3):
                began = time.monotonic()
                with pytest.raises(ratetrack.BackendError):
                    closed.try_acquire(model)
                assert time.monotonic() - began < 1.0
            began = time.monotonic()
            admitted = [bool(local.try_acquire(model)) for _ in range(4)]
            assert time.monotonic() - began < 4 * 1.0
            assert admitted == [True, True, True, False]
            assert local.stats()["backend_state"]["connected"] is False
        finally:
            server.proc.send_signal(signal.SIGCONT)
        # Once it answers again, the tracker goes back to it. Redis holds the 2
        # real admissions, plus possibly calls that timed out: their commands
        # were sent, and the server runs them when it resumes (a timeout is
        # ambiguous; it can only over-count). Either way, the limit holds.
        deadline = time.monotonic() + 8.0
        while not local.stats()["backend_state"]["connected"]:
            assert time.monotonic() < deadline, local.stats()["backend_state"]
            time.sleep(0.1)
        held = window(local.stats(), model, "requests_per_3600s")["current"]
        assert 2 <= held <= 3
        admitted = [bool(local.try_acquire(model)) for _ in range(3)]
        assert sum(admitted) == 3 - held, (held, admitted)
        assert window(closed.stats(), model, "requests_per_3600s")["current"] == 3


def test_a_call_waiting_on_the_server_lets_other_threads_run(
    servers: List[RedisServer], library_path: str
) -> None:
    # Every call into the library releases the GIL (ctypes does; so does
    # ratetrack._fast): while one thread waits on a hung server, the others
    # run. Checked by a thread that notes the time every 2 ms: it can note
    # nothing while a call holds the GIL, and the call waits for 600 ms (the
    # timeout); on a loaded machine it may be kept off the CPU for a while,
    # so once in the first 450 ms is enough.
    server = RedisServer().start()
    servers.append(server)
    assert server.proc is not None
    model = "hung/m"
    cfg = requests_window(server.url(unique_prefix(), timeout_ms=600), model, 100)
    # A tracker per call, each connected (after a timeout, a tracker stops
    # waiting on the server for a while), with grants to settle.
    names = ["try_acquire", "try_acquire_grant", "try_acquire_io", "can_make", "record",
             "record_tokens", "settle", "settle_io", "wait_time"]
    trackers = {name: ratetrack.open(cfg) for name in names}
    grants = {}
    for name, t in trackers.items():
        assert t.try_acquire(model)
        grants[name] = (t.try_acquire_grant(model, 1).grant, t.try_acquire_io(model, 1, 1).grant)
    calls: Dict[str, Callable[[ratetrack.Tracker], object]] = {
        "try_acquire": lambda t: t.try_acquire(model),
        "try_acquire_grant": lambda t: t.try_acquire_grant(model, 1),
        "try_acquire_io": lambda t: t.try_acquire_io(model, 1, 1),
        "can_make": lambda t: t.can_make(model),
        "record": lambda t: t.record(model),
        "record_tokens": lambda t: t.record_tokens(model, 1, 1),
        "settle": lambda t: t.settle(grants["settle"][0], 2),  # type: ignore[arg-type]
        "settle_io": lambda t: t.settle_io(grants["settle_io"][1], 2, 2),  # type: ignore[arg-type]
        "wait_time": lambda t: t.wait_time(model),
    }
    marks: List[float] = []
    stop = threading.Event()

    def note() -> None:
        last = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - last >= 0.002:
                marks.append(now)
                last = now

    noter = threading.Thread(target=note)
    server.proc.send_signal(signal.SIGSTOP)
    noter.start()
    try:
        for name in names:
            began = time.monotonic()
            try:
                calls[name](trackers[name])
            except ratetrack.BackendError:
                pass
            ended = time.monotonic()
            assert ended - began >= 0.5, (name, ended - began)  # it did wait on the server
            during = [m for m in marks if began < m < began + 0.45]
            assert during, (name, ended - began, [round(m - began, 3) for m in marks if began - 0.05 < m < ended])
    finally:
        stop.set()
        noter.join()
        server.proc.send_signal(signal.SIGCONT)
        for t in trackers.values():
            t.close()
