"""The seed project's global rate tracker, backed by libratetrack's one global
tracker: its users switch by changing one import::

    # from coffee_maker.langchain_observe.global_rate_tracker import get_global_rate_tracker
    from ratetrack.global_rate_tracker import get_global_rate_tracker

    tracker = get_global_rate_tracker("tier1")
    if tracker.can_make_request("openai/gpt-4o-mini", 1200):
        ...
        tracker.record_request("openai/gpt-4o-mini", tokens_used=1150)
    tracker.get_usage_stats("openai/gpt-4o-mini")["requests_per_minute"]["current"]

Same names, same dict shapes (``{"requests_per_minute": {"current", "limit",
"remaining", "usage_percent"}, "tokens_per_minute": {...},
"requests_per_day": {...}, "tokens_per_day": {...}}`` per model). What
differs, on purpose:

* The state is the process-wide global tracker of libratetrack (shared with
  every other language in the process, and across processes with a ``shm:``
  or ``redis://`` backend), not a Python object.
* A tier change applies the new tier's limits from then on and keeps the usage
  already recorded (the provider still counts it); the seed dropped it. The
  object returned is a new one, as in the seed.
* ``can_make_request`` then ``record_request`` is not atomic (two callers can
  both take the last slot): new code should use ``tracker.try_acquire`` (the
  :class:`ratetrack.Tracker` is at ``.tracker``).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from . import _checks
from ._tracker import Tracker, WindowStats, global_stats, global_tracker, reset_global

__all__ = [
    "RateLimitTracker",
    "get_global_rate_tracker",
    "get_global_rate_tracker_stats",
    "reset_global_rate_tracker",
]

_WINDOWS = ("requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day")


def _empty_window() -> WindowStats:
    return {"current": 0, "limit": None, "remaining": None, "usage_percent": None}


class RateLimitTracker:
    """The seed's ``RateLimitTracker`` interface over a :class:`ratetrack.Tracker`."""

    def __init__(self, tracker: Tracker, tier: str) -> None:
        self.tracker = tracker
        self.tier = tier

    def can_make_request(self, model: str, estimated_tokens: int = 0) -> bool:
        """Whether a request of ``estimated_tokens`` fits every window of
        ``model`` now (records nothing). A request that can never fit is
        False, as in the seed."""
        from .errors import TooLarge

        try:
            return self.tracker.can_make(model, estimated_tokens)
        except TooLarge:
            return False

    def record_request(self, model: str, tokens_used: int = 0) -> None:
        """Records a request of ``tokens_used`` tokens that happened now."""
        self.tracker.record(model, tokens_used)

    def get_wait_time(self, model: str, estimated_tokens: int = 0) -> float:
        """Seconds until such a request would fit (0.0: now)."""
        return self.tracker.wait_time(model, estimated_tokens)

    def get_usage_stats(self, model: str) -> Dict[str, Any]:
        """``{"requests_per_minute": {"current", "limit", "remaining",
        "usage_percent"}, "tokens_per_minute": ..., "requests_per_day": ...,
        "tokens_per_day": ...}`` for ``model`` (zeros for a model never used
        and without limits; extra windows of libratetrack are included too)."""
        _checks.model(model)
        stats = self.tracker.stats()["models"].get(model)
        result: Dict[str, Any] = {name: _empty_window() for name in _WINDOWS}
        if stats:
            result.update(stats)
        return result


_lock = threading.Lock()
_instance: Optional[RateLimitTracker] = None


def get_global_rate_tracker(tier: str = "tier1") -> RateLimitTracker:
    """The global tracker (the same object for the same tier; a tier change
    applies the new tier's limits and returns a new object over the same
    global, with the usage kept)."""
    global _instance
    _checks.text(tier, "tier")
    with _lock:
        if _instance is not None and _instance.tier == tier and global_stats() is not None:
            return _instance
        _instance = RateLimitTracker(global_tracker(tier), tier)
        return _instance


def reset_global_rate_tracker() -> None:
    """Forgets the global tracker's usage and its tier (``ratetrack.reset_global``);
    the next :func:`get_global_rate_tracker` creates it again."""
    global _instance
    with _lock:
        _instance = None
        reset_global()


def get_global_rate_tracker_stats() -> Optional[Dict[str, Dict[str, Any]]]:
    """None before the global tracker is created (or after a reset), else
    ``{model: usage stats}`` for every model listed (as :meth:`get_usage_stats`)."""
    stats = global_stats()
    if stats is None:
        return None
    return {model: dict(windows) for model, windows in stats["models"].items()}
