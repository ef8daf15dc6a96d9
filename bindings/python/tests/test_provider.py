"""Provider truth: rate-limit headers and 429s fed back, input/output tokens, pick."""

from __future__ import annotations

import datetime
import email.message
import email.utils
import os
import time
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import ratetrack

GPT = "openai/gpt-4o-mini"

# OpenAI's documented sample (platform docs, "Rate limits" > "Rate limits in headers"),
# with the remaining requests brought down to 2.
OPENAI_SAMPLE = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "2",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "30s",
    "x-ratelimit-reset-tokens": "6m0s",
}

OPENAI_LIMITS = {"builtin_tiers": False, "limits": {GPT: {"rpm": 500, "tpm": 200000}}}


@pytest.fixture
def openai(library_path: str) -> Iterator[ratetrack.Tracker]:
    with ratetrack.open(OPENAI_LIMITS) as t:
        yield t


def _admitted(t: ratetrack.Tracker, model: str, tries: int, tokens: int = 0) -> int:
    return sum(1 for _ in range(tries) if t.try_acquire(model, tokens))


# -- headers ------------------------------------------------------------------
def test_openai_sample_headers_cap_what_is_admitted(openai: ratetrack.Tracker) -> None:
    openai.observe_headers(GPT, OPENAI_SAMPLE)
    assert openai.try_acquire(GPT, 10)
    assert openai.try_acquire(GPT, 10)
    third = openai.try_acquire(GPT, 10)
    assert not third
    assert 25.0 <= third.retry_after <= 31.0  # until the reported reset, 30 s
    stats = openai.stats()
    rpm = stats["models"][GPT]["requests_per_minute"]
    assert rpm["limit"] == 500 and rpm["current"] == 2
    assert rpm.get("observed_limit") == 60  # shown, not adopted
    assert stats["models"][GPT]["tokens_per_minute"].get("observed_limit") == 150000
    provider = stats["provider"][GPT]
    assert provider["requests"]["limit"] == 60 and provider["requests"]["remaining"] == 0
    reset = provider["requests"]["reset_in_ms"]
    assert reset is not None and 25_000 <= reset <= 30_000
    assert provider["tokens"]["remaining"] is not None
    assert "blocked_for_ms" not in provider


def test_no_provider_key_before_anything_was_observed(openai: ratetrack.Tracker) -> None:
    openai.record(GPT, 5)
    stats = openai.stats()
    assert "provider" not in stats
    assert "observed_limit" not in stats["models"][GPT]["requests_per_minute"]


def test_malformed_headers_are_ignored(openai: ratetrack.Tracker) -> None:
    openai.observe_headers(
        GPT,
        [
            ("x-ratelimit-remaining-requests", "-3"),
            ("x-ratelimit-reset-requests", "soon"),
            ("x-ratelimit-limit-requests", "99999999999999999999"),
            ("x-ratelimit-remaining-tokens", "lots"),
            ("x-ratelimit-bogus-requests", "1"),
            ("", "0"),
        ],
    )
    openai.observe_headers(GPT, {})  # nothing at all: fine
    assert _admitted(openai, GPT, 10) == 10
    stats = openai.stats()
    assert "observed_limit" not in stats["models"][GPT]["requests_per_minute"]
    assert "requests" not in stats.get("provider", {}).get(GPT, {})


def test_a_nul_in_a_header_is_refused(openai: ratetrack.Tracker) -> None:
    # C would read "0\0 left" as "0": the binding refuses the call (nothing observed).
    for pair in (("x-ratelimit-remaining-requests", "0\x00 left"),
                 ("x-ratelimit-remaining-requests\x00junk", "0"),
                 (b"x-ratelimit-remaining-requests", b"0\x00")):
        with pytest.raises(ratetrack.InvalidArgument, match="NUL"):
            openai.observe_headers(GPT, [pair, ("x-ratelimit-reset-requests", "30s")])
    assert _admitted(openai, GPT, 5) == 5
    assert openai.stats().get("provider", {}).get(GPT, {}).get("requests", {}).get("remaining") is None


def test_a_header_that_is_not_utf8_is_skipped(openai: ratetrack.Tracker) -> None:
    # Malformed, like any header the library cannot read: skipped, the others kept
    # (an HTTP stack may deliver obs-text bytes in an unrelated header).
    openai.observe_headers(
        GPT,
        [
            ("x-ratelimit-remaining-requests", "0\udcff"),  # aiohttp's surrogate-escaped byte
            (b"x-ratelimit-remaining-requests", b"0\xff"),
            ("x-ratelimit-limit-requests", "60"),
        ],
    )
    assert _admitted(openai, GPT, 5) == 5
    provider = openai.stats()["provider"][GPT]["requests"]
    assert provider["remaining"] is None and provider["limit"] == 60


class FakeHttpxHeaders:
    """Like httpx.Headers: items() merges a repeated header, multi_items() does not."""

    def __init__(self, pairs: List[Tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> List[Tuple[str, str]]:
        merged: Dict[str, str] = {}
        for k, v in self._pairs:
            merged[k] = f"{merged[k]}, {v}" if k in merged else v
        return list(merged.items())

    def multi_items(self) -> List[Tuple[str, str]]:
        return list(self._pairs)


def _containers() -> List[Tuple[str, Any]]:
    remaining_one = [("X-RateLimit-Remaining-Requests", "1"), ("x-ratelimit-reset-requests", "20s")]
    message = email.message.Message()  # what http.client / urllib give as response.headers
    for k, v in remaining_one:
        message[k] = v
    return [
        ("dict", dict(remaining_one)),
        ("pairs", remaining_one),
        ("generator", (pair for pair in remaining_one)),
        ("bytes pairs", [(k.encode(), v.encode()) for k, v in remaining_one]),
        ("list values", {k: [v] for k, v in remaining_one}),
        ("int value", {"x-ratelimit-remaining-requests": 1, "x-ratelimit-reset-requests": "20s"}),
        ("http.client message", message),
        ("httpx-like multi_items", FakeHttpxHeaders(remaining_one)),
    ]


@pytest.mark.parametrize("kind,headers", _containers(), ids=[k for k, _ in _containers()])
def test_header_containers(openai: ratetrack.Tracker, kind: str, headers: Any) -> None:
    openai.observe_headers(GPT, headers)
    assert _admitted(openai, GPT, 3) == 1, kind
    assert openai.stats()["provider"][GPT]["requests"]["remaining"] == 0


def test_a_repeated_header_passes_each_value(openai: ratetrack.Tracker) -> None:
    # httpx would merge these into "1, 1" with items(), which is unreadable;
    # multi_items() passes each value, and both are read.
    headers = FakeHttpxHeaders(
        [("x-ratelimit-remaining-requests", "1"), ("x-ratelimit-remaining-requests", "1"),
         ("x-ratelimit-reset-requests", "20s")]
    )
    openai.observe_headers(GPT, headers)
    assert _admitted(openai, GPT, 3) == 1


def test_bad_header_arguments(openai: ratetrack.Tracker) -> None:
    with pytest.raises(TypeError):
        openai.observe_headers(GPT, "x-ratelimit-remaining-requests: 1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        openai.observe_headers(GPT, [("x-ratelimit-remaining-requests",)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        openai.observe_headers(GPT, {"x-ratelimit-remaining-requests": 1.5})
    with pytest.raises(ratetrack.InvalidArgument):
        openai.observe_headers("", OPENAI_SAMPLE)


def test_anthropic_headers_per_side(library_path: str) -> None:
    model = "anthropic/claude-sonnet-4-20250514"
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=40))
    reset = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {"builtin_tiers": False, "limits": {model: {"rpm": 50, "itpm": 30000, "otpm": 8000}}}
    with ratetrack.open(config) as t:
        t.observe_headers(
            model,
            {
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "49",
                "anthropic-ratelimit-requests-reset": reset,
                "anthropic-ratelimit-input-tokens-limit": "30000",
                "anthropic-ratelimit-input-tokens-remaining": "1000",
                "anthropic-ratelimit-input-tokens-reset": reset,
                "anthropic-ratelimit-output-tokens-limit": "8000",
                "anthropic-ratelimit-output-tokens-remaining": "7990",
                "anthropic-ratelimit-output-tokens-reset": reset,
            },
        )
        provider = t.stats()["provider"][model]
        assert provider["input_tokens"]["remaining"] == 1000
        assert provider["output_tokens"]["limit"] == 8000
        assert t.try_acquire_io(model, 900, 100)
        limited = t.try_acquire_io(model, 200, 100)  # 100 input tokens left as reported
        assert not limited and 30.0 <= limited.retry_after <= 41.0


# -- 429s ---------------------------------------------------------------------
def test_report_limited_with_delay_seconds(openai: ratetrack.Tracker) -> None:
    openai.report_limited(GPT, "2")
    result = openai.try_acquire(GPT)
    assert not result and 1.0 <= result.retry_after <= 2.0
    assert not openai.can_make(GPT)
    blocked = openai.stats()["provider"][GPT]["blocked_for_ms"]
    assert 1000 <= blocked <= 2000
    other = openai.try_acquire("openai/other")  # only that model is refused
    assert other


def test_report_limited_with_an_http_date(openai: ratetrack.Tracker) -> None:
    when = email.utils.formatdate(time.time() + 4, usegmt=True)  # "Wed, 21 Oct 2026 07:28:00 GMT"
    openai.report_limited(GPT, when)
    result = openai.try_acquire(GPT)
    assert not result and 2.0 <= result.retry_after <= 4.0


@pytest.mark.parametrize(
    "retry_after,low,high",
    [
        (None, 0.5, 1.0),  # no header: 1 second
        ("", 0.5, 1.0),
        ("whenever", 0.5, 1.0),
        (3, 2.0, 3.0),
        (2.5, 1.5, 2.5),
        (b"3", 2.0, 3.0),
        (datetime.timedelta(seconds=3, milliseconds=500), 2.5, 3.5),
    ],
)
def test_report_limited_retry_after_forms(
    openai: ratetrack.Tracker, retry_after: ratetrack.RetryAfter, low: float, high: float
) -> None:
    openai.report_limited(GPT, retry_after)
    result = openai.try_acquire(GPT)
    assert not result and low <= result.retry_after <= high


def test_report_limited_ends(openai: ratetrack.Tracker) -> None:
    openai.report_limited(GPT, 0.3)
    assert not openai.try_acquire(GPT)
    time.sleep(0.5)
    assert openai.try_acquire(GPT)
    grant = openai.acquire(GPT, 10, timeout=5)  # blocking acquire waits a 429 out too
    openai.report_limited(GPT, "0.2")
    start = time.monotonic()
    assert openai.acquire(GPT, 10, timeout=5)
    assert time.monotonic() - start >= 0.1
    openai.settle(grant, 5)


def test_report_limited_bad_arguments(openai: ratetrack.Tracker) -> None:
    for bad in (-1, float("nan"), float("inf"), datetime.timedelta(seconds=-1)):
        with pytest.raises(ratetrack.InvalidArgument):
            openai.report_limited(GPT, bad)
    with pytest.raises(TypeError):
        openai.report_limited(GPT, True)
    with pytest.raises(TypeError):
        openai.report_limited(GPT, [1])  # type: ignore[arg-type]
    with pytest.raises(ratetrack.InvalidArgument):
        openai.report_limited(GPT, "2\x00")
    with pytest.raises(ratetrack.InvalidArgument):
        openai.report_limited("")
    assert openai.try_acquire(GPT)  # none of them blocked the model


# -- input and output tokens --------------------------------------------------
IO = {"builtin_tiers": False, "limits": {"anthropic/m": {"itpm": 1000, "otpm": 100}}}


def test_input_output_acquire_and_settle(library_path: str) -> None:
    with ratetrack.open(IO) as t:
        first = t.try_acquire_io("anthropic/m", 900, 100)
        assert first and first.grant is not None
        grant = first.grant
        assert (grant.model, grant.tokens, grant.input_tokens, grant.output_tokens) == (
            "anthropic/m", 900, 900, 100)
        assert not t.try_acquire_io("anthropic/m", 1, 1)
        t.settle_io(grant, 900, 10)
        assert t.try_acquire_io("anthropic/m", 0, 90)
        assert not t.try_acquire_io("anthropic/m", 0, 1)
        windows = t.stats()["models"]["anthropic/m"]
        assert windows["input_tokens_per_minute"]["current"] == 900
        assert windows["input_tokens_per_minute"]["limit"] == 1000
        assert windows["output_tokens_per_minute"]["current"] == 100
        assert windows["output_tokens_per_minute"]["remaining"] == 0


def test_input_output_errors(library_path: str) -> None:
    with ratetrack.open(IO) as t:
        with pytest.raises(ratetrack.TooLarge):
            t.try_acquire_io("anthropic/m", 0, 101)
        with pytest.raises(ratetrack.InvalidArgument):
            t.try_acquire_io("anthropic/m", -1, 0)
        result = t.try_acquire_io("anthropic/m", 500, 50)
        assert result.grant is not None
        with pytest.raises(ratetrack.InvalidArgument, match="settle_io"):
            t.settle(result.grant, 400)  # a grant with output tokens needs settle_io
        import dataclasses

        with pytest.raises(ratetrack.InvalidArgument):
            t.settle_io(dataclasses.replace(result.grant, output_tokens=49), 400, 10)
        t.settle_io(result.grant, 400, 10)
        assert t.stats()["models"]["anthropic/m"]["output_tokens_per_minute"]["current"] == 10


def test_plain_grants_keep_working(library_path: str) -> None:
    with ratetrack.open(IO) as t:
        plain = t.try_acquire_grant("anthropic/m", 800)  # plain tokens are input tokens
        assert plain.grant is not None and plain.grant.output_tokens == 0
        assert not t.try_acquire("anthropic/m", 201)
        t.settle(plain.grant, 300)
        assert t.try_acquire("anthropic/m", 700)
        other = t.try_acquire_grant("anthropic/m", 0)
        assert other.grant is not None
        t.settle_io(other.grant, 0, 5)  # settle_io takes any grant
        assert t.stats()["models"]["anthropic/m"]["output_tokens_per_minute"]["current"] == 5


def test_blocking_acquire_with_output_tokens(library_path: str) -> None:
    with ratetrack.open(IO) as t:
        grant = t.acquire("anthropic/m", 100, timeout=0, output_tokens=60)
        assert (grant.tokens, grant.output_tokens) == (100, 60)
        with pytest.raises(ratetrack.AcquireTimeout):
            t.acquire("anthropic/m", 100, timeout=0, output_tokens=60)
        t.settle_io(grant, 100, 0)
        assert t.acquire("anthropic/m", 100, timeout=0, output_tokens=60)


async def _acquire_async(t: ratetrack.Tracker) -> ratetrack.Grant:
    return await t.acquire_async("anthropic/m", 10, timeout=0, output_tokens=20)


def test_async_acquire_with_output_tokens(library_path: str) -> None:
    import asyncio

    with ratetrack.open(IO) as t:
        grant = asyncio.run(_acquire_async(t))
        assert (grant.tokens, grant.output_tokens) == (10, 20)


# -- pick ---------------------------------------------------------------------
def _two_models(a_seconds: int = 60, b_seconds: int = 60) -> Dict[str, Any]:
    def one(seconds: int) -> Dict[str, Any]:
        return {"windows": [{"unit": "requests", "limit": 1, "seconds": seconds},
                            {"unit": "tokens", "limit": 1000, "seconds": 60}]}

    return {"builtin_tiers": False, "limits": {"a/x": one(a_seconds), "b/y": one(b_seconds)}}


def test_pick_skips_a_spent_model(library_path: str) -> None:
    with ratetrack.open(_two_models()) as t:
        assert t.try_acquire("a/x")
        picked = t.pick(["a/x", "b/y"], 100, 50)
        assert picked and picked.model == "b/y" and picked.index == 1
        assert picked.retry_after == 0.0 and picked.grant is not None
        assert (picked.grant.model, picked.grant.tokens, picked.grant.output_tokens) == ("b/y", 100, 50)
        t.settle_io(picked.grant, 80, 20)
        assert t.stats()["models"]["b/y"]["tokens_per_minute"]["current"] == 100


def test_pick_prefers_the_first(library_path: str) -> None:
    with ratetrack.open(_two_models()) as t:
        picked = t.pick(("a/x", "b/y"), 10)
        assert picked and (picked.model, picked.index) == ("a/x", 0)
        assert picked.grant is not None
        t.settle(picked.grant, 5)  # no output reserved: plain settle works


def test_pick_all_spent_names_the_first_to_free(library_path: str) -> None:
    # b/y's window is 2 s, a/x's a minute: b/y frees first though listed second.
    with ratetrack.open(_two_models(a_seconds=60, b_seconds=2)) as t:
        assert t.try_acquire("a/x") and t.try_acquire("b/y")
        limited = t.pick(["a/x", "b/y"], 10)
        assert not limited and limited.grant is None
        assert (limited.model, limited.index) == ("b/y", 1)
        assert 0 < limited.retry_after <= 2.5
        time.sleep(limited.retry_after + 0.05)
        again = t.pick(["a/x", "b/y"], 10)
        assert again and again.model == "b/y"
    with ratetrack.open(_two_models(a_seconds=2, b_seconds=60)) as t:
        assert t.try_acquire("a/x") and t.try_acquire("b/y")
        limited = t.pick(["b/y", "a/x"])
        assert not limited and (limited.model, limited.index) == ("a/x", 1)


def test_pick_errors(library_path: str) -> None:
    with ratetrack.open(_two_models()) as t:
        with pytest.raises(ratetrack.TooLarge):
            t.pick(["a/x", "b/y"], 1001)
        with pytest.raises(ratetrack.InvalidArgument):
            t.pick([])
        with pytest.raises(ratetrack.InvalidArgument):
            t.pick(["a/x", ""])
        with pytest.raises(TypeError):
            t.pick("a/x")
        assert t.pick(["a/x"])  # none of the failures took anything


# -- shared memory --------------------------------------------------------------
def test_a_429_is_shared_through_shm(library_path: str) -> None:
    name = f"pytest-provider-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    config = dict(OPENAI_LIMITS, backend=f"shm:{name}")
    try:
        with ratetrack.open(config) as first, ratetrack.open(config) as second:
            assert first.stats()["backend"] == f"shm:{name}"
            first.report_limited(GPT, "5")
            result = second.try_acquire(GPT)
            assert not result and 3.5 <= result.retry_after <= 5.0
            assert second.stats()["provider"][GPT]["blocked_for_ms"] > 3000
            # Headers observed by one are believed by the other too.
            second.observe_headers("openai/other", {"x-ratelimit-remaining-requests": "1",
                                                    "x-ratelimit-reset-requests": "30s"})
            assert first.try_acquire("openai/other")
            assert not second.try_acquire("openai/other")
    finally:
        try:
            ratetrack.shm_remove(name)
        except ratetrack.InvalidArgument:  # never created
            pass


def test_a_lower_learned_limit_is_enforced_a_higher_one_only_shown(library_path: str) -> None:
    # Issue #26: the provider's x-ratelimit-limit-requests, lower than the
    # configured rpm, is enforced on the per-minute window (no "remaining"
    # header needed), and "remaining" shows the room really in force; a
    # higher one is only shown as observed_limit.
    cfg = {"builtin_tiers": False, "limits": {"acme/m": {"rpm": 100}}}
    with ratetrack.open(cfg) as low, ratetrack.open(cfg) as high:
        low.observe_headers("acme/m", {"x-ratelimit-limit-requests": "5"})
        assert [bool(low.try_acquire("acme/m")) for _ in range(7)] == [True] * 5 + [False] * 2
        window = low.stats()["models"]["acme/m"]["requests_per_minute"]
        assert (window["current"], window["remaining"], window.get("observed_limit")) == (5, 0, 5)
        high.observe_headers("acme/m", {"x-ratelimit-limit-requests": "500"})
        assert sum(bool(high.try_acquire("acme/m")) for _ in range(110)) == 100
        assert high.stats()["models"]["acme/m"]["requests_per_minute"].get("observed_limit") == 500


def test_record_tokens_books_tokens_not_requests(library_path: str) -> None:
    cfg = {"builtin_tiers": False, "limits": {"acme/m": {"rpm": 2, "tpm": 100, "itpm": 60, "otpm": 60}}}
    with ratetrack.open(cfg) as t:
        assert t.try_acquire("acme/m")
        t.record_tokens("acme/m", 30, 20)
        t.record_tokens("acme/m", 40)  # past the input limit: booked anyway
        models = t.stats()["models"]["acme/m"]
        assert models["requests_per_minute"]["current"] == 1
        assert models["tokens_per_minute"]["current"] == 90
        assert models["input_tokens_per_minute"]["current"] == 70
        assert models["output_tokens_per_minute"]["current"] == 20
        assert not t.try_acquire("acme/m")  # the input window is over its limit
