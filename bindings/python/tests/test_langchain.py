"""ratetrack.integrations.langchain with the real langchain-core and
langchain-openai (pinned in requirements-test.txt): ChatOpenAI pointed at the
local fake server (fake_llm.py). langchain-core needs Python 3.11: older
Pythons skip this module.

Windows are a minute long and every test stays within its limit: a call past
a limit is made with a short limiter timeout and checked to raise.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Dict, Iterator, List, Optional
from uuid import UUID

import pytest

pytest.importorskip("langchain_core")
langchain_openai = pytest.importorskip("langchain_openai")
openai = pytest.importorskip("openai")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402

import ratetrack  # noqa: E402
from ratetrack.integrations import openai_http_client  # noqa: E402
from ratetrack.integrations.langchain import (  # noqa: E402
    AsyncRateTrackCallbackHandler,
    RateTrackCallbackHandler,
    RateTrackPicker,
    RateTrackRateLimiter,
)

from doubles import Reporting  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402

GPT, MINI = "gpt-4o", "gpt-4o-mini"
O_GPT, O_MINI = "openai/" + GPT, "openai/" + MINI


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM(latency=0.02).start()
    yield server
    server.stop()


def config(requests: int, tokens: int = 10**6) -> Dict[str, Any]:
    return {"builtin_tiers": False,
            "limits": {O_GPT: {"rpm": requests, "tpm": tokens}, O_MINI: {"rpm": requests, "tpm": tokens}}}


def chat(fake: FakeLLM, model: str = MINI, **kw: Any) -> Any:
    return langchain_openai.ChatOpenAI(model=model, base_url=fake.url, api_key="sk-test", max_retries=0,
                                       max_tokens=64, **kw)


def current(t: ratetrack.Tracker, model: str, window: str) -> int:
    return int(t.stats()["models"][model][window]["current"])


def tracked_chat(fake: FakeLLM, t: ratetrack.Tracker, model: str = MINI, max_retries: int = 0,
                 timeout: Any = 0, **kw: Any) -> Any:
    """ChatOpenAI on the tracker's own httpx clients (sync and async): no
    limiter, no callback."""
    return langchain_openai.ChatOpenAI(
        model=model, base_url=fake.url, api_key="sk-test", max_retries=max_retries, max_tokens=64,
        http_client=openai_http_client(t, timeout=timeout),
        http_async_client=openai_http_client(t, is_async=True, timeout=timeout), **kw)


def call_all(llm: Any, how: str, prompts: List[str]) -> List[Any]:
    """The prompts through a chat model, by ``invoke`` one at a time, ``batch``
    or ``abatch`` (3 at once)."""
    if how == "invoke":
        return [llm.invoke(p) for p in prompts]
    if how == "batch":
        return llm.batch(prompts, config={"max_concurrency": 3})
    return asyncio.run(llm.abatch(prompts, config={"max_concurrency": 3}))


def test_record_tokens_counts_no_request(library_path: str) -> None:
    # The C call behind the callback: tokens added, the request count unchanged.
    with ratetrack.open(config(5)) as t:
        t.acquire(O_MINI, 0, timeout=0)
        t.record_tokens(O_MINI, 30, 12)
        assert current(t, O_MINI, "requests_per_minute") == 1
        assert current(t, O_MINI, "tokens_per_minute") == 42


@pytest.mark.parametrize("how", ["invoke", "batch", "abatch"])
def test_limiter_and_callback_keep_within_the_limit(fake: FakeLLM, how: str, library_path: str) -> None:
    # N calls at a limit of N: 0 server 429s, one request each (not two), the
    # server's token count booked; call N+1 raises at the limiter's timeout
    # (LangChain ignores a False from acquire: it must raise).
    n = 6
    fake.limit(MINI, n)
    with ratetrack.open(config(n)) as t:
        limiter = RateTrackRateLimiter(O_MINI, t, timeout=0.2)
        handler = (AsyncRateTrackCallbackHandler if how == "abatch" else RateTrackCallbackHandler)(tracker=t)
        llm = chat(fake, rate_limiter=limiter, callbacks=[handler])
        prompts = [f"question {i}" for i in range(n)]
        answers = call_all(llm, how, prompts)
        assert len(answers) == n
        assert (fake.admitted, fake.limited) == (n, 0)
        assert current(t, O_MINI, "requests_per_minute") == n
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens
        with pytest.raises(ratetrack.AcquireTimeout):
            call_all(llm, how, ["one too many"])
        assert fake.received == n


@pytest.mark.parametrize("how", ["invoke", "batch", "abatch"])
def test_chat_openai_on_the_tracker_http_clients_keeps_within_the_limit(fake: FakeLLM, how: str,
                                                                         library_path: str) -> None:
    # The one line for OpenAI chat models: ChatOpenAI(http_client=...,
    # http_async_client=...), no limiter and no callback. N calls at a limit
    # of N on both sides: 0 server 429s, N requests, the server's token
    # count; call N+1 is refused by the tracker (timeout 0) without reaching
    # the server.
    n = 6
    fake.limit(MINI, n)
    with ratetrack.open(config(n)) as t:
        llm = tracked_chat(fake, t)
        prompts = [f"question {i}" for i in range(n)]
        answers = call_all(llm, how, prompts)
        assert len(answers) == n and all(a.usage_metadata for a in answers)
        assert (fake.admitted, fake.limited) == (n, 0)
        assert current(t, O_MINI, "requests_per_minute") == n
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens
        with pytest.raises(ratetrack.AcquireTimeout):
            call_all(llm, how, ["one too many"])
        assert fake.received == n


def test_chat_openai_on_the_tracker_http_clients_streams_settle(fake: FakeLLM, library_path: str) -> None:
    # stream and astream, with and without stream_usage: the transport asks
    # for the usage chunk when ChatOpenAI does not, and settles to it.
    with ratetrack.open(config(10)) as t:
        llm = tracked_chat(fake, t)
        assert "".join(str(c.content) for c in llm.stream("hello there"))
        assert fake.bodies[-1]["stream_options"] == {"include_usage": True}
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens

        async def astream(chat: Any) -> None:
            async for _ in chat.astream("hello again"):
                pass

        asyncio.run(astream(llm))
        for _ in tracked_chat(fake, t, stream_usage=True).stream("and again"):
            pass
        asyncio.run(astream(tracked_chat(fake, t, stream_usage=True)))
        assert (fake.admitted, fake.limited) == (4, 0)
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens
        assert current(t, O_MINI, "requests_per_minute") == 4


@pytest.mark.parametrize("is_async", [False, True])
def test_chat_openai_429_with_sdk_retries_is_reported(fake: FakeLLM, is_async: bool, library_path: str) -> None:
    # The openai SDK under ChatOpenAI retries a 429 by itself (max_retries=2):
    # the limiter and the callback never see it, the transport does. Its
    # first attempt gets retry-after: 2, which blocks the model for every
    # caller for ~2 s; the SDK's retry then goes through, and only it books
    # tokens.
    fake.limit(MINI, 50)
    fake.force_429(MINI, "2")
    with ratetrack.open(config(50)) as t:
        reporting = Reporting.over(t)
        llm = tracked_chat(fake, reporting, max_retries=2, timeout=30)
        result: Dict[str, Any] = {}

        def call() -> None:
            result["r"] = asyncio.run(llm.ainvoke("hello")) if is_async else llm.invoke("hello")

        thread = threading.Thread(target=call)
        thread.start()
        assert Reporting.reported.wait(60)
        refused = t.try_acquire(O_MINI)
        assert not refused and 0.5 < refused.retry_after <= 2.1  # ~2 s (a busy machine may lag)
        assert 500 < t.stats()["provider"][O_MINI]["blocked_for_ms"] <= 2100
        thread.join(60)
        assert "r" in result
        assert (fake.limited, fake.admitted) == (1, 1)
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens


def test_limiter_non_blocking_and_bad_arguments(library_path: str) -> None:
    with ratetrack.open(config(1)) as t:
        limiter = RateTrackRateLimiter(O_MINI, t)
        assert limiter.acquire(blocking=False) is True
        assert limiter.acquire(blocking=False) is False
        assert asyncio.run(limiter.aacquire(blocking=False)) is False
        with pytest.raises(ratetrack.InvalidArgument):
            RateTrackRateLimiter(O_MINI, t, timeout=-1)
        with pytest.raises(ratetrack.InvalidArgument):
            RateTrackRateLimiter("acme/m\0x", t)
        with pytest.raises(TypeError):
            RateTrackRateLimiter(O_MINI, "tracker")  # type: ignore[arg-type]


def test_callback_names_the_model_from_the_run(fake: FakeLLM, library_path: str) -> None:
    # Without model=, the handler books to ls_provider/ls_model_name.
    with ratetrack.open(config(5)) as t:
        llm = chat(fake, rate_limiter=RateTrackRateLimiter(O_MINI, t), callbacks=[RateTrackCallbackHandler(tracker=t)])
        llm.invoke("hello")
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens > 0


def test_picker_falls_back_when_the_first_model_is_full(fake: FakeLLM, library_path: str) -> None:
    # gpt-4o has room for 2 requests: the third call goes to gpt-4o-mini.
    cfg = {"builtin_tiers": False, "limits": {O_GPT: {"rpm": 2}, O_MINI: {"rpm": 10}}}
    with ratetrack.open(cfg) as t:
        picker = RateTrackPicker(models=[(O_GPT, chat(fake, GPT)), (O_MINI, chat(fake, MINI))], tracker=t, timeout=0)
        used = [picker.invoke(f"q{i}").response_metadata["ratetrack_model"] for i in range(3)]
        assert used == [O_GPT, O_GPT, O_MINI]
        assert current(t, O_GPT, "tokens_per_minute") + current(t, O_MINI, "tokens_per_minute") == fake.tokens
        # every model full: the timeout raises
        small = RateTrackPicker(models=[(O_GPT, chat(fake, GPT))], tracker=t, timeout=0.1)
        with pytest.raises(ratetrack.AcquireTimeout):
            small.invoke("none left")


def test_picker_falls_back_on_a_429(fake: FakeLLM, library_path: str) -> None:
    # The tracker thinks gpt-4o has room, the provider answers 429 with
    # retry-after 30: the picker reports it (gpt-4o is skipped from then on)
    # and answers with gpt-4o-mini, in sync and async calls.
    fake.force_429(GPT, "30")
    with ratetrack.open(config(10)) as t:
        picker = RateTrackPicker(models=[(O_GPT, chat(fake, GPT)), (O_MINI, chat(fake, MINI))], tracker=t, timeout=5)
        assert picker.invoke("hello").response_metadata["ratetrack_model"] == O_MINI
        assert fake.limited == 1
        assert 25 < t.wait_time(O_GPT) <= 30
        answer = asyncio.run(picker.ainvoke("again"))
        assert answer.response_metadata["ratetrack_model"] == O_MINI
        assert fake.limited == 1  # gpt-4o was not tried again
        assert current(t, O_GPT, "tokens_per_minute") == 0  # the 429's grant settled to 0
        assert current(t, O_MINI, "tokens_per_minute") == fake.tokens


@pytest.mark.parametrize("is_async", [False, True])
def test_picker_reads_retry_after_ms(fake: FakeLLM, is_async: bool, library_path: str) -> None:
    # OpenAI may send retry-after-ms alone: the picker reads it as the
    # transport does (it read retry-after only, and reported no delay).
    fake.force_429(GPT, "30000", ms=True)
    with ratetrack.open(config(10)) as t:
        picker = RateTrackPicker(models=[(O_GPT, chat(fake, GPT)), (O_MINI, chat(fake, MINI))], tracker=t, timeout=5)
        answer = asyncio.run(picker.ainvoke("hello")) if is_async else picker.invoke("hello")
        assert answer.response_metadata["ratetrack_model"] == O_MINI
        assert fake.limited == 1
        assert 25 < t.wait_time(O_GPT) <= 30


class Runs(BaseCallbackHandler):
    """Records every chat-model run started: (run_id, parent_run_id, name, tags)."""

    def __init__(self) -> None:
        self.started: List[tuple] = []

    def on_chat_model_start(self, serialized: Dict[str, Any], messages: Any, *, run_id: UUID,
                            parent_run_id: Optional[UUID] = None, tags: Optional[List[str]] = None,
                            **kwargs: Any) -> None:
        self.started.append((run_id, parent_run_id, (serialized or {}).get("name"), tags or []))


@pytest.mark.parametrize("is_async", [False, True])
def test_picker_runs_the_inner_model_as_a_child_run(fake: FakeLLM, is_async: bool, library_path: str) -> None:
    # The inner model's run is a child of the picker's (run_manager.get_child(),
    # as LangChain's own wrappers do), so tracing shows it: it was lost.
    with ratetrack.open(config(10)) as t:
        picker = RateTrackPicker(models=[(O_MINI, chat(fake, MINI))], tracker=t)
        runs = Runs()
        config_ = {"callbacks": [runs], "tags": ["outer"]}
        if is_async:
            asyncio.run(picker.ainvoke("hello", config=config_))
        else:
            picker.invoke("hello", config=config_)
        assert len(runs.started) == 2, runs.started
        (outer, no_parent, _, _), (inner, parent, name, tags) = runs.started
        assert no_parent is None and parent == outer and inner != outer
        assert name == "ChatOpenAI" and "outer" in tags  # the run's inheritable tags too


def test_a_stream_without_usage_books_an_estimate(fake: FakeLLM, library_path: str) -> None:
    # ChatOpenAI with a base_url streams without asking for the usage (no
    # stream_usage=True): the callback books an estimate of the prompt and of
    # the text generated, not 0 tokens; with the usage, the real count.
    with ratetrack.open(config(10)) as t:
        limiter = RateTrackRateLimiter(O_MINI, t)
        llm = chat(fake, rate_limiter=limiter, callbacks=[RateTrackCallbackHandler(tracker=t)])
        text = "".join(str(chunk.content) for chunk in llm.stream("hello there"))
        booked = current(t, O_MINI, "tokens_per_minute")
        assert text and fake.bodies[-1].get("stream_options") is None
        assert fake.tokens // 2 <= booked <= 2 * fake.tokens, (booked, fake.tokens)

        async def astream() -> None:
            handler = AsyncRateTrackCallbackHandler(tracker=t)
            async for _ in chat(fake, rate_limiter=limiter, callbacks=[handler]).astream("hello there"):
                pass

        asyncio.run(astream())
        assert fake.tokens // 2 <= current(t, O_MINI, "tokens_per_minute") <= 2 * fake.tokens
        before, server_before = current(t, O_MINI, "tokens_per_minute"), fake.tokens
        for _ in chat(fake, rate_limiter=limiter, callbacks=[RateTrackCallbackHandler(tracker=t)],
                      stream_usage=True).stream("hello there"):
            pass
        assert current(t, O_MINI, "tokens_per_minute") - before == fake.tokens - server_before
