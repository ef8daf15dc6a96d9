"""Drop-in integrations of ratetrack with the SDKs agents use.

* :func:`wrap_openai` / :func:`wrap_anthropic` (:mod:`.sdk`): one line puts an
  ``openai.OpenAI`` / ``AsyncOpenAI`` or ``anthropic.Anthropic`` /
  ``AsyncAnthropic`` client under a tracker, through the SDK's own extension
  point (an httpx transport given as ``http_client``).
* :mod:`.langchain`: a ``BaseRateLimiter``, a callback handler that books the
  real tokens, and a chat model that picks the first of several models with
  room and falls back on a 429.
* :mod:`ratetrack.global_rate_tracker`: the seed's global-tracker names.

No SDK is imported until it is used (extras: ``ratetrack[openai]``,
``ratetrack[anthropic]``, ``ratetrack[langchain]``).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "wrap_openai": "sdk",
    "wrap_anthropic": "sdk",
    "openai_http_client": "sdk",
    "anthropic_http_client": "sdk",
    "rate_limited_transport": "sdk",
    "estimate_input_tokens": "_http",
    "RateTrackRateLimiter": "langchain",
    "RateTrackCallbackHandler": "langchain",
    "AsyncRateTrackCallbackHandler": "langchain",
    "RateTrackPicker": "langchain",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
