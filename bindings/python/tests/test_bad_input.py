"""Hostile input (issue #24): what the C API cannot represent is refused with
Python's own exceptions, never truncated, wrapped or ignored.

TypeError for a wrong type; InvalidArgument (a ValueError) for a bad value;
ConfigError (a ValueError) for a bad value inside a configuration;
UnicodeEncodeError (a ValueError) for a str with a lone surrogate. Every
refusal happens before the C call: nothing is recorded (checked at the end).
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Callable, List, Tuple, Type

import pytest

import ratetrack

M = "acme/m"
CONFIG = {"builtin_tiers": False, "limits": {M: {"rpm": 1000, "tpm": 10**9}}}
NAN, INF = float("nan"), float("inf")
TOO_BIG = 2**64
UnicodeErr = UnicodeEncodeError


class Index:
    """An int-like object (numpy integers are like this): accepted as a count."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def _grant(ticket: int = 1, tokens: int = 1, output_tokens: int = 0) -> ratetrack.Grant:
    return ratetrack.Grant(M, ticket, tokens, output_tokens)


Call = Callable[[ratetrack.Tracker], Any]
# (case, call, exception, text the message must contain)
TABLE: List[Tuple[str, Call, Type[BaseException], str]] = []


def case(name: str, call: Call, exc: Type[BaseException], text: str = "") -> None:
    TABLE.append((name, call, exc, text))


# -- counts: uint64_t; 2**64 + 5 would book 5 through a bare ctypes call -------
COUNTS: List[Tuple[str, Callable[[ratetrack.Tracker, Any], Any]]] = [
    ("can_make", lambda t, n: t.can_make(M, n)),
    ("record", lambda t, n: t.record(M, n)),
    ("try_acquire", lambda t, n: t.try_acquire(M, n)),
    ("try_acquire_grant", lambda t, n: t.try_acquire_grant(M, n)),
    ("try_acquire_io.input", lambda t, n: t.try_acquire_io(M, n, 0)),
    ("try_acquire_io.output", lambda t, n: t.try_acquire_io(M, 0, n)),
    ("acquire.tokens", lambda t, n: t.acquire(M, n, timeout=0)),
    ("acquire.output_tokens", lambda t, n: t.acquire(M, 0, timeout=0, output_tokens=n)),
    ("acquire_async", lambda t, n: asyncio.run(t.acquire_async(M, n, timeout=0))),
    ("pick.input", lambda t, n: t.pick([M], n, 0)),
    ("pick.output", lambda t, n: t.pick([M], 0, n)),
    ("settle.actual", lambda t, n: t.settle(_grant(), n)),
    ("settle.grant.tokens", lambda t, n: t.settle(_grant(tokens=n), 1)),
    ("settle.grant.ticket", lambda t, n: t.settle(_grant(ticket=n), 1)),
    ("settle_io.actual_input", lambda t, n: t.settle_io(_grant(), n, 0)),
    ("settle_io.actual_output", lambda t, n: t.settle_io(_grant(), 0, n)),
    ("settle_io.grant.output", lambda t, n: t.settle_io(_grant(output_tokens=n), 0, 0)),
    ("wait_time", lambda t, n: t.wait_time(M, n)),
    ("record_tokens.input", lambda t, n: t.record_tokens(M, n, 0)),
    ("record_tokens.output", lambda t, n: t.record_tokens(M, 0, n)),
    ("record_tokens_async.input", lambda t, n: asyncio.run(t.record_tokens_async(M, n, 0))),
    ("try_acquire_async", lambda t, n: asyncio.run(t.try_acquire_async(M, n))),
    ("settle_io_async.actual_output", lambda t, n: asyncio.run(t.settle_io_async(_grant(), 0, n))),
    ("pick_async.input", lambda t, n: asyncio.run(t.pick_async([M], n, 0))),
]
for _name, _call in COUNTS:
    for _bad in (TOO_BIG, TOO_BIG + 5, 2**100, -1, -(2**64)):
        case(f"{_name}={_bad}", (lambda c, b: lambda t: c(t, b))(_call, _bad), ratetrack.InvalidArgument, "0..2**64-1")
    for _bad in (True, 1.0, NAN, "1", None):
        case(f"{_name}={_bad!r}", (lambda c, b: lambda t: c(t, b))(_call, _bad), TypeError, "must be an int")

# -- timeouts: None is "no timeout"; NaN, infinities, negatives are refused ----
for _bad in (NAN, INF, -INF, -1, -0.5):
    case(f"acquire.timeout={_bad}", (lambda b: lambda t: t.acquire(M, 1, timeout=b))(_bad),
         ratetrack.InvalidArgument, "timeout")
    case(f"acquire_async.timeout={_bad}",
         (lambda b: lambda t: asyncio.run(t.acquire_async(M, 1, timeout=b)))(_bad),
         ratetrack.InvalidArgument, "timeout")
for _bad in (True, "1", datetime.timedelta(seconds=1)):
    case(f"acquire.timeout={_bad!r}", (lambda b: lambda t: t.acquire(M, 1, timeout=b))(_bad), TypeError, "timeout")

# -- strings: a NUL would cut the text short in C -------------------------------
NUL_CALLS: List[Tuple[str, Call]] = [
    ("can_make.model", lambda t: t.can_make("acme/m\0x")),
    ("record.model", lambda t: t.record("acme/m\0x")),
    ("try_acquire.model", lambda t: t.try_acquire("acme/m\0x")),
    ("try_acquire_grant.model", lambda t: t.try_acquire_grant("acme/m\0x")),
    ("try_acquire_io.model", lambda t: t.try_acquire_io("acme/m\0x", 1, 1)),
    ("acquire.model", lambda t: t.acquire("acme/m\0x", timeout=0)),
    ("wait_time.model", lambda t: t.wait_time("acme/m\0x")),
    ("pick.models", lambda t: t.pick(["other/x", "acme/m\0x"])),
    ("settle.grant.model", lambda t: t.settle(ratetrack.Grant("acme/m\0x", 1, 1), 1)),
    ("observe_headers.model", lambda t: t.observe_headers("acme/m\0x", {})),
    ("observe_headers.name", lambda t: t.observe_headers(M, {"x-ratelimit-remaining-requests\0x": "0"})),
    ("observe_headers.value", lambda t: t.observe_headers(M, {"x-ratelimit-remaining-requests": "0\0 left"})),
    ("observe_headers.bytes", lambda t: t.observe_headers(M, [(b"x-ratelimit-remaining-requests", b"0\0")])),
    ("report_limited.model", lambda t: t.report_limited("acme/m\0x", 1)),
    ("record_tokens.model", lambda t: t.record_tokens("acme/m\0x", 1, 1)),
    ("record_tokens_async.model", lambda t: asyncio.run(t.record_tokens_async("acme/m\0x", 1, 1))),
    ("observe_headers_async.value",
     lambda t: asyncio.run(t.observe_headers_async(M, {"x-ratelimit-remaining-requests": "0\0"}))),
    ("report_limited_async.str", lambda t: asyncio.run(t.report_limited_async(M, "30\0junk"))),
    ("report_limited.str", lambda t: t.report_limited(M, "30\0junk")),
    ("report_limited.bytes", lambda t: t.report_limited(M, b"30\0junk")),
    ("global_tracker.tier", lambda t: ratetrack.global_tracker("tier1\0evil")),
    ("shm_remove.name", lambda t: ratetrack.shm_remove("name\0x")),
    ("load.path", lambda t: ratetrack.load("/tmp/libratetrack.so.0\0junk")),
]
for _name, _call in NUL_CALLS:
    case(f"NUL in {_name}", _call, ratetrack.InvalidArgument, "NUL")

# -- strings: a lone surrogate is not UTF-8 (ctypes' own encoding would fail too,
#    and a lossy one would map two names to one) --------------------------------
for _name, _call in [
    ("try_acquire.model", lambda t: t.try_acquire("acme/\ud800")),
    ("can_make.model", lambda t: t.can_make("acme/\udc00")),
    ("pick.models", lambda t: t.pick(["acme/\ud800"])),
    ("report_limited.retry_after", lambda t: t.report_limited(M, "3\ud8000")),
    ("global_tracker.tier", lambda t: ratetrack.global_tracker("tier\ud800")),
    ("shm_remove.name", lambda t: ratetrack.shm_remove("n\ud800")),
    ("open.text", lambda t: ratetrack.open('{"tier": "tier\ud800"}')),
    ("open.dict", lambda t: ratetrack.open({"limits": {"acme/\ud800": {"rpm": 1}}})),
]:
    case(f"surrogate in {_name}", _call, UnicodeErr, "not valid Unicode")
case("report_limited(bytes not UTF-8)", lambda t: t.report_limited(M, b"3\xff0"), UnicodeDecodeError, "not UTF-8")
case("try_acquire(bytes model)", lambda t: t.try_acquire(b"acme/m"), TypeError, "model must be a str")
case("record_tokens(bytes model)", lambda t: t.record_tokens(b"acme/m", 1), TypeError, "model must be a str")
case("record_tokens(surrogate)", lambda t: t.record_tokens("acme/\ud800", 1), UnicodeErr, "not valid Unicode")
case("record_tokens(empty model)", lambda t: t.record_tokens("", 1), ratetrack.InvalidArgument, "")

# -- configuration: JSON would carry NaN (json.dumps writes NaN, Infinity) --------
for _bad in (NAN, INF, -INF):
    _cfg = {"builtin_tiers": False, "limits": {M: {"rpm": _bad}}}
    case(f"open(rpm={_bad})", (lambda c: lambda t: ratetrack.open(c))(_cfg), ratetrack.ConfigError, "limits.acme/m.rpm")
    case(f"configure(rpm={_bad})", (lambda c: lambda t: t.configure(c))(_cfg), ratetrack.ConfigError, "limits.acme/m.rpm")
    case(f"configure_global(rpm={_bad})", (lambda c: lambda t: ratetrack.configure_global(c))(_cfg),
         ratetrack.ConfigError, "limits.acme/m.rpm")
_windows = {"limits": {M: {"windows": [{"unit": "requests", "limit": NAN, "seconds": 2}]}}}
case("open(windows[0].limit=nan)", lambda t: ratetrack.open(_windows), ratetrack.ConfigError, "windows[0].limit")
case("open(NUL in a key)", lambda t: ratetrack.open({"limits": {"acme/m\0x": {"rpm": 1}}}), ratetrack.ConfigError, "NUL")
case("open(NUL in a value)", lambda t: ratetrack.open({"tier": "tier1\0evil"}), ratetrack.ConfigError, "NUL")
case("open(NUL in text)", lambda t: ratetrack.open('{"tier": "tier1"}\0junk'), ratetrack.ConfigError, "NUL")
case("configure(NUL in text)", lambda t: t.configure('{"tier": "tier1"}\0'), ratetrack.ConfigError, "NUL")
case("configure_global(NUL in text)", lambda t: ratetrack.configure_global('{}\0'), ratetrack.ConfigError, "NUL")
case("open(42)", lambda t: ratetrack.open(42), TypeError, "configuration")  # type: ignore[arg-type]

# -- other numbers -----------------------------------------------------------------
for _bad in (NAN, INF, -1, -0.5, datetime.timedelta(seconds=-1)):
    case(f"report_limited({_bad!r})", (lambda b: lambda t: t.report_limited(M, b))(_bad),
         ratetrack.InvalidArgument, "retry_after")
case("report_limited(True)", lambda t: t.report_limited(M, True), TypeError, "retry_after")
for _bad in (2**31, -(2**31) - 1, 2**32):
    case(f"status_string({_bad})", (lambda b: lambda t: ratetrack.status_string(b))(_bad),
         ratetrack.InvalidArgument, "code")


@pytest.fixture(scope="module")
def tracker(library_path: str):
    with ratetrack.open(CONFIG) as t:
        yield t


@pytest.mark.parametrize("name, call, exc, text", TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_is_refused(tracker: ratetrack.Tracker, name: str, call: Call,
                              exc: Type[BaseException], text: str) -> None:
    with pytest.raises(exc) as info:
        call(tracker)
    assert text in str(info.value)
    if isinstance(info.value, ratetrack.RateTrackError):
        assert info.value.code == (-2 if isinstance(info.value, ratetrack.ConfigError) else -1)
    assert isinstance(info.value, TypeError) or isinstance(info.value, ValueError)


def test_nothing_was_recorded_and_the_config_is_unchanged(tracker: ratetrack.Tracker) -> None:
    for _, call, exc, _ in TABLE:  # again, all in one tracker, then look at it
        with pytest.raises(exc):
            call(tracker)
    stats = tracker.stats()
    assert set(stats["models"]) == {M}  # no "acme/m" cut short, no U+FFFD name
    window = stats["models"][M]
    assert window["requests_per_minute"]["current"] == 0
    assert window["requests_per_minute"]["limit"] == 1000
    assert window["tokens_per_minute"]["current"] == 0
    assert "provider" not in stats


def test_the_edges_of_what_is_accepted(tracker: ratetrack.Tracker) -> None:
    # The largest count is a count (here it never fits); __index__ ints are ints;
    # timeout 0 tries once; a zero timedelta is a 0-second Retry-After.
    with pytest.raises(ratetrack.TooLarge):
        tracker.can_make(M, 2**64 - 1)
    assert tracker.can_make(M, Index(5))
    with ratetrack.open(CONFIG) as t:
        grant = t.acquire(M, Index(10), timeout=0)
        assert grant.tokens == 10 and type(grant.tokens) is int
        t.settle(grant, 2**32)  # a top-up past the limit is booked, not refused
        assert t.stats()["models"][M]["tokens_per_minute"]["current"] == 2**32
        t.report_limited("other/x", datetime.timedelta(0))
        t.report_limited("other/y", 10**400)  # any int: the library caps a 429 at a day
        assert t.try_acquire("other/y").retry_after <= 86400
    assert ratetrack.status_string(2**31 - 1) and ratetrack.status_string(-(2**31))
