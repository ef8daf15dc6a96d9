"""Trackers, grants and the module-level functions over libratetrack's C API."""

from __future__ import annotations

import asyncio
import ctypes
import datetime
import json
import time
import weakref
from ctypes import byref, c_char_p, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    TypedDict,
    Union,
    cast,
)

from . import _checks, _library
from ._offload import offload
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


class _WindowStatsKeys(TypedDict):
    current: int
    limit: Optional[int]
    remaining: Optional[int]
    usage_percent: Optional[float]


class WindowStats(_WindowStatsKeys, total=False):
    """One window of :class:`Stats` (e.g. ``"requests_per_minute"``).

    For a window with no limit, ``limit``, ``remaining`` and ``usage_percent``
    are all None. ``usage_percent`` is rounded to three decimals.
    Optional keys: ``observed_limit``, the limit the provider's headers
    reported where it differs from the configured one (shown, not adopted);
    ``resets_at_midnight``, the IANA zone of a calendar-day window.
    """

    observed_limit: int
    resets_at_midnight: str


class ProviderWindow(TypedDict):
    """What the provider last reported for one kind of limit (see
    :meth:`Tracker.observe_headers`); each value is None when not reported."""

    remaining: Optional[int]
    reset_in_ms: Optional[int]
    limit: Optional[int]


class ProviderStats(TypedDict, total=False):
    """``Stats["provider"][model]``: what the provider said about a model.

    ``blocked_for_ms``: the time left of a reported 429
    (:meth:`Tracker.report_limited`); ``requests``, ``tokens``,
    ``input_tokens``, ``output_tokens``: its rate-limit headers. Each key is
    present only when there is something to say."""

    blocked_for_ms: int
    requests: ProviderWindow
    tokens: ProviderWindow
    input_tokens: ProviderWindow
    output_tokens: ProviderWindow


class _StatsKeys(TypedDict):
    tier: str
    backend: str
    models: Dict[str, Dict[str, WindowStats]]


class Stats(_StatsKeys, total=False):
    """Stats as native data (a plain dict at run time):
    ``{"tier": str, "backend": str, "models": {model: {window: WindowStats}}}``
    and, once a provider reported something, ``"provider": {model:
    ProviderStats}``. Windows are named ``requests_per_minute``,
    ``tokens_per_day``..., ``requests_per_<N>s`` / ``tokens_per_<N>s`` for
    extra windows, ``input_tokens_per_minute`` / ``output_tokens_...`` for one
    side, ``<unit>_per_calendar_day`` for calendar days."""

    provider: Dict[str, ProviderStats]


class _ShmSegmentKeys(TypedDict):
    name: str
    path: str
    bytes: int
    mode: str
    uid: int
    compatible: bool


class ShmSegment(_ShmSegmentKeys, total=False):
    """One segment of :func:`shm_list` (a plain dict at run time):
    ``name`` (as in ``"shm:NAME"``), ``path`` (``/dev/shm/ratetrack.NAME``),
    ``bytes``, ``mode`` (``"0600"``), ``uid`` and ``compatible`` (whether this
    library can use it) are always present. ``layout_version``, ``models``,
    ``capacity``, ``creator_pid`` and ``created_unix_ms`` are present when the
    segment's header is a ratetrack one readable by this user; ``error`` says
    why it could not be read."""

    layout_version: int
    models: int
    capacity: int
    creator_pid: int
    created_unix_ms: int
    error: str


class SupportsItems(Protocol):
    """Anything with ``items()`` yielding (name, value) pairs: a dict,
    ``requests``' ``CaseInsensitiveDict``, ``http.client.HTTPMessage``..."""

    def items(self) -> Iterable[Tuple[Any, Any]]: ...


#: Response headers for :meth:`Tracker.observe_headers`: a mapping (or any
#: object with ``items()``; ``httpx.Headers``' ``multi_items()`` is preferred)
#: or an iterable of (name, value) pairs. Names and values are str or bytes
#: (values may also be ints, or lists of values for a repeated header).
Headers = Union[SupportsItems, Iterable[Tuple[Union[str, bytes], Any]]]

#: A 429's ``Retry-After``: the header's text (delay seconds or an HTTP date),
#: a number of seconds, a :class:`datetime.timedelta`, or None (1 second).
RetryAfter = Union[None, str, bytes, int, float, datetime.timedelta]


_WAIT_NEVER = (1 << 64) - 1


def _last_error(lib: ctypes.CDLL) -> str:
    """This thread's rt_last_error() text (read it right after the failing call)."""
    raw = lib.rt_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def _fail(lib: ctypes.CDLL, code: int) -> RateTrackError:
    """The exception for a negative status just returned on this thread."""
    return error_from_status(code, _last_error(lib))


_model = _checks.model
_U64_MAX = _checks.U64_MAX
_SMALL = _library.SMALL_INT_MAX
_new = object.__new__

#: The out-parameters of the hot calls, allocated once and reused: a call
#: pops a set (so no other thread, nor a signal handler on this one, can
#: write to it while it is read; ctypes releases the GIL during the call) and
#: pushes it back. list.pop and list.append are atomic. About 60 ns cheaper
#: than two new c_uint64 and their byref, and than a threading.local.
_pool: List[Tuple[c_uint64, Any, c_uint64, Any]] = []


def _outs() -> Tuple[c_uint64, Any, c_uint64, Any]:
    """A new (retry, byref(retry), ticket, byref(ticket))."""
    retry, ticket = c_uint64(), c_uint64()
    return (retry, byref(retry), ticket, byref(ticket))


_pop = _pool.pop
_push = _pool.append


def _count(value: object, what: str) -> Any:
    """A checked count as a raw function takes it: a small int as is, else a c_uint64."""
    number = _checks.u64(value, what)
    return number if number <= _SMALL else c_uint64(number)


def _count_fast(value: object, what: str) -> Any:
    if type(value) is int and 0 <= value <= _SMALL:  # type: ignore[operator]
        return value
    return _count(value, what)


def _tokens(tokens: int, what: str = "tokens") -> int:
    return _checks.u64(tokens, what)


def _config(config: Optional[Config]) -> Optional[bytes]:
    return _checks.config(config)


def _header_text(item: object, what: str) -> Optional[bytes]:
    """A header name or value as bytes for the C API, or None (skip the pair)
    when it is not UTF-8: a malformed header, which the library would skip
    too (an HTTP stack may hand over obs-text bytes, e.g. aiohttp's
    surrogate-escaped str). A NUL is refused: C would cut the text short at
    it, and a real HTTP stack never delivers one."""
    if isinstance(item, bytes):
        raw = item
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif isinstance(item, str):
        try:
            raw = item.encode("utf-8")
        except UnicodeEncodeError:
            return None
    elif isinstance(item, int) and not isinstance(item, bool):
        raw = str(item).encode("ascii")
    else:
        raise TypeError(f"header {what} must be str, bytes or int, not {type(item).__name__}")
    if b"\0" in raw:
        raise InvalidArgument(f"header {what} must not contain NUL characters: {item!r}", RT_E_INVALID)
    return raw


def _header_pairs(headers: Headers) -> Tuple[List[bytes], List[bytes]]:
    """Flattens headers into parallel name and value lists, one pair per value."""
    if isinstance(headers, (str, bytes)):
        raise TypeError("headers must be a mapping or an iterable of (name, value) pairs")
    multi_items = getattr(headers, "multi_items", None)  # httpx.Headers: one pair per value
    if callable(multi_items):
        items: Iterable[Tuple[Any, Any]] = multi_items()
    elif hasattr(headers, "items"):  # dict, CaseInsensitiveDict, CIMultiDict, HTTPMessage
        items = headers.items()
    else:
        items = cast(Iterable[Tuple[Any, Any]], headers)
    names: List[bytes] = []
    values: List[bytes] = []
    for pair in items:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise TypeError(f"headers must be (name, value) pairs, got {pair!r}") from None
        raw_name = _header_text(name, "name")
        for one in value if isinstance(value, (list, tuple)) else (value,):
            raw_value = _header_text(one, "value")
            if raw_name is not None and raw_value is not None:
                names.append(raw_name)
                values.append(raw_value)
    return names, values


def _retry_after(retry_after: RetryAfter) -> Optional[bytes]:
    """A Retry-After as the C API's string: header text as is, numbers and
    timedeltas as decimal seconds ("2", "1.5")."""
    if retry_after is None:
        return None
    if isinstance(retry_after, (str, bytes)):
        return _checks.text(retry_after, "retry_after", allow_bytes=True)
    if isinstance(retry_after, datetime.timedelta):
        seconds: Union[int, float] = retry_after.total_seconds()
        if seconds < 0:
            raise InvalidArgument(f"retry_after must be >= 0 seconds, got {retry_after}", RT_E_INVALID)
    elif isinstance(retry_after, int) and not isinstance(retry_after, bool):
        if retry_after < 0:
            raise InvalidArgument(f"retry_after must be >= 0 seconds, got {retry_after}", RT_E_INVALID)
        return str(retry_after).encode("ascii")  # any size: the library caps a 429 at a day
    elif isinstance(retry_after, float):
        seconds = _checks.seconds(retry_after, "retry_after")
    else:
        raise TypeError(
            "retry_after must be None, a str, a number of seconds or a timedelta, "
            f"not {type(retry_after).__name__}"
        )
    return (f"{seconds:.3f}".rstrip("0").rstrip(".") or "0").encode("ascii")


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
    assert out.value is not None
    result: Optional[Stats] = json.loads(_take_string(lib, out.value))
    return result


def _metrics_text(lib: ctypes.CDLL, handle: Optional[int]) -> str:
    """rt_metrics_text(handle) as a str (handle None: the global tracker)."""
    out = c_void_p()
    rc = lib.rt_metrics_text(handle, byref(out))
    if rc != RT_OK:
        raise _fail(lib, rc)
    assert out.value is not None
    return _take_string(lib, out.value)


@dataclass(frozen=True)
class Grant:
    """An admitted request, to settle later with :meth:`Tracker.settle` or
    :meth:`Tracker.settle_io`.

    ``ticket`` is the library's opaque non-zero grant value; ``tokens`` the
    token count the request was admitted with, which the library counts as
    input tokens; ``output_tokens`` the output tokens reserved with it
    (:meth:`Tracker.try_acquire_io`, :meth:`Tracker.pick`; 0 otherwise).
    """

    model: str
    ticket: int
    tokens: int
    output_tokens: int = 0

    @property
    def input_tokens(self) -> int:
        """The input tokens the request was admitted with (``tokens``)."""
        return self.tokens


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

#: Refusals by their wait in milliseconds: an Acquire is immutable, and a
#: caller polling a spent limit gets the same wait many times a millisecond
#: (a frozen dataclass costs about 0.8 us to build). Bounded; cleared in
#: place, never replaced (ratetrack._fast looks into this same dict).
_refusals: Dict[int, Acquire] = {}


def _refused(ms: int) -> Acquire:
    result = _refusals.get(ms)
    if result is None:
        if len(_refusals) >= 1024:
            _refusals.clear()
        result = _refusals[ms] = Acquire(False, ms / 1000.0, None)
    return result


def _admitted_grant(model: str, ticket: int, tokens: int, output_tokens: int = 0) -> Acquire:
    """Acquire(True, 0.0, Grant(model, ticket, tokens, output_tokens)), built
    without the frozen dataclasses' per-field object.__setattr__ (the same
    objects)."""
    grant = _new(Grant)
    grant.__dict__.update(model=model, ticket=ticket, tokens=tokens, output_tokens=output_tokens)
    result = _new(Acquire)
    result.__dict__.update(ok=True, retry_after=0.0, grant=grant)
    return cast(Acquire, result)


def _fail_loaded(code: int) -> RateTrackError:
    """:func:`_fail` for ratetrack._fast, which only serves the loaded library."""
    return _fail(_library.load(), code)


# ratetrack._fast (see _library.py and ext/_fast.c): each hot method below
# calls its function first when the tracker's library is served by it (then
# Tracker._fast is the handle; None once closed, so that the checks of the
# ctypes path say so first, as always). The
# function returns the method's result, raises the library's error, or
# returns NotImplemented (_SLOW) for arguments not in its one fast form (a
# bool, an __index__ object, a count out of range, a model
# that is not a plain str or has a NUL...); the method then goes on with its
# ctypes path, which checks everything as it always did: same results, same
# exceptions either way.
_fast = _library.FAST_MODULE
_SLOW = NotImplemented
if _fast is not None:
    _fast.set_results(_ADMITTED, _refusals, _refused, _admitted_grant, _fail_loaded)
    _fast_try_acquire = _fast.try_acquire
    _fast_try_acquire_grant = _fast.try_acquire_grant
    _fast_try_acquire_io = _fast.try_acquire_io
    _fast_can_make = _fast.can_make
    _fast_record = _fast.record
    _fast_record_tokens = _fast.record_tokens
    _fast_settle = _fast.settle
    _fast_settle_io = _fast.settle_io
    _fast_wait_time = _fast.wait_time


@dataclass(frozen=True)
class Pick:
    """The answer of :meth:`Tracker.pick`: truthy when a model was acquired.

    When admitted: ``model`` is the candidate chosen, ``index`` its place in
    the list, ``grant`` its :class:`Grant` and ``retry_after`` 0.0. When no
    candidate can take the request now: ``model`` and ``index`` name the
    candidate that frees up first, ``retry_after`` its wait in seconds (never
    0), and ``grant`` is None.
    """

    ok: bool
    model: str
    index: int
    retry_after: float
    grant: Optional[Grant] = None

    def __bool__(self) -> bool:
        return self.ok


#: Per tracker handle: whether its backend does I/O (the async forms then use
#: a worker thread). Filled by the first async call on a handle; forgotten on
#: close and (re)configuration.
_remote_by_handle: Dict[int, bool] = {}


def _local_backend(backend: str) -> bool:
    """Whether a backend answers without I/O (in-process memory, shared memory):
    its calls take well under a microsecond and may run on the event loop."""
    return backend == "memory" or backend.startswith("shm:")


class Tracker:
    """A handle on a libratetrack tracker: private (:func:`open`) or the global one
    (:func:`global_tracker`).

    Every method is thread-safe, except that :meth:`close` must not race with
    other calls on the same private tracker. A private tracker is closed by
    :meth:`close`, by leaving a ``with`` block, or when garbage-collected;
    closing the global tracker does nothing.
    """

    __slots__ = ("_lib", "_handle", "_hv", "_raw", "_fast", "_is_global", "_finalizer", "__weakref__")

    def __init__(self, lib: ctypes.CDLL, handle: int, is_global: bool) -> None:
        self._lib = lib
        self._handle: Optional[int] = handle
        # The handle as the raw functions take it; None once closed.
        self._hv: Optional[c_void_p] = c_void_p(handle)
        self._raw = _library.raw_functions(lib)
        # The handle as ratetrack._fast's functions take it, when that module
        # serves this library; else (and once closed) None: the ctypes path.
        self._fast: Optional[int] = handle if _library.fast_functions(lib) else None
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
        _remote_by_handle.pop(self._handle, None)
        self._fast = None
        self._hv = None
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
        _remote_by_handle.pop(self._h(), None)  # the backend may have changed

    # -- usage ----------------------------------------------------------
    def can_make(self, model: str, tokens: int = 0) -> bool:
        """Whether a request of ``tokens`` tokens to ``model`` fits now (records
        nothing). Raises :class:`TooLarge` if it never can."""
        h = self._fast
        if h is not None:
            result = _fast_can_make(h, model, tokens)
            if result is not _SLOW:
                return result
        hv = self._hv
        if hv is None:
            self._h()
        raw = _model(model)  # the model before the count: the errors come in the order they always did
        count = _count_fast(tokens, "tokens")
        rc = self._raw.can_make(hv, raw, count)
        if rc < 0:
            raise _fail(self._lib, rc)
        return bool(rc == 1)

    def record(self, model: str, tokens: int = 0) -> None:
        """Records that a request of ``tokens`` tokens to ``model`` happened now
        (always recorded, even past a limit)."""
        h = self._fast
        if h is not None and _fast_record(h, model, tokens) is not _SLOW:
            return
        hv = self._hv
        if hv is None:
            self._h()
        raw = _model(model)  # the model before the count: the errors come in the order they always did
        count = _count_fast(tokens, "tokens")
        rc = self._raw.record(hv, raw, count)
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def record_tokens(self, model: str, input_tokens: int, output_tokens: int = 0) -> None:
        """Books tokens to a request that was already counted, without counting
        another request: ``input_tokens`` and ``output_tokens`` are added to the
        model's token windows now (request windows unchanged) and count against
        what the provider said remains. Always recorded, even past a limit.

        For callback-style frameworks whose limiter counted the request before
        its tokens were known (LangChain's rate limiter, then a callback with the
        response's usage: see :mod:`ratetrack.integrations.langchain`). Where you
        hold a :class:`Grant`, :meth:`settle_io` is better: it books at the
        moment of the grant."""
        h = self._fast
        if h is not None and _fast_record_tokens(h, model, input_tokens, output_tokens) is not _SLOW:
            return
        rc = self._lib.rt_record_tokens(
            self._h(), _model(model), _tokens(input_tokens, "input_tokens"),
            _tokens(output_tokens, "output_tokens"),
        )
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def try_acquire(self, model: str, tokens: int = 0) -> Acquire:
        """Checks and records in one atomic step. Returns an :class:`Acquire`,
        truthy when admitted, else with ``retry_after`` seconds; never blocks.
        Raises :class:`TooLarge` if the request can never fit."""
        h = self._fast
        if h is not None:
            result = _fast_try_acquire(h, model, tokens)
            if result is not _SLOW:
                return result
        hv = self._hv
        if hv is None or type(tokens) is not int or not 0 <= tokens <= _SMALL:
            self._h()  # slow path: raises the right error, or converts an __index__ int
            count = _count(tokens, "tokens")
        else:
            count = tokens
        raw = _model(model)
        try:
            outs = _pop()
        except IndexError:
            outs = _outs()
        rc = self._raw.try_acquire(hv, raw, count, outs[1])
        if rc == RT_OK:
            _push(outs)
            return _ADMITTED
        retry = outs[0].value
        _push(outs)
        if rc == RT_LIMITED:
            return _refused(retry)
        raise _fail(self._lib, rc)

    def try_acquire_grant(self, model: str, tokens: int = 0) -> Acquire:
        """:meth:`try_acquire` that also returns a :class:`Grant` (``.grant``)
        when admitted, to :meth:`settle` once the real token count is known."""
        h = self._fast
        if h is not None:
            result = _fast_try_acquire_grant(h, model, tokens)
            if result is not _SLOW:
                return result
        if type(tokens) is not int or not 0 <= tokens <= _SMALL:
            tokens = _tokens(tokens)
            count = tokens if tokens <= _SMALL else c_uint64(tokens)
        else:
            count = tokens
        hv = self._hv
        if hv is None:
            self._h()
        raw = _model(model)
        try:
            outs = _pop()
        except IndexError:
            outs = _outs()
        rc = self._raw.try_acquire_grant(hv, raw, count, outs[1], outs[3])
        retry, ticket = outs[0].value, outs[2].value
        _push(outs)
        if rc == RT_OK:
            return _admitted_grant(model, ticket, tokens)
        if rc == RT_LIMITED:
            return _refused(retry)
        raise _fail(self._lib, rc)

    def try_acquire_io(self, model: str, input_tokens: int, output_tokens: int = 0) -> Acquire:
        """:meth:`try_acquire_grant` with the two sides counted apart: reserve
        the prompt's ``input_tokens`` and ``output_tokens`` (max_tokens); the
        :class:`Grant` carries both, to :meth:`settle_io` with the real counts.
        Windows of tokens count both sides, windows of input (output) tokens
        one side. Raises :class:`TooLarge` if the request can never fit."""
        h = self._fast
        if h is not None:
            result = _fast_try_acquire_io(h, model, input_tokens, output_tokens)
            if result is not _SLOW:
                return result
        input_tokens = _tokens(input_tokens, "input_tokens")
        output_tokens = _tokens(output_tokens, "output_tokens")
        retry = c_uint64()
        ticket = c_uint64()
        rc = self._lib.rt_try_acquire_io(
            self._h(), _model(model), input_tokens, output_tokens, byref(retry), byref(ticket),
        )
        if rc == RT_OK:
            return Acquire(True, 0.0, Grant(model, ticket.value, input_tokens, output_tokens))
        if rc == RT_LIMITED:
            return Acquire(False, retry.value / 1000.0, None)
        raise _fail(self._lib, rc)

    def _try_grant(self, model: str, tokens: int, output_tokens: int) -> Acquire:
        if output_tokens:
            return self.try_acquire_io(model, tokens, output_tokens)
        return self.try_acquire_grant(model, tokens)

    def acquire(
        self, model: str, tokens: int = 0, timeout: Optional[float] = None, *, output_tokens: int = 0
    ) -> Grant:
        """Blocks (sleeping for the tracker's retry-after) until the request fits,
        records it and returns its :class:`Grant`.

        ``timeout`` in seconds (None: no limit; 0: try once; NaN, infinities
        and negative values raise :class:`InvalidArgument`). With
        ``output_tokens``, ``tokens`` are the input tokens and the two sides
        are counted apart (as :meth:`try_acquire_io`; settle with
        :meth:`settle_io`). Raises :class:`AcquireTimeout` when the timeout
        passes first (nothing recorded), and :class:`TooLarge` at once if the
        request can never fit.
        """
        seconds = _checks.timeout(timeout)
        tokens = _tokens(tokens)
        output_tokens = _tokens(output_tokens, "output_tokens")
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            result = self._try_grant(model, tokens, output_tokens)
            if result.grant is not None:
                return result.grant
            delay = _delay(result, deadline, model)
            time.sleep(delay)

    async def acquire_async(
        self, model: str, tokens: int = 0, timeout: Optional[float] = None, *, output_tokens: int = 0
    ) -> Grant:
        """:meth:`acquire` for asyncio: waits with ``asyncio.sleep`` and never
        blocks the event loop (each try is :meth:`try_acquire_io_async` /
        :meth:`try_acquire_grant_async`: on a Redis backend, in a worker thread)."""
        seconds = _checks.timeout(timeout)
        tokens = _tokens(tokens)
        output_tokens = _tokens(output_tokens, "output_tokens")
        _model(model)
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            result = await self._run(self._try_grant, model, tokens, output_tokens)
            if result.grant is not None:
                return result.grant
            await asyncio.sleep(_delay(result, deadline, model))

    # -- asyncio ----------------------------------------------------------
    # Every call that can touch the network has an async form. On a networked
    # backend (Redis) it runs the C call in a worker thread of the binding's
    # own pool (ctypes releases the GIL), so N concurrent async callers have N
    # calls in flight and the event loop never waits on a round trip; on the
    # in-process and shared-memory backends (well under a microsecond, no I/O)
    # it calls directly. Arguments are checked on the caller's side either way.

    def _remote(self) -> bool:
        """Whether this tracker's backend does I/O (reads the stats' "backend")."""
        handle = self._h()
        stats = _stats(self._lib, handle)
        assert stats is not None
        remote = not _local_backend(str(stats.get("backend", "")))
        _remote_by_handle[handle] = remote
        return remote

    async def _run(self, fn: "Any", *args: Any) -> Any:
        remote = _remote_by_handle.get(self._h())
        if remote is False:
            return fn(*args)
        if remote is None:  # first async call on this handle: look, off the loop
            remote = await offload(self._remote)
            if not remote:
                return fn(*args)
        return await offload(fn, *args)

    async def try_acquire_async(self, model: str, tokens: int = 0) -> Acquire:
        """:meth:`try_acquire` without blocking the event loop."""
        _model(model)
        return cast(Acquire, await self._run(self.try_acquire, model, _tokens(tokens)))

    async def try_acquire_grant_async(self, model: str, tokens: int = 0) -> Acquire:
        """:meth:`try_acquire_grant` without blocking the event loop."""
        _model(model)
        return cast(Acquire, await self._run(self.try_acquire_grant, model, _tokens(tokens)))

    async def try_acquire_io_async(self, model: str, input_tokens: int, output_tokens: int = 0) -> Acquire:
        """:meth:`try_acquire_io` without blocking the event loop."""
        _model(model)
        return cast(Acquire, await self._run(
            self.try_acquire_io, model, _tokens(input_tokens, "input_tokens"),
            _tokens(output_tokens, "output_tokens"),
        ))

    async def can_make_async(self, model: str, tokens: int = 0) -> bool:
        """:meth:`can_make` without blocking the event loop."""
        _model(model)
        return cast(bool, await self._run(self.can_make, model, _tokens(tokens)))

    async def record_async(self, model: str, tokens: int = 0) -> None:
        """:meth:`record` without blocking the event loop."""
        _model(model)
        await self._run(self.record, model, _tokens(tokens))

    async def record_tokens_async(self, model: str, input_tokens: int, output_tokens: int = 0) -> None:
        """:meth:`record_tokens` without blocking the event loop."""
        _model(model)
        await self._run(
            self.record_tokens, model, _tokens(input_tokens, "input_tokens"),
            _tokens(output_tokens, "output_tokens"),
        )

    async def settle_async(self, grant: Grant, actual_tokens: int) -> None:
        """:meth:`settle` without blocking the event loop."""
        await self._run(self.settle, grant, _tokens(actual_tokens, "actual_tokens"))

    async def settle_io_async(self, grant: Grant, actual_input: int, actual_output: int = 0) -> None:
        """:meth:`settle_io` without blocking the event loop."""
        await self._run(
            self.settle_io, grant, _tokens(actual_input, "actual_input"),
            _tokens(actual_output, "actual_output"),
        )

    async def pick_async(
        self, models: Sequence[str], input_tokens: int = 0, output_tokens: int = 0
    ) -> Pick:
        """:meth:`pick` without blocking the event loop."""
        if isinstance(models, (str, bytes)):
            raise TypeError("models must be a sequence of model names, not a single name")
        names = list(models)
        for name in names:
            _model(name)
        return cast(Pick, await self._run(
            self.pick, names, _tokens(input_tokens, "input_tokens"), _tokens(output_tokens, "output_tokens"),
        ))

    async def observe_headers_async(self, model: str, headers: Headers) -> None:
        """:meth:`observe_headers` without blocking the event loop (the headers
        are read on the caller's side, before any thread is involved)."""
        _model(model)
        pairs = list(zip(*_header_pairs(headers)))
        await self._run(self.observe_headers, model, pairs)

    async def report_limited_async(self, model: str, retry_after: RetryAfter = None) -> None:
        """:meth:`report_limited` without blocking the event loop."""
        _model(model)
        _retry_after(retry_after)  # checked here, converted again by the call
        await self._run(self.report_limited, model, retry_after)

    async def wait_time_async(self, model: str, tokens: int = 0) -> float:
        """:meth:`wait_time` without blocking the event loop."""
        _model(model)
        return cast(float, await self._run(self.wait_time, model, _tokens(tokens)))

    async def stats_async(self) -> Stats:
        """:meth:`stats` without blocking the event loop."""
        return cast(Stats, await self._run(self.stats))

    def pick(
        self, models: Sequence[str], input_tokens: int = 0, output_tokens: int = 0
    ) -> Pick:
        """Acquires on the first of ``models`` (in order of preference) that can
        take the request now. Returns a :class:`Pick`, truthy with the chosen
        ``model``, its ``index`` and its ``grant`` (settle it with
        :meth:`settle_io` or :meth:`settle`); when none can, falsy, naming the
        candidate that frees up first and its ``retry_after``. Each candidate
        is tried with one atomic acquire. Raises :class:`TooLarge` when the
        request exceeds a limit of every candidate outright, and
        :class:`InvalidArgument` for an empty list."""
        if isinstance(models, (str, bytes)):
            raise TypeError("models must be a sequence of model names, not a single name")
        names = list(models)
        encoded = [_model(name) for name in names]
        input_tokens = _tokens(input_tokens, "input_tokens")
        output_tokens = _tokens(output_tokens, "output_tokens")
        array = (c_char_p * len(encoded))(*encoded)
        picked = c_size_t()
        retry = c_uint64()
        ticket = c_uint64()
        rc = self._lib.rt_pick(
            self._h(), array, len(encoded), input_tokens, output_tokens,
            byref(picked), byref(retry), byref(ticket),
        )
        if rc == RT_OK:
            name = names[picked.value]
            grant = Grant(name, ticket.value, input_tokens, output_tokens)
            return Pick(True, name, picked.value, 0.0, grant)
        if rc == RT_LIMITED:
            return Pick(False, names[picked.value], picked.value, retry.value / 1000.0, None)
        raise _fail(self._lib, rc)

    def settle(self, grant: Grant, actual_tokens: int) -> None:
        """Books the real token count of a granted request (refund or top-up at
        the moment of the grant). Settle each grant once: settling twice books
        the difference twice.

        The ticket carries a keyed check of the tracker that issued it and of
        the tokens it was granted for, so ``grant`` must be a :class:`Grant`
        returned by this tracker, unaltered (``grant.tokens`` is passed as the
        granted count). Raises :class:`InvalidArgument`, changing nothing, for
        a grant from another tracker, a ticket 0 or forged, or ``tokens`` other
        than the grant's own. A grant with ``output_tokens`` is settled with
        :meth:`settle_io`."""
        if grant.output_tokens:
            raise InvalidArgument(
                "settle: this grant reserved output tokens; settle it with settle_io", RT_E_INVALID
            )
        h = self._fast
        if h is not None and _fast_settle(
            h, grant.model, grant.ticket, grant.tokens, actual_tokens
        ) is not _SLOW:
            return
        hv = self._hv
        if hv is None:
            self._h()
        model = grant.model
        raw = _model(model)
        rc = self._raw.settle(
            hv, raw, _count_fast(grant.ticket, "grant.ticket"),
            _count_fast(grant.tokens, "grant.tokens"), _count_fast(actual_tokens, "actual_tokens"),
        )
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def settle_io(self, grant: Grant, actual_input: int, actual_output: int = 0) -> None:
        """:meth:`settle` with the two sides: books the input and output tokens the
        response really reported (``usage.prompt_tokens`` /
        ``usage.completion_tokens``, ``usage.input_tokens`` /
        ``usage.output_tokens``); each window is settled for its own unit.
        Works for every :class:`Grant` (a plain one reserved no output). Same
        rules and errors as :meth:`settle`."""
        h = self._fast
        if h is not None and _fast_settle_io(
            h, grant.model, grant.ticket, grant.tokens, grant.output_tokens,
            actual_input, actual_output,
        ) is not _SLOW:
            return
        rc = self._lib.rt_settle_io(
            self._h(), _model(grant.model), _tokens(grant.ticket, "grant.ticket"),
            _tokens(grant.tokens, "grant.tokens"), _tokens(grant.output_tokens, "grant.output_tokens"),
            _tokens(actual_input, "actual_input"), _tokens(actual_output, "actual_output"),
        )
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def observe_headers(self, model: str, headers: Headers) -> None:
        """Feeds a response's rate-limit headers back to the tracker.

        ``headers``: a mapping (``dict``, ``requests``' ``CaseInsensitiveDict``,
        ``httpx.Headers``, ``http.client.HTTPMessage``, aiohttp's
        ``CIMultiDictProxy``...) or an iterable of (name, value) pairs; names are
        case-insensitive, a repeated header is passed once per value (a list
        value counts as repeated). Understood: OpenAI's
        ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` and
        Anthropic's ``anthropic-ratelimit-*``; unknown or malformed headers
        (including those that are not UTF-8) are skipped; a NUL in a name or
        value raises :class:`InvalidArgument` (C would cut the text at it). Afterwards the tracker never believes in more capacity than
        the provider reported until its reset; a reported limit that differs
        from the configured one shows as ``observed_limit`` in the stats."""
        names, values = _header_pairs(headers)
        count = len(names)
        rc = self._lib.rt_observe_headers(
            self._h(), _model(model),
            (c_char_p * count)(*names), (c_char_p * count)(*values), count,
        )
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def report_limited(self, model: str, retry_after: RetryAfter = None) -> None:
        """Reports a 429 from the provider: ``model`` is refused (try_acquire is
        falsy, with the time left as ``retry_after``) until the Retry-After
        time. ``retry_after``: the header as received (``"30"``, ``"1.5"`` or an
        HTTP date), a number of seconds, a :class:`datetime.timedelta`, or None
        / ``""`` / unreadable for 1 second; at most a day. Through ``shm:`` and
        Redis backends one process's 429 stops the others too."""
        rc = self._lib.rt_report_limited(self._h(), _model(model), _retry_after(retry_after))
        if rc != RT_OK:
            raise _fail(self._lib, rc)

    def wait_time(self, model: str, tokens: int = 0) -> float:
        """Seconds until a request of ``tokens`` tokens to ``model`` would fit
        (0.0: now); records nothing. Raises :class:`TooLarge` for "never"."""
        h = self._fast
        if h is not None:
            result = _fast_wait_time(h, model, tokens)
            if result is not _SLOW:
                return result
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

    def metrics_text(self) -> str:
        """The tracker's usage in the Prometheus text exposition format (0.0.4),
        to serve on your own HTTP server: ``ratetrack_info``,
        ``ratetrack_window_usage`` / ``_limit`` / ``_remaining`` /
        ``_observed_limit{model,window}``, ``ratetrack_admitted_total`` /
        ``ratetrack_refused_total{model}`` (this process's try_acquire and pick
        decisions), ``ratetrack_blocked_seconds{model}``,
        ``ratetrack_backend_errors_total`` / ``ratetrack_backend_up{backend}``.
        Raises :class:`InvalidArgument` on a closed tracker."""
        return _metrics_text(self._lib, self._h())


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
    loader's ``libratetrack.so.0``, then the copy a wheel carries
    (``ratetrack/_lib/libratetrack.so.0``). Only the first load counts: the library is
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
    raw: bytes = _library.load().rt_status_string(_checks.c_int(code, "code"))
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
    rc = lib.rt_global_get_ex(None if tier is None else _checks.text(tier, "tier"), byref(out))
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
    _remote_by_handle.clear()  # the global's backend may have changed


def global_stats() -> Optional[Stats]:
    """The global tracker's stats, or None when it has not been created (or
    since :func:`reset_global`, until the next :func:`global_tracker`)."""
    return _stats(_library.load(), None)


def global_metrics_text() -> str:
    """The global tracker's :meth:`Tracker.metrics_text`; when it has not been
    created, the library's text says so (a comment line, no samples)."""
    return _metrics_text(_library.load(), None)


def shm_list() -> List[ShmSegment]:
    """The ``shm:`` segments in ``/dev/shm`` (``ratetrack.NAME`` files), as a
    list of dicts (:class:`ShmSegment`), in no particular order."""
    lib = _library.load()
    out = c_void_p()
    rc = lib.rt_shm_list(byref(out))
    if rc != RT_OK:
        raise _fail(lib, rc)
    assert out.value is not None
    result: List[ShmSegment] = json.loads(_take_string(lib, out.value))
    return result


def shm_remove(name: str) -> None:
    """Removes the segment of the ``"shm:NAME"`` backend (``name`` without the
    ``shm:``): unlinks ``/dev/shm/ratetrack.NAME``. Processes that have it
    mapped keep using their mapping, so stop them first or the budget splits
    in two. Raises :class:`InvalidArgument` for a bad or unknown name,
    :class:`BackendError` when it cannot be removed."""
    raw = _checks.text(name, "name")
    lib = _library.load()
    rc = lib.rt_shm_remove(raw)
    if rc != RT_OK:
        raise _fail(lib, rc)


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
