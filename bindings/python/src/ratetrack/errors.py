"""Exceptions of the ratetrack binding: one class per libratetrack status code.

The status code alone chooses the class (see :func:`error_from_status`); the
message is the library's ``rt_last_error()`` text read right after the failing
call, on the same thread.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

# Status codes of ratetrack.h (pinned by the C ABI).
RT_OK = 0
RT_LIMITED = 1
RT_E_INVALID = -1
RT_E_CONFIG = -2
RT_E_TOO_LARGE = -3
RT_E_BACKEND = -4
RT_E_NOMEM = -5
RT_E_INTERNAL = -6

#: Names of the status codes, as in the C header.
STATUS_NAMES: Dict[int, str] = {
    RT_OK: "RT_OK",
    RT_LIMITED: "RT_LIMITED",
    RT_E_INVALID: "RT_E_INVALID",
    RT_E_CONFIG: "RT_E_CONFIG",
    RT_E_TOO_LARGE: "RT_E_TOO_LARGE",
    RT_E_BACKEND: "RT_E_BACKEND",
    RT_E_NOMEM: "RT_E_NOMEM",
    RT_E_INTERNAL: "RT_E_INTERNAL",
}


class RateTrackError(Exception):
    """Base class of every error raised by the binding.

    ``code`` is the libratetrack status code (a negative ``RT_E_*`` value,
    ``RT_LIMITED`` for :class:`AcquireTimeout`), or ``None`` for errors that
    happen before any call into the library (:class:`LibraryError`).
    ``message`` is the detail text (``rt_last_error()`` for library errors).
    """

    code: Optional[int]
    message: str

    def __init__(self, message: str = "", code: Optional[int] = None) -> None:
        self.code = code
        self.message = message
        super().__init__(message)

    @property
    def status(self) -> Optional[str]:
        """The status code's name, e.g. ``"RT_E_CONFIG"`` (None without a code)."""
        if self.code is None:
            return None
        return STATUS_NAMES.get(self.code, f"status {self.code}")

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        name = self.status
        return f"{name}: {self.message}" if self.message else str(name)


class InvalidArgument(RateTrackError, ValueError):
    """RT_E_INVALID: a bad argument (empty model, closed tracker, bad ticket...)."""


class ConfigError(RateTrackError, ValueError):
    """RT_E_CONFIG: malformed or inconsistent configuration, unknown tier."""


class TooLarge(RateTrackError):
    """RT_E_TOO_LARGE: the cost exceeds a limit outright; it can never be admitted."""


class BackendError(RateTrackError):
    """RT_E_BACKEND: the shared store (shared memory, Redis) failed."""


class NoMemory(RateTrackError):
    """RT_E_NOMEM: the library ran out of memory."""


class InternalError(RateTrackError):
    """RT_E_INTERNAL: a bug in libratetrack (please report it)."""


class AcquireTimeout(RateTrackError, TimeoutError):
    """A blocking :meth:`Tracker.acquire` gave up at its timeout (code RT_LIMITED).

    ``retry_after`` is the tracker's last estimate, in seconds, of how long
    until the request would fit.
    """

    retry_after: float

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, RT_LIMITED)
        self.retry_after = retry_after


class LibraryError(RateTrackError):
    """The shared library could not be used (``code`` is None)."""


class LibraryNotFound(LibraryError):
    """No candidate library could be loaded; the message lists every place tried."""


class VersionMismatch(LibraryError):
    """The loaded library's major.minor differs from the binding's."""


_BY_CODE: Dict[int, Type[RateTrackError]] = {
    RT_E_INVALID: InvalidArgument,
    RT_E_CONFIG: ConfigError,
    RT_E_TOO_LARGE: TooLarge,
    RT_E_BACKEND: BackendError,
    RT_E_NOMEM: NoMemory,
    RT_E_INTERNAL: InternalError,
}


def error_from_status(code: int, message: str = "") -> RateTrackError:
    """The exception for a negative status ``code`` (unknown codes: the base class)."""
    cls = _BY_CODE.get(code, RateTrackError)
    return cls(message, code)
