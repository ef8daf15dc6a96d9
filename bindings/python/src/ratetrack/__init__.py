"""ratetrack: Python binding of libratetrack, a rate-limit tracker for LLM APIs.

A thin ctypes layer over the C ABI of ``libratetrack.so.0``, loaded at run
time (explicit :func:`load` path, then ``$RATETRACK_LIBRARY``, then the
system loader, then the copy a wheel carries in ``ratetrack/_lib/``), whose
hot calls go through the small extension module ``ratetrack._fast`` where it
is built (``ratetrack._library.fast_path()``)::

    import ratetrack

    tracker = ratetrack.global_tracker("tier1")     # shared by the whole process
    if tracker.try_acquire("openai/gpt-4o-mini", tokens=1200):
        ...                                         # call the API
    grant = tracker.acquire("openai/gpt-4o-mini", 1200, timeout=30)  # blocks
    tracker.settle(grant, actual_tokens=900)
    print(tracker.stats()["models"]["openai/gpt-4o-mini"]["requests_per_minute"])

    pick = tracker.pick(["openai/gpt-4o-mini", "gemini/gemini-2.5-flash"], 1200, 400)
    if pick:                                        # input and output counted apart
        ...                                         # call pick.model, then:
        tracker.settle_io(pick.grant, 1100, 230)    # the response's usage
        tracker.observe_headers(pick.model, response.headers)  # provider truth
    # on a 429: tracker.report_limited(model, response.headers.get("retry-after"))
    print(tracker.metrics_text())                   # Prometheus text exposition
"""

from ._library import BINDING_VERSION
from ._tracker import (
    Acquire,
    Config,
    Grant,
    Headers,
    Pick,
    ProviderStats,
    ProviderWindow,
    RetryAfter,
    ShmSegment,
    Stats,
    SupportsItems,
    Tracker,
    WindowStats,
    configure_global,
    global_metrics_text,
    global_stats,
    global_tracker,
    load,
    open,
    reset_global,
    shm_list,
    shm_remove,
    status_string,
    version,
    version_number,
)
from .errors import (
    AcquireTimeout,
    BackendError,
    ConfigError,
    InternalError,
    InvalidArgument,
    LibraryError,
    LibraryNotFound,
    NoMemory,
    RateTrackError,
    TooLarge,
    VersionMismatch,
)

__version__ = "0.1.0"

__all__ = [
    "BINDING_VERSION",
    "Acquire",
    "AcquireTimeout",
    "BackendError",
    "Config",
    "ConfigError",
    "Grant",
    "Headers",
    "InternalError",
    "InvalidArgument",
    "LibraryError",
    "LibraryNotFound",
    "NoMemory",
    "Pick",
    "ProviderStats",
    "ProviderWindow",
    "RateTrackError",
    "RetryAfter",
    "ShmSegment",
    "Stats",
    "SupportsItems",
    "TooLarge",
    "Tracker",
    "VersionMismatch",
    "WindowStats",
    "configure_global",
    "global_metrics_text",
    "global_stats",
    "global_tracker",
    "load",
    "open",
    "reset_global",
    "shm_list",
    "shm_remove",
    "status_string",
    "version",
    "version_number",
]
