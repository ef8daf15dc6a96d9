"""Shared fixtures. Integration tests need RATETRACK_LIBRARY (run-tests.sh checks it)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

import ratetrack

MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="session")
def library_path() -> str:
    path = os.environ.get("RATETRACK_LIBRARY")
    if not path:
        pytest.fail("RATETRACK_LIBRARY is not set: point it at libratetrack.so.0")
    ratetrack.load()
    return path


@pytest.fixture
def clean_global(library_path: str) -> Iterator[None]:
    """Resets the global tracker before and after a test that uses it."""
    ratetrack.reset_global()
    yield
    ratetrack.reset_global()


def short_window(limit: int, seconds: int = 1, model: str = "acme/m") -> dict:
    """A config with one request window of `seconds` seconds on `model`."""
    return {
        "builtin_tiers": False,
        "limits": {model: {"windows": [{"unit": "requests", "limit": limit, "seconds": seconds}]}},
    }
