"""Finding, loading and declaring libratetrack (ctypes), and pointing
ratetrack._fast at it where that module is built.

Lookup order: an explicit path, then the environment variable
``RATETRACK_LIBRARY``, then the system loader name ``libratetrack.so.0`` (an
installed library comes before the wheel's own copy, so that C and Python
code in one process share one library and so one global tracker), then the
copy a wheel carries in ``ratetrack/_lib/``. The first candidate that loads is
used; if none does, :class:`LibraryNotFound` names every place tried with the
loader's message for each. A library whose major.minor differs from the
binding's is refused (:class:`VersionMismatch`): at once when it was named
(explicit path, ``RATETRACK_LIBRARY``); a system library of another version
is passed over for the bundled copy. One that lacks a function of the API (an
earlier build without ``rt_open_ex``, ``rt_global_get_ex``,
``rt_stats_json_ex``, or without the provider-truth functions
``rt_try_acquire_io``, ``rt_settle_io``, ``rt_pick``, ``rt_observe_headers``,
``rt_report_limited``, or without ``rt_record_tokens``, or without the metrics and shared-memory functions
``rt_metrics_text``, ``rt_shm_list``, ``rt_shm_remove``) is passed over like
one that does not load, with the missing symbol named.
The library is loaded once per process, lazily, and shared.

The hot calls (``try_acquire`` and its kin) go through the extension module
``ratetrack._fast`` where it is built (a wheel, ``pip install``): it finds
their functions with ``dlsym`` in the library loaded here, so nothing above
changes. Without it (a source tree), or with ``RATETRACK_PYTHON_FAST=0``,
every call goes through ctypes. :func:`fast_path` says which.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_uint64, c_void_p
from typing import List, Mapping, Optional, Tuple

from . import _checks
from .errors import LibraryNotFound, VersionMismatch

#: major.minor of the C API this binding was written for (ratetrack.h 0.1.x).
BINDING_VERSION: Tuple[int, int] = (0, 1)

#: Environment variable naming the library file.
ENV_VAR = "RATETRACK_LIBRARY"

#: Name given to the system loader.
SYSTEM_NAME = "libratetrack.so.0"

#: The copy a wheel carries (the portable library, needing only glibc); a
#: source tree has none. Tried last.
BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib", SYSTEM_NAME)

#: Environment variable: ``0`` makes every call go through ctypes even where
#: ``ratetrack._fast`` is built (read when the library is loaded).
FAST_ENV_VAR = "RATETRACK_PYTHON_FAST"

try:
    from . import _fast as FAST_MODULE
    _fast_missing = ""
except ImportError as _exc:  # a source tree, or a build without it
    FAST_MODULE = None  # type: ignore[assignment]
    _fast_missing = str(_exc)

_u64p = POINTER(c_uint64)
_strv = POINTER(c_char_p)  # const char *const * (arrays of names / values)

# name: (restype, argtypes). rt_tracker* is an opaque c_void_p.
# Owned strings (rt_stats_json_ex's *json_out, rt_metrics_text's *text_out,
# rt_shm_list's *json_out) are c_void_p so that they can be
# rt_free'd; const char* (static or thread-local) strings are c_char_p.
# Every symbol is resolved at load: a library lacking one (e.g. a build before
# the *_ex functions) is not the version this binding was written for.
# Trackers and stats come from the *_ex forms only, so that the kind of a
# failure always comes from a status code, never from a bare NULL.
_PROTOTYPES = {
    "rt_version_number": (c_int, []),
    "rt_version_string": (c_char_p, []),
    "rt_status_string": (c_char_p, [c_int]),
    "rt_last_error": (c_char_p, []),
    "rt_free": (None, [c_void_p]),
    "rt_global_get_ex": (c_int, [c_char_p, POINTER(c_void_p)]),
    "rt_global_configure": (c_int, [c_char_p]),
    "rt_open_ex": (c_int, [c_char_p, POINTER(c_void_p)]),
    "rt_configure": (c_int, [c_void_p, c_char_p]),
    "rt_close": (None, [c_void_p]),
    "rt_can_make": (c_int, [c_void_p, c_char_p, c_uint64]),
    "rt_record": (c_int, [c_void_p, c_char_p, c_uint64]),
    "rt_record_tokens": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64]),
    "rt_try_acquire": (c_int, [c_void_p, c_char_p, c_uint64, _u64p]),
    "rt_try_acquire_grant": (c_int, [c_void_p, c_char_p, c_uint64, _u64p, _u64p]),
    "rt_acquire": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, _u64p]),
    "rt_settle": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, c_uint64]),
    "rt_wait_time": (c_int, [c_void_p, c_char_p, c_uint64, _u64p]),
    "rt_reset": (c_int, [c_void_p]),
    "rt_stats_json_ex": (c_int, [c_void_p, POINTER(c_void_p)]),
    # input and output tokens, picking a model, provider truth
    "rt_try_acquire_io": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, _u64p, _u64p]),
    "rt_settle_io": (
        c_int,
        [c_void_p, c_char_p, c_uint64, c_uint64, c_uint64, c_uint64, c_uint64],
    ),
    "rt_pick": (
        c_int,
        [c_void_p, _strv, c_size_t, c_uint64, c_uint64, POINTER(c_size_t), _u64p, _u64p],
    ),
    "rt_observe_headers": (c_int, [c_void_p, c_char_p, _strv, _strv, c_size_t]),
    "rt_report_limited": (c_int, [c_void_p, c_char_p, c_char_p]),
    # Prometheus text, shared-memory segments (owned out-strings: c_void_p)
    "rt_metrics_text": (c_int, [c_void_p, POINTER(c_void_p)]),
    "rt_shm_list": (c_int, [POINTER(c_void_p)]),
    "rt_shm_remove": (c_int, [c_char_p]),
}


def _declare(lib: ctypes.CDLL) -> None:
    """Sets restype/argtypes of every C function (AttributeError if one is missing)."""
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


class RawFunctions:
    """The hot calls again, as function pointers without ``argtypes``.

    With ``argtypes`` set, ctypes runs each argument through its type's
    ``from_param`` (a new argument object per argument per call): about
    900 ns of a 4-argument call on CPython 3.11, against about 450 without.
    The binding calls these only with arguments it has already checked and
    that ctypes passes unconverted: the tracker as a ``c_void_p``, the model
    as ``bytes``, a count as a small ``int`` (see :data:`SMALL_INT_MAX`) or a
    ``c_uint64``, an out-parameter as a ``byref``. Every call still releases
    the GIL, as the declared functions do.
    """

    __slots__ = ("try_acquire", "try_acquire_grant", "can_make", "record", "settle")

    def __init__(self, lib: ctypes.CDLL) -> None:
        for name in self.__slots__:
            fn = lib._FuncPtr(("rt_" + name, lib))
            fn.restype = c_int
            setattr(self, name, fn)


#: The largest count passed to :class:`RawFunctions` as a plain ``int``.
#: ctypes passes an int as a C ``int``; libffi widens it to the 64-bit
#: register the ``uint64_t`` parameter is read from, sign-extending, so a
#: non-negative int arrives unchanged (x86-64 and AArch64, the platforms the
#: wheels are built for). Elsewhere every count goes as a ``c_uint64``.
SMALL_INT_MAX = (1 << 31) - 1 if platform.machine().lower() in (
    "x86_64", "amd64", "aarch64", "arm64") else -1


def raw_functions(lib: ctypes.CDLL) -> RawFunctions:
    """The :class:`RawFunctions` of ``lib``, made once per library object."""
    raw = getattr(lib, "_rt_raw_functions", None)
    if raw is None:
        raw = RawFunctions(lib)
        lib._rt_raw_functions = raw
    return raw


def check_version(number: int, binding: Tuple[int, int] = BINDING_VERSION) -> None:
    """Raises :class:`VersionMismatch` unless ``number`` (as from
    ``rt_version_number()``: major*10000 + minor*100 + patch) has the binding's
    major.minor."""
    major, minor = divmod(number // 100, 100)
    if (major, minor) != tuple(binding):
        raise VersionMismatch(
            f"libratetrack {major}.{minor}.{number % 100} (rt_version_number() = {number}) "
            f"is not compatible with this binding, which needs {binding[0]}.{binding[1]}.x"
        )


def find_library(
    path: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    binding: Tuple[int, int] = BINDING_VERSION,
    bundled: Optional[str] = None,
) -> Tuple[ctypes.CDLL, str]:
    """Loads libratetrack without caching it; returns ``(library, where)``.

    Tries ``path`` (if given), then ``environ[RATETRACK_LIBRARY]`` (``environ``
    defaults to ``os.environ``), then the system loader, then ``bundled``
    (defaults to :data:`BUNDLED`, the wheel's copy). Raises
    :class:`LibraryNotFound` listing every place tried, or
    :class:`VersionMismatch` for a library of another major.minor given by
    ``path`` or the environment, or when the only library found was one.
    """
    env = os.environ if environ is None else environ
    bundled = BUNDLED if bundled is None else bundled
    candidates: List[Tuple[str, Optional[str], bool]] = []  # label, where, named by the user
    if path:
        candidates.append(("explicit path", _checks.path(path), True))
    candidates.append((f"${ENV_VAR}", env.get(ENV_VAR) or None, True))
    candidates.append(("system loader", SYSTEM_NAME, False))
    candidates.append(("bundled copy", bundled, False))

    tried: List[str] = []
    mismatch: Optional[VersionMismatch] = None
    for label, candidate, named in candidates:
        if candidate is None:
            tried.append(f"  {label}: not set")
            continue
        if label == "bundled copy" and not os.path.exists(candidate):
            tried.append(
                f"  {label} {candidate!r}: not in this install (a wheel carries one, a source tree does not)"
            )
            continue
        try:
            lib = ctypes.CDLL(candidate)
            _declare(lib)
        except (OSError, AttributeError) as exc:
            tried.append(f"  {label} {candidate!r}: {exc}")
            continue
        try:
            check_version(lib.rt_version_number(), binding)
        except VersionMismatch as exc:
            if named:
                raise
            mismatch = mismatch or exc
            tried.append(f"  {label} {candidate!r}: {exc}")
            continue
        return lib, candidate
    places = "tried, in order:\n" + "\n".join(tried)
    if mismatch is not None:
        raise VersionMismatch(f"{mismatch}; no other libratetrack loads; {places}")
    raise LibraryNotFound("could not load libratetrack; " + places)


_lock = threading.Lock()
_loaded: Optional[ctypes.CDLL] = None
_loaded_from: Optional[str] = None
_fast_bound = False  # ratetrack._fast serves _loaded
_fast_reason = "the library is not loaded yet"


def load(path: Optional[str] = None) -> ctypes.CDLL:
    """The process's libratetrack, loaded on first use and then shared.

    ``path`` is only used by the first load; later calls return the library
    already loaded, whatever ``path`` says.
    """
    global _loaded, _loaded_from
    if path:
        _checks.path(path)  # refused even once loaded: a NUL is a bug, not a place
    lib = _loaded
    if lib is not None:
        return lib
    with _lock:
        if _loaded is None:
            lib, where = find_library(path)
            _bind_fast(lib)
            _loaded, _loaded_from = lib, where
        return _loaded


def loaded_from() -> Optional[str]:
    """Where the shared library was loaded from (None before it is loaded)."""
    return _loaded_from


def _bind_fast(lib: ctypes.CDLL) -> None:
    """Points ratetrack._fast at ``lib`` (the process's library), unless it is
    missing or ``RATETRACK_PYTHON_FAST=0``; records why not."""
    global _fast_bound, _fast_reason
    if os.environ.get(FAST_ENV_VAR, "").strip() == "0":
        _fast_reason = f"ctypes: ${FAST_ENV_VAR}=0"
    elif FAST_MODULE is None:
        _fast_reason = f"ctypes: ratetrack._fast is not built here ({_fast_missing})"
    else:
        try:
            FAST_MODULE.bind(lib._handle)
        except Exception as exc:  # noqa: BLE001 - a symbol missing...: ctypes still works
            _fast_reason = f"ctypes: {exc}"
            return
        if not FAST_MODULE.bound():
            _fast_reason = "ctypes: ratetrack._fast has no results set (_tracker.py not imported)"
            return
        _fast_bound = True
        _fast_reason = f"ratetrack._fast ({FAST_MODULE.__file__})"


def fast_functions(lib: ctypes.CDLL) -> bool:
    """Whether the hot calls on trackers of ``lib`` go through ratetrack._fast:
    only for the process's library, once bound."""
    return _fast_bound and lib is _loaded


def fast_path() -> bool:
    """Whether the hot calls (``try_acquire``, ``try_acquire_grant``,
    ``try_acquire_io``, ``can_make``, ``record``, ``record_tokens``,
    ``settle``, ``settle_io``, ``wait_time``) go through the extension module
    ``ratetrack._fast`` (True) or ctypes (False). Loads the library."""
    load()
    return _fast_bound


def fast_path_reason() -> str:
    """:func:`fast_path` in words: the module's file, or why ctypes is used
    (``$RATETRACK_PYTHON_FAST=0``, the module not built, ...)."""
    load()
    return _fast_reason
