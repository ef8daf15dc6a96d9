"""wrap_openai / wrap_anthropic (ratetrack.integrations) with the real SDKs
(pinned in requirements-test.txt) against the local fake server (fake_llm.py).

Windows are a minute long and every test stays within its limit, so nothing
waits for a window: a call past a limit is made with timeout=0 (fail fast) and
checked to raise AcquireTimeout without reaching the server. The SDKs need
Python 3.11 (httpx2): older Pythons skip this module.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator

import pytest

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

import ratetrack  # noqa: E402
from ratetrack.integrations import wrap_anthropic, wrap_openai  # noqa: E402
from ratetrack.integrations._http import estimate_input_tokens  # noqa: E402

from doubles import Reporting  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402

GPT, CLAUDE = "gpt-4o-mini", "claude-sonnet-4-5"
O_GPT, A_CLAUDE = "openai/" + GPT, "anthropic/" + CLAUDE
MESSAGES = [{"role": "user", "content": "Say hello to the rate limiter, please."}]


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM(latency=0.02).start()
    yield server
    server.stop()


def limits(requests: int, tokens: int = 10**6, **extra: Any) -> Dict[str, Any]:
    return {
        "builtin_tiers": False,
        "limits": {O_GPT: {"rpm": requests, "tpm": tokens}, A_CLAUDE: {"rpm": requests, "tpm": tokens}},
        **extra,
    }


def oai(fake: FakeLLM, tracker: ratetrack.Tracker, max_retries: int = 0, **kw: Any) -> Any:
    return wrap_openai(openai.OpenAI(base_url=fake.url, api_key="sk-test", max_retries=max_retries), tracker, **kw)


def aai(fake: FakeLLM, tracker: ratetrack.Tracker, max_retries: int = 0, **kw: Any) -> Any:
    base = fake.url[: -len("/v1")]
    return wrap_anthropic(anthropic.Anthropic(base_url=base, api_key="sk-test", max_retries=max_retries),
                          tracker, **kw)


def chat(client: Any, **kw: Any) -> Any:
    return client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=100, **kw)


def chat_once(fake: FakeLLM, tracker: ratetrack.Tracker, is_async: bool) -> Any:
    """One chat completion through a wrapped client, sync or async, no retries."""
    if not is_async:
        return chat(oai(fake, tracker))
    client = wrap_openai(openai.AsyncOpenAI(base_url=fake.url, api_key="sk-test", max_retries=0), tracker)
    return asyncio.run(chat(client))


def message(client: Any, **kw: Any) -> Any:
    return client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, **kw)


def window(tracker: ratetrack.Tracker, model: str, name: str) -> Dict[str, Any]:
    return dict(tracker.stats()["models"][model][name])


# -- equal limits on both sides -----------------------------------------------------
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_equal_limits_sequential(fake: FakeLLM, sdk: str, library_path: str) -> None:
    # N calls one after the other at the limit: 0 server 429s; the (N+1)th is
    # refused by the tracker without reaching the server; token counts agree.
    n = 6
    fake.limit(GPT, n)
    fake.limit(CLAUDE, n)
    with ratetrack.open(limits(n)) as t:
        client, call, model = (oai(fake, t, timeout=0), chat, O_GPT) if sdk == "openai" else \
            (aai(fake, t, timeout=0), message, A_CLAUDE)
        for _ in range(n):
            call(client)
        with pytest.raises(ratetrack.AcquireTimeout):
            call(client)
        assert (fake.admitted, fake.limited, fake.received) == (n, 0, n)
        assert window(t, model, "requests_per_minute")["current"] == n
        assert window(t, model, "tokens_per_minute")["current"] == fake.tokens


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_equal_limits_concurrent(fake: FakeLLM, sdk: str, library_path: str) -> None:
    # 3 N calls from 6 threads, waiting at most 0 s: exactly N reach the
    # server, all admitted; the others raise AcquireTimeout.
    n = 8
    fake.limit(GPT, n)
    fake.limit(CLAUDE, n)
    with ratetrack.open(limits(n)) as t:
        client, call, model = (oai(fake, t, timeout=0), chat, O_GPT) if sdk == "openai" else \
            (aai(fake, t, timeout=0), message, A_CLAUDE)

        def one(_: int) -> str:
            try:
                call(client)
                return "ok"
            except ratetrack.AcquireTimeout:
                return "refused"

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(3 * n)))
        assert results.count("ok") == n and results.count("refused") == 2 * n
        assert (fake.admitted, fake.limited) == (n, 0)
        assert window(t, model, "tokens_per_minute")["current"] == fake.tokens


def test_equal_limits_async_concurrent(fake: FakeLLM, library_path: str) -> None:
    # AsyncOpenAI and AsyncAnthropic, N concurrent calls each with waiting
    # allowed: 0 server 429s and the same token counts.
    n = 8
    fake.limit(GPT, n)
    fake.limit(CLAUDE, n)
    with ratetrack.open(limits(n)) as t:
        oc = wrap_openai(openai.AsyncOpenAI(base_url=fake.url, api_key="k", max_retries=0), t, timeout=30)
        ac = wrap_anthropic(anthropic.AsyncAnthropic(base_url=fake.url[:-3], api_key="k", max_retries=0),
                            t, timeout=30)

        async def main() -> None:
            calls = [oc.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=50) for _ in range(n)]
            calls += [ac.messages.create(model=CLAUDE, max_tokens=50, messages=MESSAGES) for _ in range(n)]
            await asyncio.gather(*calls)
            with pytest.raises(ratetrack.AcquireTimeout):
                await wrap_openai(openai.AsyncOpenAI(base_url=fake.url, api_key="k", max_retries=0), t,
                                  timeout=0).chat.completions.create(model=GPT, messages=MESSAGES)

        asyncio.run(main())
        assert (fake.admitted, fake.limited) == (2 * n, 0)
        total = window(t, O_GPT, "tokens_per_minute")["current"] + window(t, A_CLAUDE, "tokens_per_minute")["current"]
        assert total == fake.tokens
        assert window(t, O_GPT, "requests_per_minute")["current"] == n


# -- the tracker configured higher than the server ------------------------------------
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_learned_limit_is_enforced(fake: FakeLLM, sdk: str, library_path: str) -> None:
    # The tracker believes in 100 requests a minute, the account has 5. After
    # the first answers, the provider's headers stop the tracker: of 30 calls
    # from 3 threads at most the 3 in flight get a server 429.
    server_limit, concurrency = 5, 3
    fake.limit(GPT, server_limit)
    fake.limit(CLAUDE, server_limit)
    with ratetrack.open(limits(100)) as t:
        client, call, model = (oai(fake, t, timeout=0), chat, O_GPT) if sdk == "openai" else \
            (aai(fake, t, timeout=0), message, A_CLAUDE)

        def one(_: int) -> str:
            try:
                call(client)
                return "ok"
            except ratetrack.AcquireTimeout:
                return "refused"
            except (openai.RateLimitError, anthropic.RateLimitError):
                return "429"

        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(30)))
        assert results.count("ok") == server_limit == fake.admitted
        assert fake.limited <= concurrency
        rpm = window(t, model, "requests_per_minute")
        assert rpm.get("observed_limit") == server_limit
        # The learned limit is in force (core change of issue #26): the room
        # shown is what the provider allows, not the configured 100.
        assert rpm["remaining"] == 0


# -- a 429 with retry-after blocks every caller of the model ----------------------------
@pytest.mark.parametrize("backend", ["memory", "shm"])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_retry_after_blocks_every_caller(fake: FakeLLM, sdk: str, backend: str, library_path: str) -> None:
    # The SDK's own retries are on (max_retries=2): its first attempt gets a
    # 429 with retry-after: 2, which the transport reports. While the SDK
    # waits to retry, every caller of the model is refused for ~2 s (seen
    # with try_acquire / wait_time, on a second tracker through shm: too);
    # the retry then succeeds, and only it books tokens.
    shm = f"rt-sdk-{uuid.uuid4().hex[:10]}"
    extra = {"backend": f"shm:{shm}"} if backend == "shm" else {}
    fake.limit(GPT, 50)
    fake.limit(CLAUDE, 50)
    fake.force_429(GPT if sdk == "openai" else CLAUDE, "2")
    try:
        with ratetrack.open(limits(50, **extra)) as t:
            other = ratetrack.open(limits(50, **extra)) if backend == "shm" else t
            reporting = Reporting.over(t)
            client, call, model = (oai(fake, reporting, max_retries=2, timeout=30), chat, O_GPT) \
                if sdk == "openai" else (aai(fake, reporting, max_retries=2, timeout=30), message, A_CLAUDE)
            result: Dict[str, Any] = {}
            thread = threading.Thread(target=lambda: result.setdefault("r", call(client)))
            thread.start()
            assert Reporting.reported.wait(60)  # the transport reported the 429
            refused = other.try_acquire(model)
            assert not refused and 0.5 < refused.retry_after <= 2.1  # ~2 s (a busy machine may lag)
            assert 0.5 < other.wait_time(model) <= 2.1
            blocked = other.stats()["provider"][model]["blocked_for_ms"]
            assert 500 < blocked <= 2100
            thread.join(60)
            assert "r" in result  # the SDK's retry went through after the block
            assert (fake.limited, fake.admitted) == (1, 1)
            # two attempts counted as requests; tokens booked once (the 429's grant settled to 0)
            assert window(t, model, "tokens_per_minute")["current"] == fake.tokens
            if other is not t:
                other.close()
    finally:
        if backend == "shm":
            ratetrack.shm_remove(shm)


class Failing(ratetrack.Tracker):
    """A second handle on a tracker whose observe_headers or report_limited
    (``failing``) raises BackendError, as a Redis backend with
    on_error=closed does in an outage; the other calls work. The async
    forms call these."""

    __slots__ = ()
    failing = ""

    @classmethod
    def over(cls, t: ratetrack.Tracker, failing: str) -> "Failing":
        cls.failing = failing
        return cls(t._lib, t._h(), True)  # is_global=True: never closes t's handle

    def _outage(self, name: str) -> None:
        if Failing.failing == name:
            raise ratetrack.BackendError("the backend is down (a test)", ratetrack.errors.RT_E_BACKEND)

    def observe_headers(self, model: str, headers: Any) -> None:
        self._outage("observe_headers")
        super().observe_headers(model, headers)

    def report_limited(self, model: str, retry_after: Any = None) -> None:
        self._outage("report_limited")
        super().report_limited(model, retry_after)


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("failing", ["observe_headers", "report_limited"])
def test_a_failed_feedback_on_an_error_answer_still_settles(fake: FakeLLM, failing: str, is_async: bool,
                                                            library_path: str) -> None:
    # A 429 whose headers or report cannot be fed back (the backend is down):
    # the error comes out of the SDK call, and the attempt's grant was
    # settled to 0 tokens first (an error answer uses none), where the
    # estimate and max_tokens stayed booked.
    fake.force_429(GPT, "2")
    with ratetrack.open(limits(10)) as t:
        tracker = Failing.over(t, failing)
        with pytest.raises(ratetrack.BackendError):
            chat_once(fake, tracker, is_async)
        assert fake.limited == 1
        assert window(t, O_GPT, "requests_per_minute")["current"] == 1
        assert window(t, O_GPT, "tokens_per_minute")["current"] == 0


@pytest.mark.parametrize("is_async", [False, True])
def test_a_failed_feedback_on_a_success_keeps_the_estimate(fake: FakeLLM, is_async: bool,
                                                           library_path: str) -> None:
    # A 200 whose headers cannot be fed back: the error comes out of the SDK
    # call and the answer is not read, so the estimate stays booked (the
    # provider served it; its usage is unknown), as for a body closed early.
    est = estimate_input_tokens({"messages": MESSAGES})
    with ratetrack.open(limits(10)) as t:
        tracker = Failing.over(t, "observe_headers")
        with pytest.raises(ratetrack.BackendError):
            chat_once(fake, tracker, is_async)
        assert fake.admitted == 1
        assert window(t, O_GPT, "tokens_per_minute")["current"] == est + 100


# -- streaming ---------------------------------------------------------------------
def test_openai_stream_settles_to_real_usage(fake: FakeLLM, library_path: str) -> None:
    # stream=True without stream_options: the transport asks for the usage
    # chunk, and settles to it (not to the estimate + max_tokens reserved).
    with ratetrack.open(limits(10)) as t:
        client = oai(fake, t)
        chunks = list(client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=100, stream=True))
        assert fake.bodies[-1]["stream_options"] == {"include_usage": True}
        assert chunks[-1].usage is not None and chunks[-1].choices == []
        assert window(t, O_GPT, "tokens_per_minute")["current"] == fake.tokens == chunks[-1].usage.total_tokens
        # asked for by the caller already: sent unchanged
        list(client.chat.completions.create(model=GPT, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}))
        assert window(t, O_GPT, "tokens_per_minute")["current"] == fake.tokens


def test_anthropic_stream_settles_to_real_usage(fake: FakeLLM, library_path: str) -> None:
    config = limits(10)
    config["limits"][A_CLAUDE].update(itpm=10**6, otpm=10**6)  # input and output apart, as Anthropic counts them
    with ratetrack.open(config) as t:
        client = aai(fake, t)
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream:
            final = stream.get_final_message()
        tokens = final.usage.input_tokens + final.usage.output_tokens
        assert window(t, A_CLAUDE, "tokens_per_minute")["current"] == fake.tokens == tokens
        assert window(t, A_CLAUDE, "input_tokens_per_minute")["current"] == final.usage.input_tokens == fake.input
        assert window(t, A_CLAUDE, "output_tokens_per_minute")["current"] == final.usage.output_tokens


def test_async_streams_settle(fake: FakeLLM, library_path: str) -> None:
    with ratetrack.open(limits(10)) as t:
        oc = wrap_openai(openai.AsyncOpenAI(base_url=fake.url, api_key="k", max_retries=0), t)
        ac = wrap_anthropic(anthropic.AsyncAnthropic(base_url=fake.url[:-3], api_key="k", max_retries=0), t)

        async def main() -> None:
            stream = await oc.chat.completions.create(model=GPT, messages=MESSAGES, stream=True)
            async for _ in stream:
                pass
            async with ac.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as s:
                await s.get_final_message()

        asyncio.run(main())
        total = window(t, O_GPT, "tokens_per_minute")["current"] + window(t, A_CLAUDE, "tokens_per_minute")["current"]
        assert total == fake.tokens


@pytest.mark.parametrize("is_async", [False, True])
def test_openai_responses_api_settles_to_real_usage(fake: FakeLLM, is_async: bool, library_path: str) -> None:
    # client.responses.create (POST /v1/responses), plain and stream=True (the
    # usage in the response.completed event), and responses.stream(): each
    # settles to the usage of its answer; no stream_options is added there.
    prompt = MESSAGES[0]["content"]
    with ratetrack.open(limits(10)) as t:
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        client = wrap_openai(cls(base_url=fake.url, api_key="sk-test", max_retries=0), t)

        def sync_calls() -> Any:
            plain = client.responses.create(model=GPT, input=prompt, max_output_tokens=50)
            events = list(client.responses.create(model=GPT, input=MESSAGES, max_output_tokens=50, stream=True))
            with client.responses.stream(model=GPT, input=prompt) as helper:
                return plain, events, helper.get_final_response()

        async def async_calls() -> Any:
            plain = await client.responses.create(model=GPT, input=prompt, max_output_tokens=50)
            stream = await client.responses.create(model=GPT, input=MESSAGES, max_output_tokens=50, stream=True)
            events = [event async for event in stream]
            async with client.responses.stream(model=GPT, input=prompt) as helper:
                return plain, events, await helper.get_final_response()

        plain, events, final = asyncio.run(async_calls()) if is_async else sync_calls()
        assert "ok" in plain.output_text
        assert events[-1].type == "response.completed"
        completed = events[-1].response.usage
        assert completed.total_tokens == completed.input_tokens + completed.output_tokens
        assert final.usage.output_tokens == 12
        assert fake.received == 3 and all("stream_options" not in b for b in fake.bodies)
        tokens = plain.usage.total_tokens + completed.total_tokens + final.usage.total_tokens
        assert window(t, O_GPT, "tokens_per_minute")["current"] == fake.tokens == tokens
        assert window(t, O_GPT, "requests_per_minute")["current"] == 3


# -- details ---------------------------------------------------------------------------
def test_estimate_and_reservation_before_the_answer(fake: FakeLLM, library_path: str) -> None:
    # While the request is in flight the tracker holds estimate + max_tokens;
    # afterwards, the real usage.
    est = estimate_input_tokens({"messages": MESSAGES})
    assert est == (len(MESSAGES[0]["content"]) + 3) // 4 + 4 + 3
    seen: Dict[str, int] = {}
    with ratetrack.open(limits(10)) as t:
        original = fake.decide

        def decide(*args: Any) -> Any:
            seen["during"] = window(t, O_GPT, "tokens_per_minute")["current"]
            return original(*args)

        fake.decide = decide  # type: ignore[method-assign]
        chat(oai(fake, t))
        assert seen["during"] == est + 100
        assert window(t, O_GPT, "tokens_per_minute")["current"] == fake.tokens


def test_model_name_mapping_and_passthrough(fake: FakeLLM, library_path: str) -> None:
    with ratetrack.open({"builtin_tiers": False, "limits": {"azure/mini": {"rpm": 5}}}) as t:
        client = oai(fake, t, model_name={GPT: "azure/mini"})
        chat(client)
        assert window(t, "azure/mini", "requests_per_minute")["current"] == 1
        client = oai(fake, t, model_name=lambda m: "fn/" + m)
        chat(client)
        assert window(t, "fn/" + GPT, "requests_per_minute")["current"] == 1
        # requests to other endpoints pass through untracked
        with pytest.raises(openai.APIStatusError):  # the fake has no GET /models
            client.models.list()
        assert set(t.stats()["models"]) == {"azure/mini", "fn/" + GPT}


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_environment_proxies_are_kept(fake: FakeLLM, sdk: str, is_async: bool, monkeypatch: pytest.MonkeyPatch,
                                      library_path: str) -> None:
    # The wrapped client sends where the SDK's own client would: through the
    # proxy HTTP_PROXY names (a second fake answers as the proxy: it reads the
    # absolute URL of the request line), directly for a host in NO_PROXY. The
    # wrap's httpx client used to be made with a transport, and httpx then
    # ignores the environment's proxies: a user behind one was sent around it.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    proxy = FakeLLM().start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        with ratetrack.open(limits(5)) as t:
            model = O_GPT if sdk == "openai" else A_CLAUDE

            def call(wrapped: bool = True) -> None:
                if sdk == "openai":
                    cls, wrap, url = openai.AsyncOpenAI if is_async else openai.OpenAI, wrap_openai, fake.url
                else:
                    cls, wrap, url = (anthropic.AsyncAnthropic if is_async else anthropic.Anthropic,
                                      wrap_anthropic, fake.url[: -len("/v1")])
                client = cls(base_url=url, api_key="sk-test", max_retries=0)
                client = wrap(client, t) if wrapped else client
                create = client.chat.completions.create if sdk == "openai" else client.messages.create
                ask = (dict(model=GPT, messages=MESSAGES, max_tokens=100) if sdk == "openai" else
                       dict(model=CLAUDE, messages=MESSAGES, max_tokens=100))
                if is_async:
                    async def run() -> None:
                        await create(**ask)
                        await client.close()
                    asyncio.run(run())
                else:
                    create(**ask)

            call(wrapped=False)  # the SDK's own client
            assert (proxy.received, fake.received) == (1, 0)
            unwrapped = proxy.tokens
            call()
            assert (proxy.received, fake.received) == (2, 0)
            assert window(t, model, "tokens_per_minute")["current"] == proxy.tokens - unwrapped  # booked all the same
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            call()
            assert (proxy.received, fake.received) == (2, 1)
            assert window(t, model, "tokens_per_minute")["current"] == proxy.tokens - unwrapped + fake.tokens
    finally:
        proxy.stop()


def user_client(sdk: str, is_async: bool, url: str, http_client: Any) -> Any:
    if sdk == "openai":
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    else:
        cls, url = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic, url[: -len("/v1")]
    return cls(base_url=url, api_key="sk-test", max_retries=0, http_client=http_client)


def ask_once(client: Any, sdk: str, loop: Any = None) -> None:
    """One call; an async client's on ``loop`` (one loop for all the calls of
    an httpx client: its connections belong to the loop they were made on)."""
    create = client.chat.completions.create if sdk == "openai" else client.messages.create
    ask = dict(model=GPT if sdk == "openai" else CLAUDE, messages=MESSAGES, max_tokens=100)
    if loop is not None:
        loop.run_until_complete(create(**ask))
    else:
        create(**ask)


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_the_users_http_client_is_kept_and_wrapped_in_place(fake: FakeLLM, sdk: str, is_async: bool,
                                                            monkeypatch: pytest.MonkeyPatch, library_path: str) -> None:
    # A client made with http_client=DefaultHttpxClient(proxy=..., headers=...)
    # keeps its httpx client, so its proxy and headers (the wrap used to put a
    # new default client in its place: the request went around the proxy,
    # without the header); wrapped twice (the wrapped client again, and the
    # original), each attempt is still booked once; and it is rate limited.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    proxy = FakeLLM().start()
    try:
        module = openai if sdk == "openai" else anthropic
        factory = module.DefaultAsyncHttpxClient if is_async else module.DefaultHttpxClient
        http = factory(proxy=f"http://127.0.0.1:{proxy.port}", headers={"x-user-header": "kept"})
        wrap = wrap_openai if sdk == "openai" else wrap_anthropic
        model = O_GPT if sdk == "openai" else A_CLAUDE
        loop = asyncio.new_event_loop() if is_async else None
        with ratetrack.open(limits(2)) as t:
            client = user_client(sdk, is_async, fake.url, http)
            wrapped = wrap(wrap(client, t, timeout=0), t, timeout=0)
            wrap(client, t, timeout=0)
            ask_once(wrapped, sdk, loop)
            assert (proxy.received, fake.received) == (1, 0)
            assert proxy.request_headers[0]["x-user-header"] == "kept"
            assert wrapped._client is http and client._client is http  # wrapped in place
            assert window(t, model, "requests_per_minute")["current"] == 1  # booked once
            assert window(t, model, "tokens_per_minute")["current"] == proxy.tokens
            ask_once(client, sdk, loop)  # the same httpx client: rate-limited too
            assert window(t, model, "requests_per_minute")["current"] == 2
            with pytest.raises(ratetrack.AcquireTimeout):  # past the limit: refused, never sent
                ask_once(wrapped, sdk, loop)
            assert proxy.received == 2
            assert window(t, model, "tokens_per_minute")["current"] == proxy.tokens
            if loop is not None:
                loop.run_until_complete(http.aclose())
            else:
                http.close()
    finally:
        if loop is not None:
            loop.close()
        proxy.stop()


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_the_users_own_transport_is_kept(fake: FakeLLM, sdk: str, library_path: str) -> None:
    # A plain httpx client with a transport of the user's (here one counting
    # the requests it sends): the wrap sends through it, and settles to the
    # usage; a request to another endpoint passes through untracked.
    module = openai if sdk == "openai" else anthropic
    httpx = importlib.import_module(type(module.DefaultHttpxClient()).__mro__[1].__module__.split(".")[0])
    sent = []

    class Counting(httpx.HTTPTransport):  # type: ignore[name-defined, misc]
        def handle_request(self, request: Any) -> Any:
            sent.append(request.url.path)
            return super().handle_request(request)

    http = httpx.Client(transport=Counting())
    model = O_GPT if sdk == "openai" else A_CLAUDE
    with ratetrack.open(limits(5)) as t:
        wrapped = (wrap_openai if sdk == "openai" else wrap_anthropic)(user_client(sdk, False, fake.url, http), t)
        ask_once(wrapped, sdk)
        assert len(sent) == fake.received == 1
        assert window(t, model, "tokens_per_minute")["current"] == fake.tokens
        http.get(fake.url + "/models")  # not a model endpoint: untracked (the fake answers 501)
        assert len(sent) == 2
        assert window(t, model, "requests_per_minute")["current"] == 1


def test_bad_arguments_are_refused(library_path: str) -> None:
    with ratetrack.open(limits(1)) as t:
        c = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k")
        with pytest.raises(ratetrack.InvalidArgument):
            wrap_openai(c, t, timeout=-1)
        with pytest.raises(TypeError):
            wrap_openai(c, "not a tracker")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            wrap_openai(object(), t)
        with pytest.raises(TypeError):
            wrap_anthropic(c, t)  # an OpenAI client given to wrap_anthropic
        with pytest.raises(TypeError):
            wrap_openai(c, t, model_name=42)  # type: ignore[arg-type]


def test_too_large_raises_at_once(fake: FakeLLM, library_path: str) -> None:
    with ratetrack.open(limits(10, tokens=50)) as t:
        with pytest.raises(ratetrack.TooLarge):
            chat(oai(fake, t))  # estimate + 100 reserved > 50 tokens a minute
        assert fake.received == 0


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_acquire_timeout_is_not_retried_or_wrapped_by_the_sdk(fake: FakeLLM, sdk: str, library_path: str) -> None:
    # With the SDK's retries on, a refusal of the tracker comes out as
    # ratetrack.AcquireTimeout (also the SDK's base error, so the SDK passes
    # it through instead of wrapping it in APIConnectionError and retrying).
    with ratetrack.open(limits(1)) as t:
        if sdk == "openai":
            client, call, base = oai(fake, t, max_retries=2, timeout=0), chat, openai.OpenAIError
        else:
            client, call, base = aai(fake, t, max_retries=2, timeout=0), message, anthropic.AnthropicError
        call(client)
        with pytest.raises(ratetrack.AcquireTimeout) as info:
            call(client)
        assert isinstance(info.value, base) and isinstance(info.value, TimeoutError)
        assert info.value.code == 1 and info.value.retry_after > 0
        assert "timed out" in str(info.value)
        assert fake.received == 1


@pytest.mark.parametrize("is_async", [False, True])
def test_an_attempt_with_no_answer_keeps_its_estimate(is_async: bool, library_path: str) -> None:
    # The request went out and the client gave up waiting (a read timeout):
    # the provider may well process it, so its estimate stays booked (as in
    # Node.js and Go), where it was settled to 0 tokens. A connection that
    # was never made books no tokens.
    server = FakeLLM(latency=1.0).start()
    try:
        with ratetrack.open(limits(10)) as t:
            est = estimate_input_tokens({"messages": MESSAGES})
            if is_async:
                client = wrap_openai(openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0,
                                                        timeout=0.3), t)
                with pytest.raises(openai.APITimeoutError):
                    asyncio.run(client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=100))
            else:
                with pytest.raises(openai.APITimeoutError):
                    chat(oai(server, t).with_options(timeout=0.3))
            assert len(server.bodies) == 1  # it reached the server
            assert window(t, O_GPT, "tokens_per_minute")["current"] == est + 100
            refused = wrap_openai(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0), t)
            with pytest.raises(openai.APIConnectionError):
                chat(refused)
            assert window(t, O_GPT, "tokens_per_minute")["current"] == est + 100
            assert window(t, O_GPT, "requests_per_minute")["current"] == 2
    finally:
        server.stop()


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_gzip_encoded_answers_settle_to_their_usage(fake: FakeLLM, sdk: str, library_path: str) -> None:
    # The SDKs accept gzip and the providers send it: the transport reads the
    # usage under the encoding (the SDK gets the body as it came).
    fake.gzip = True
    with ratetrack.open(limits(10)) as t:
        client, call, model = (oai(fake, t), chat, O_GPT) if sdk == "openai" else (aai(fake, t), message, A_CLAUDE)
        answer = call(client)
        assert answer.usage is not None
        assert fake.tokens > 0 and window(t, model, "tokens_per_minute")["current"] == fake.tokens


def test_answers_in_any_encoding_the_client_accepts_settle(library_path: str) -> None:
    # httpx asks for every encoding it can decode (br with brotli installed,
    # zstd with zstandard, or on Python 3.14): the transport reads the usage
    # under each of them, where it kept the estimate for all but gzip and
    # deflate. Plain httpx with zstandard (installed here), a mock provider.
    httpx = pytest.importorskip("httpx")
    zstandard = pytest.importorskip("zstandard")
    from ratetrack.integrations import rate_limited_transport

    if "zstd" not in httpx._decoders.SUPPORTED_DECODERS:
        pytest.skip("this httpx cannot decode zstd")
    answer = {"id": "x", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}

    def provider(request: Any) -> Any:
        assert "zstd" in request.headers["accept-encoding"]
        return httpx.Response(200, headers={"content-type": "application/json", "content-encoding": "zstd"},
                              content=zstandard.ZstdCompressor().compress(json.dumps(answer).encode()))

    with ratetrack.open(limits(10)) as t:
        transport = rate_limited_transport("openai", t, inner=httpx.MockTransport(provider), httpx_module=httpx)
        with httpx.Client(transport=transport) as client:
            got = client.post("http://api.test/v1/chat/completions",
                              json={"model": GPT, "messages": MESSAGES, "max_tokens": 100})
            assert got.json() == answer
        assert window(t, O_GPT, "tokens_per_minute")["current"] == 16
