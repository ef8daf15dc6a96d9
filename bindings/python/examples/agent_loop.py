"""A complete agent loop over three providers, with the providers simulated.

For each task: estimate the tokens, pick the first model that can take the
request now, call it, settle the grant to the tokens the response reports,
and feed the response's rate-limit headers back. A 429 is reported too, so
that the model is left alone until its Retry-After.

The "providers" are fakes (no network, no keys), but speak like the real ones:
  - OpenAI answers with x-ratelimit-* headers. Its key is shared with another
    service that has already used most of this window's requests: only the
    headers tell the tracker so.
  - Anthropic answers with anthropic-ratelimit-* headers, and once with a 429.
  - Gemini sends no rate-limit headers; its free tier allows 15 requests a minute.

Run: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 python examples/agent_loop.py
(about two seconds).
"""

from __future__ import annotations

import datetime
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import ratetrack

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-20250514", "gemini/gemini-2.5-flash"]
MAX_OUTPUT = 300  # max_tokens of every call
START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - START:5.2f}s] {message}")


def estimate_tokens(prompt: str) -> int:
    """A rough count before the call (about 4 characters a token, plus framing)."""
    return len(prompt) // 4 + 8


# --------------------------------------------------------------- fake providers
@dataclass
class Response:
    status: int
    headers: Dict[str, str]
    body: Dict[str, Any] = field(default_factory=dict)


class FakeProviders:
    """Answers like the real APIs: usage in each one's own shape, rate-limit headers."""

    def __init__(self) -> None:
        self.rng = random.Random(7)
        # OpenAI: 3 requests left on the shared key, a new window every second.
        self.openai_left = 3
        self.openai_reset_at = time.monotonic() + 1.0
        self.anthropic_calls = 0

    def call(self, model: str, prompt: str, max_tokens: int) -> Response:
        time.sleep(0.02)  # network and generation
        prompt_tokens = max(1, int(estimate_tokens(prompt) * self.rng.uniform(0.85, 1.0)))
        completion_tokens = self.rng.randint(40, max_tokens)
        provider = model.split("/")[0]
        if provider == "openai":
            return self._openai(prompt_tokens, completion_tokens)
        if provider == "anthropic":
            return self._anthropic(prompt_tokens, completion_tokens)
        return Response(200, {}, {"usageMetadata": {"promptTokenCount": prompt_tokens,
                                                     "candidatesTokenCount": completion_tokens}})

    def _openai(self, prompt_tokens: int, completion_tokens: int) -> Response:
        now = time.monotonic()
        if now >= self.openai_reset_at:
            self.openai_left, self.openai_reset_at = 3, now + 1.0
        self.openai_left -= 1
        headers = {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": str(max(self.openai_left, 0)),
            "x-ratelimit-reset-requests": f"{self.openai_reset_at - now:.3f}s",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "151000",
            "x-ratelimit-reset-tokens": "14.6s",
        }
        if self.openai_left < 0:
            return Response(429, dict(headers, **{"retry-after": "1"}))
        return Response(200, headers, {"usage": {"prompt_tokens": prompt_tokens,
                                                 "completion_tokens": completion_tokens}})

    def _anthropic(self, input_tokens: int, output_tokens: int) -> Response:
        self.anthropic_calls += 1
        reset = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)
        headers = {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": str(50 - self.anthropic_calls),
            "anthropic-ratelimit-requests-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "anthropic-ratelimit-input-tokens-limit": "30000",
            "anthropic-ratelimit-input-tokens-remaining": "29000",
            "anthropic-ratelimit-input-tokens-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-output-tokens-remaining": "7700",
            "anthropic-ratelimit-output-tokens-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.anthropic_calls == 2:  # overloaded once: a 429 with Retry-After
            return Response(429, dict(headers, **{"retry-after": "1"}))
        return Response(200, headers, {"usage": {"input_tokens": input_tokens,
                                                 "output_tokens": output_tokens}})


def usage_of(model: str, body: Dict[str, Any]) -> Tuple[int, int]:
    """(input, output) tokens from each provider's own response shape."""
    if model.startswith("openai/"):
        return body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
    if model.startswith("anthropic/"):
        return body["usage"]["input_tokens"], body["usage"]["output_tokens"]
    meta = body["usageMetadata"]
    return meta["promptTokenCount"], meta["candidatesTokenCount"]


# ------------------------------------------------------------------ the loop
def run_task(tracker: ratetrack.Tracker, api: FakeProviders, task: int, prompt: str) -> str:
    estimate = estimate_tokens(prompt)
    while True:
        pick = tracker.pick(MODELS, estimate, MAX_OUTPUT)  # acquire on the first that fits
        if not pick:
            log(f"task {task}: every model is limited; {pick.model} frees first, "
                f"waiting {pick.retry_after:.2f}s")
            time.sleep(pick.retry_after + 0.005)  # the wait is rounded to the millisecond
            continue
        assert pick.grant is not None
        response = api.call(pick.model, prompt, MAX_OUTPUT)
        tracker.observe_headers(pick.model, response.headers)  # what the provider says is left
        if response.status == 429:
            tracker.settle_io(pick.grant, 0, 0)  # rejected: it used no tokens
            tracker.report_limited(pick.model, response.headers.get("retry-after"))
            log(f"task {task}: {pick.model} answered 429 (retry-after "
                f"{response.headers.get('retry-after')}s): reported, trying again")
            continue
        used_in, used_out = usage_of(pick.model, response.body)
        tracker.settle_io(pick.grant, used_in, used_out)  # the real counts
        left = response.headers.get("x-ratelimit-remaining-requests")
        note = f"; remaining requests: {left}" if left is not None else ""
        log(f"task {task}: {pick.model} (choice {pick.index + 1}): reserved {estimate}+{MAX_OUTPUT}, "
            f"used {used_in}+{used_out} tokens{note}")
        return pick.model


def main() -> None:
    tracker = ratetrack.global_tracker("openai=tier1,anthropic=tier1,gemini=free")
    api = FakeProviders()
    print(f"libratetrack {ratetrack.version()}; preference: {', '.join(MODELS)}")
    served: Dict[str, int] = {m: 0 for m in MODELS}
    for task in range(1, 25):
        prompt = f"Task {task}: summarise section {task} of the report. " * random.Random(task).randint(3, 30)
        served[run_task(tracker, api, task, prompt)] += 1

    print("\nserved:", ", ".join(f"{m} {n}" for m, n in served.items()))
    stats = tracker.stats()
    for model in MODELS:
        windows = stats["models"][model]
        rpm = windows["requests_per_minute"]
        line = f"  {model}: {rpm['current']}/{rpm['limit']} requests this minute"
        if "observed_limit" in rpm:
            line += f" (the provider says its limit is {rpm['observed_limit']})"
        for name in ("input_tokens_per_minute", "output_tokens_per_minute", "tokens_per_minute"):
            window = windows.get(name)
            if window and window["limit"] is not None:
                line += f"; {name} {window['current']}/{window['limit']}"
        day = windows.get("requests_per_calendar_day")
        if day:
            line += f"; {day['current']}/{day['limit']} today (resets at midnight {day.get('resets_at_midnight')})"
        print(line)
    for model, said in stats.get("provider", {}).items():
        print(f"  provider truth for {model}: {said}")


if __name__ == "__main__":
    main()
