"""Test doubles of the tracker shared by the SDK and LangChain tests."""

from __future__ import annotations

import threading
from typing import Any

import ratetrack


class Reporting(ratetrack.Tracker):
    """A second handle on a tracker whose report_limited also sets an event."""

    __slots__ = ()
    reported = threading.Event()

    @classmethod
    def over(cls, t: ratetrack.Tracker) -> "Reporting":
        cls.reported = threading.Event()
        return cls(t._lib, t._h(), True)  # is_global=True: never closes t's handle

    def report_limited(self, model: str, retry_after: Any = None) -> None:
        super().report_limited(model, retry_after)
        Reporting.reported.set()

    async def report_limited_async(self, model: str, retry_after: Any = None) -> None:
        await super().report_limited_async(model, retry_after)
        Reporting.reported.set()
