"""Trackers, grants and the module-level functions over libratetrack's C API."""

from __future__ import annotations

import asyncio
import ctypes
import json
import time
import weakref
from ctypes import byref, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, TypedDict, Union

from . import _library
from .errors import (
    RT_E_INVALID,
    RT_LIMITED,
    RT_OK,
    AcquireTimeout,
    InvalidArgument,
    RateTrackError,
    error_from_status,
)

#: A configuration: a dict (serialised to JSON) or a JSON string.
Config = Union[Mapping[str, Any], str]


class WindowStats(TypedDict):
    """One window of :class:`Stats` (e.g. ``"requests_per_minute"``).

    For a window with no limit, ``limit``, ``remaining`` and ``usage_percent``
    are all None. ``usage_percent`` is rounded to three decimals.
    """

    current: int
    limit: Optional[int]
    remaining: Optional[int]
    usage_percent: Optional[float]


class Stats(TypedDict):
    """Stats as native data (a plain dict at run time):
    ``{"tier": str, "backend": str, "models": {model: {window: WindowStats}}}``.
    Windows are named ``requests_per_minute``, ``tokens_per_day``... and
    ``requests_per_<N>s`` / ``tokens_per_<N>s`` for extra windows."""

    tier: str
    backend: str
    models: Dict[str, Dict[str, WindowStats]]


_WAIT_NEVER = (1 << 64) - 1


def _last_error(lib: ctypes.CDLL) -> str:
    """This thread's rt_last_error() text (read it right after the failing call)."""
    raw = lib.rt_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def _fail(lib: ctypes.CDLL, code: int) -> RateTrackError:
    """The exception for a negative status just returned on this thread."""
    return error_from_status(code, _last_error(lib))


def _model(model: str) -> bytes:
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, not {type(model).__name__}")
    if "\0" in model:
        raise InvalidArgument("model must not contain NUL characters", RT_E_INVALID)
    return model.encode("utf-8")


def _tokens(tokens: int) -> int:
    if tokens < 0:
        raise InvalidArgument(f"tokens must be >= 0, got {tokens}", RT_E_INVALID)
    return tokens


def _config(config: Optional[Config]) -> Optional[bytes]:
    if config is None:
        return None
    if isinstance(config, str):
        return config.encode("utf-8")
    return json.dumps(config).encode("utf-8")


def _take_string(lib: ctypes.CDLL, ptr: int) -> str:
    """Copies a caller-owned char* and releases it with rt_free."""
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib.rt_free(ptr)


def _stats(lib: ctypes.CDLL, handle: Optional[int]) -> Optional[Stats]:
    """rt_stats_json_ex(handle) parsed; None for the JSON "null" (the global
    tracker, when handle is None, not created)."""
    out = c_void_p()
    rc = lib.rt_stats_json_ex(handle, byref(out))
    if rc != RT_OK:
        raise _fail(lib, rc)
    result: Optional[Stats] = json.loads(_take_string(lib, out.value))
    return result


@dataclass(frozen=True)
class Grant:
    """An admitted request, to settle later with :meth:`Tracker.settle`.

    ``ticket`` is the library's opaque non-zero grant value; ``tokens`` the
    token count the request was admitted with.
    """

    model: str
    ticket: int
    tokens: int


@dataclass(frozen=True)
class Acquire:
    """The answer of :meth:`Tracker.try_acquire`: truthy when admitted.

    ``retry_after`` is 0.0 when admitted, else the seconds until the same
    request would fit (never 0). ``grant`` is set by
    :meth:`Tracker.try_acquire_grant` when admitted, else None.
    """

    ok: bool
    retry_after: float
    grant: Optional[Grant] = None

    def __bool__(self) -> bool:
        return self.ok


_ADMITTED = Acquire(True, 0.0, None)


class Tracker:
    """A handle on a libratetrack tracker: private (:func:`open`) or the global one
    (:func:`global_tracker`).

    Every method is thread-safe, except that :meth:`close` must not race with
    other calls on the same private tracker. A private tracker is closed by
    :meth:`close`, by leaving a ``with`` block, or when garbage-collected;
    closing the global tracker does nothing.
    """

    __slots__ = ("_lib", "_handle", "_is_global", "_finalizer", "__weakref__")

    def __init__(self, lib: ctypes.CDLL, handle: int, is_global: bool) -> None:
        self._lib = lib
        self._handle: Optional[int] = handle
        self._is_global = is_global
        self._finalizer = None if is_global else weakref.finalize(self, lib.rt_close, handle)

    # -- lifetime -------------------------------------------------------
    @property
    def is_global(self) -> bool:
        """Whether this is the process-wide global tracker."""
        return self._is_global

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this private tracker."""
        return self._handle is None

    def close(self) -> None:
        """Frees a private tracker (idempotent); a no-op on the global tracker."""
        if self._is_global or self._handle is None:
            return
        self._handle = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tracker) and self._handle is not None and self._handle == other._handle

    def __hash__(self) -> int:
        return hash(self._handle)

    def __repr__(self) -> str:
        kind = "global" if self._is_global else ("closed" if self._handle is None else "private")
        return f"<ratetrack.Tracker {kind} at {self._handle or 0:#x}>"

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise InvalidArgument("the tracker is closed", RT_E_INVALID)
        return h

    # -- configuration --------------------------------------------------
    def configure(self, config: Config) -> None:
        """Applies a configuration (dict or JSON text, keys as for :func:`open`);
        keys present replace the current values, recorded usage is kept.
        Raises :class:`ConfigError` (nothing changed)."""
        rc = self._lib.rt_configure(self._h(), _config(config))
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    # -- usage ----------------------------------------------------------
    def can_make(self, model: str, tokens: int = 0) -> bool:
        """Whether a request of ``tokens`` tokens to ``model`` fits now (records
        nothing). Raises :class:`TooLarge` if it never can."""
        rc = self._lib.rt_can_make(self._h(), _model(model), _tokens(tokens))
        if rc < 0:
            raise _fail(self._lib, rc)
        return bool(rc == 1)

    def record(self, model: str, tokens: int = 0) -> None:
        """Records that a request of ``tokens`` tokens to ``model`` happened now
        (always recorded, even past a limit)."""
        rc = self._lib.rt_record(self._h(), _model(model), _tokens(tokens))
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def try_acquire(self, model: str, tokens: int = 0) -> Acquire:
        """Checks and records in one atomic step. Returns an :class:`Acquire`,
        truthy when admitted, else with ``retry_after`` seconds; never blocks.
        Raises :class:`TooLarge` if the request can never fit."""
        h = self._handle
        if h is None or tokens < 0:
            self._h()
            _tokens(tokens)
        retry = c_uint64()
        rc = self._lib.rt_try_acquire(h, _model(model), tokens, byref(retry))
        if rc == RT_OK:
            return _ADMITTED
        if rc == RT_LIMITED:
            return Acquire(False, retry.value / 1000.0, None)
        raise _fail(self._lib, rc)

    def try_acquire_grant(self, model: str, tokens: int = 0) -> Acquire:
        """:meth:`try_acquire` that also returns a :class:`Grant` (``.grant``)
        when admitted, to :meth:`settle` once the real token count is known."""
        retry = c_uint64()
        ticket = c_uint64()
        rc = self._lib.rt_try_acquire_grant(
            self._h(), _model(model), _tokens(tokens), byref(retry), byref(ticket)
        )
        if rc == RT_OK:
            return Acquire(True, 0.0, Grant(model, ticket.value, tokens))
        if rc == RT_LIMITED:
            return Acquire(False, retry.value / 1000.0, None)
        raise _fail(self._lib, rc)

    def acquire(self, model: str, tokens: int = 0, timeout: Optional[float] = None) -> Grant:
        """Blocks (sleeping for the tracker's retry-after) until the request fits,
        records it and returns its :class:`Grant`.

        ``timeout`` in seconds (None: no limit; 0: try once). Raises
        :class:`AcquireTimeout` when it passes first (nothing recorded), and
        :class:`TooLarge` at once if the request can never fit.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.try_acquire_grant(model, tokens)
            if result.grant is not None:
                return result.grant
            delay = _delay(result, deadline, model)
            time.sleep(delay)

    async def acquire_async(
        self, model: str, tokens: int = 0, timeout: Optional[float] = None
    ) -> Grant:
        """:meth:`acquire` for asyncio: waits with ``asyncio.sleep`` and never
        blocks the event loop (each try is a short non-blocking C call)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.try_acquire_grant(model, tokens)
            if result.grant is not None:
                return result.grant
            await asyncio.sleep(_delay(result, deadline, model))

    def settle(self, grant: Grant, actual_tokens: int) -> None:
        """Books the real token count of a granted request (refund or top-up at
        the moment of the grant). Settle each grant once: settling twice books
        the difference twice.

        The ticket carries a keyed check of the tracker that issued it and of
        the tokens it was granted for, so ``grant`` must be a :class:`Grant`
        returned by this tracker, unaltered (``grant.tokens`` is passed as the
        granted count). Raises :class:`InvalidArgument`, changing nothing, for
        a grant from another tracker, a ticket 0 or forged, or ``tokens`` other
        than the grant's own."""
        rc = self._lib.rt_settle(
            self._h(), _model(grant.model), grant.ticket, _tokens(grant.tokens), _tokens(actual_tokens)
        )
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def wait_time(self, model: str, tokens: int = 0) -> float:
        """Seconds until a request of ``tokens`` tokens to ``model`` would fit
        (0.0: now); records nothing. Raises :class:`TooLarge` for "never"."""
        wait = c_uint64()
        rc = self._lib.rt_wait_time(self._h(), _model(model), _tokens(tokens), byref(wait))
        if rc != RT_OK:
            raise _fail(self._lib, rc)
        return wait.value / 1000.0

    def reset(self) -> None:
        """Clears all recorded usage; keeps limits, tier and handle."""
        rc = self._lib.rt_reset(self._h())
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def stats(self) -> Stats:
        """The usage of every listed model as a dict (:class:`Stats`):
        ``{"tier", "backend", "models": {model: {window: {"current", "limit",
        "remaining", "usage_percent"}}}}``; limit, remaining and usage_percent
        are None for a window with no limit."""
        result = _stats(self._lib, self._h())
        assert result is not None
        return result


def _delay(result: Acquire, deadline: Optional[float], model: str) -> float:
    """How long a blocking acquire sleeps next; raises AcquireTimeout past the deadline."""
    if deadline is None:
        return result.retry_after
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise AcquireTimeout(
            f"acquire({model!r}) timed out; it would fit in {result.retry_after:.3f}s",
            result.retry_after,
        )
    return min(result.retry_after, remaining)


# -- module-level API ---------------------------------------------------------
def load(path: Optional[str] = None) -> None:
    """Loads libratetrack now (otherwise it is loaded on first use).

    Lookup: ``path`` if given, then ``$RATETRACK_LIBRARY``, then the system
    loader's ``libratetrack.so.0``. Only the first load counts: the library is
    shared by the whole process. Raises :class:`LibraryNotFound` or
    :class:`VersionMismatch`.
    """
    _library.load(path)


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    raw: bytes = _library.load().rt_version_string()
    return raw.decode("ascii")


def version_number() -> int:
    """The loaded library's version as major*10000 + minor*100 + patch."""
    number: int = _library.load().rt_version_number()
    return number


def status_string(code: int) -> str:
    """The library's short description of a status code."""
    raw: bytes = _library.load().rt_status_string(code)
    return raw.decode("utf-8", "replace")


def open(config: Optional[Config] = None) -> Tracker:  # noqa: A001 - mirrors rt_open
    """Creates a private tracker, independent of the global one.

    ``config``: a dict or JSON text (None: defaults), e.g.
    ``{"builtin_tiers": False, "limits": {"acme/m": {"rpm": 100, "tpm": 1000}}}``.
    Use it as a context manager or call :meth:`Tracker.close`.
    Raises :class:`ConfigError` naming the offending key (or the exception of
    whatever other status ``rt_open_ex`` returns, e.g. :class:`NoMemory`).
    """
    lib = _library.load()
    out = c_void_p()
    rc = lib.rt_open_ex(_config(config), byref(out))
    if rc != RT_OK:
        raise _fail(lib, rc)
    assert out.value
    return Tracker(lib, out.value, is_global=False)


def global_tracker(tier: Optional[str] = None) -> Tracker:
    """The process-wide global tracker (one per process, shared with every
    other caller of the library). The first call creates it, with ``tier``, else
    ``$RATETRACK_TIER``, else the configuration's ``"tier"``, else ``"tier1"``;
    a later call with another ``tier`` applies that tier from then on (usage
    kept). Raises :class:`ConfigError` on an unknown tier or a bad
    configuration (``$RATETRACK_CONFIG``), nothing changed; the exception
    class always comes from ``rt_global_get_ex``'s status code."""
    lib = _library.load()
    out = c_void_p()
    rc = lib.rt_global_get_ex(None if tier is None else tier.encode("utf-8"), byref(out))
    if rc != RT_OK:
        raise _fail(lib, rc)
    assert out.value
    return Tracker(lib, out.value, is_global=True)


def configure_global(config: Config) -> None:
    """Applies a configuration to the global tracker, before or after it exists.
    Raises :class:`ConfigError` (nothing changed)."""
    lib = _library.load()
    rc = lib.rt_global_configure(_config(config))
    if rc != RT_OK:
        raise _fail(lib, rc)


def global_stats() -> Optional[Stats]:
    """The global tracker's stats, or None when it has not been created (or
    since :func:`reset_global`, until the next :func:`global_tracker`)."""
    return _stats(_library.load(), None)


def reset_global() -> None:
    """Returns the global tracker to "never created".

    Its usage is forgotten and :func:`global_stats` is None until the next
    :func:`global_tracker`, which chooses the tier again as at first creation
    (argument, ``$RATETRACK_TIER``, configuration, ``"tier1"``); until then the
    old tier's limits stay in force. Configuration from
    :func:`configure_global` is kept. Handles already handed out stay valid:
    they act on the emptied global."""
    lib = _library.load()
    rc = lib.rt_reset(None)
    if rc != RT_OK:
        raise _fail(lib, rc)
