"""The rate-limiting httpx transport under the OpenAI and Anthropic SDK clients.

One transport per client wraps the client's real one. For every HTTP attempt
to a model endpoint (OpenAI ``/chat/completions``, ``/completions``,
``/responses``, ``/embeddings``; Anthropic ``/messages``) it:

1. reads the JSON body: the model (named ``provider/model``), the input
   estimate (:func:`estimate_input_tokens`) and the output reservation
   (``max_completion_tokens``, ``max_tokens`` or ``max_output_tokens``);
2. acquires on the tracker, input and output apart (waiting up to
   ``timeout`` seconds; ``AcquireTimeout`` past it, ``TooLarge`` at once);
3. sends the request; on OpenAI streaming chat completions it first adds
   ``stream_options.include_usage`` so that the last chunk carries the usage;
4. feeds the response's headers back (``observe_headers``), on every attempt;
5. on a 429, reports it with its ``retry-after`` (``report_limited``) and
   settles the attempt's grant to 0 tokens; any other error status, or a
   connection that could not be made, also settles it to 0; an attempt
   that was sent and got no answer (a read timeout, a cancelled task) keeps
   its estimate, since the provider may have processed it;
6. on success, reads the usage as the body passes through to the SDK (a JSON
   body, or the SSE events of a stream) and settles the grant to it
   (``settle_io``) when the body ends. A body closed before its usage came
   keeps the estimate booked.

When feeding an answer back fails (``observe_headers`` or ``report_limited``
raises, e.g. a Redis backend with ``on_error=closed`` during an outage), that
error comes out of the SDK call and the answer is closed unread; the grant
follows the rules above first: an error status is still settled to 0 tokens
(a failure of that settle too is suppressed: the first error is the one
raised, and the estimate then stays booked), while a success keeps its
estimate, as a body closed before its usage does (the provider served it).

The SDKs retry by themselves (429, 5xx, connection errors): each retry is a
new attempt through this transport, so it acquires again (waiting, while a
reported 429 blocks the model, until its retry-after has passed) and the
failed attempt's tokens were given back: a logical request books its tokens
once, and one request per attempt that reached the provider.

The SDKs sit on httpx (``httpx2`` for openai 3.x and anthropic 2.x); the
classes here are made for whichever module the SDK uses (:func:`classes`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import zlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .._tracker import Grant, Tracker
from ..errors import RT_E_INVALID, InvalidArgument, RateTrackError

#: How a request's model is named for the tracker: None (``provider/model``),
#: a mapping from the SDK's model id to a tracker name (ids not in it get the
#: default), or a function of the id.
ModelName = Union[None, Mapping[str, str], Callable[[str], str]]

#: A function estimating the input tokens of a request from its JSON body.
Estimator = Callable[[Dict[str, Any]], int]

_ENDPOINTS = {
    "openai": ("/chat/completions", "/completions", "/responses", "/embeddings"),
    "anthropic": ("/messages",),
}
_TEXT_KEYS = ("messages", "system", "input", "prompt", "instructions", "tools", "tool_choice")
# images and files are not text; "role" and "type" are structure
_SKIP_KEYS = frozenset(("data", "url", "image_url", "file_data", "role", "type"))
_BODY_CAP = 64 << 20  # a JSON body larger than this is not parsed for usage


def estimate_input_tokens(body: Dict[str, Any]) -> int:
    """The documented heuristic: a quarter of the characters of every string
    in the prompt fields (``messages``, ``system``, ``input``, ``prompt``,
    ``instructions``, ``tools``; images and files, i.e. ``data`` / ``url``
    values, and the ``role`` / ``type`` labels are skipped), rounded up, plus 4 per message and 3 for the reply's
    priming. English text averages about 4 characters per token in the GPT and
    Claude tokenizers; the estimate is only what the request is admitted with:
    the real count from the response's ``usage`` replaces it."""
    chars = 0
    messages = 0
    stack = [body.get(key) for key in _TEXT_KEYS]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            chars += len(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key not in _SKIP_KEYS:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    for key in ("messages", "input"):
        value = body.get(key)
        if isinstance(value, list):
            messages += len(value)
    return (chars + 3) // 4 + 4 * messages + 3


def output_reservation(body: Dict[str, Any], default: int) -> int:
    """The output tokens a request reserves: ``max_completion_tokens``,
    ``max_tokens`` or ``max_output_tokens`` of its body, else ``default``."""
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


def usage_of(usage: Any) -> Optional[Tuple[int, int]]:
    """(input, output) tokens of a ``usage`` object of either API, or None.
    OpenAI: ``prompt_tokens`` / ``completion_tokens`` (Responses API:
    ``input_tokens`` / ``output_tokens``); Anthropic: ``input_tokens`` plus
    ``cache_creation_input_tokens`` (what its input-token limits count; cache
    reads are not counted) / ``output_tokens``."""
    if not isinstance(usage, dict):
        return None
    inp = usage.get("prompt_tokens", usage.get("input_tokens"))
    out = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(inp, int) or not isinstance(out, int) or out is None:
        return None
    created = usage.get("cache_creation_input_tokens")
    if isinstance(created, int) and "prompt_tokens" not in usage:
        inp += created
    return max(inp, 0), max(out, 0)


class _HttpxDecoder:
    """One of httpx's content decoders (``br``, ``zstd``...) as a
    ``decompress`` (httpx2's return iterators of bytes, httpx's bytes)."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def decompress(self, chunk: bytes) -> bytes:
        out = self._decoder.decode(chunk)
        return out if isinstance(out, (bytes, bytearray)) else b"".join(out)


def decoders_of(httpx: Any) -> Mapping[str, Callable[[], Any]]:
    """The content decoders of an httpx module, by encoding: what its clients
    ask for in ``Accept-Encoding`` (``br`` with brotli installed, ``zstd``
    with a zstd module or on Python 3.14), so what a provider may answer in."""
    try:
        module = importlib.import_module(httpx.__name__ + "._decoders")
    except ImportError:
        return {}
    found = getattr(module, "SUPPORTED_DECODERS", None)
    return found if isinstance(found, Mapping) else {}


class UsageReader:
    """Reads a response body as it passes through and finds its usage."""

    def __init__(self, content_type: str, content_encoding: str,
                 decoders: Optional[Mapping[str, Callable[[], Any]]] = None) -> None:
        self.sse = "text/event-stream" in content_type.lower()
        encoding = content_encoding.lower().strip()
        self._decoder: Any = None
        self.readable = True
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            factory = (decoders or {}).get(encoding)
            if factory is None:
                self.readable = False  # an encoding the client cannot decode either: the estimate stays
            else:
                self._decoder = _HttpxDecoder(factory())  # br, zstd: as the client decodes them
        self._buffer = bytearray()
        self.input: Optional[int] = None
        self.output: Optional[int] = None
        #: The stream's last event was seen (the SDKs stop reading there).
        self.finished = False

    def feed(self, chunk: bytes) -> None:
        if not self.readable or not chunk:
            return
        if self._decoder is not None:
            try:
                chunk = self._decoder.decompress(chunk)
            except Exception:  # noqa: BLE001 - zlib.error, httpx's DecodingError: unreadable
                self.readable = False
                return
        self._buffer += chunk
        if self.sse:
            while True:
                end = self._buffer.find(b"\n")
                if end < 0:
                    break
                line = bytes(self._buffer[:end]).strip()
                del self._buffer[: end + 1]
                if line.startswith(b"data:"):
                    self._event(line[5:].strip())
        elif len(self._buffer) > _BODY_CAP:
            self.readable = False
            self._buffer = bytearray()

    def _event(self, data: bytes) -> None:
        if data == b"[DONE]":
            self.finished = True
            return
        if not data:
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") in ("message_stop", "response.completed", "response.incomplete", "response.failed"):
            self.finished = True
        # OpenAI chat chunk (last one, with include_usage), Anthropic
        # message_delta: event["usage"]; Anthropic message_start:
        # event["message"]["usage"]; Responses API: event["response"]["usage"].
        for holder in (event, event.get("message"), event.get("response")):
            if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
                self._take(holder["usage"])

    def _take(self, usage: Dict[str, Any]) -> None:
        found = usage_of(usage)
        if "input_tokens" in usage or "prompt_tokens" in usage:
            if found is not None:
                self.input = found[0]
        if "output_tokens" in usage or "completion_tokens" in usage:
            out = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(out, int):
                self.output = out  # Anthropic's message_delta is cumulative

    def result(self) -> Optional[Tuple[int, int]]:
        """(input, output) once the body has ended, or None when unknown."""
        if not self.readable:
            return None
        if not self.sse and self._buffer:
            try:
                body = json.loads(bytes(self._buffer))
            except ValueError:
                return None
            self._buffer = bytearray()
            if isinstance(body, dict):
                found = usage_of(body.get("usage"))
                if found is not None:
                    self.input, self.output = found
        if self.input is None:
            return None
        return self.input, self.output or 0


class Policy:
    """What the transport books for a request (shared by the sync and async
    transports of one client)."""

    def __init__(
        self,
        provider: str,
        tracker: Optional[Tracker],
        timeout: Optional[float],
        model_name: ModelName,
        estimate: Optional[Estimator],
        default_output_tokens: int,
        stream_usage: bool,
    ) -> None:
        if provider not in _ENDPOINTS:
            raise InvalidArgument(f"provider must be one of {sorted(_ENDPOINTS)}, got {provider!r}", RT_E_INVALID)
        from .. import _checks, global_tracker

        self.provider = provider
        self.tracker = tracker if tracker is not None else global_tracker()
        if not isinstance(self.tracker, Tracker):
            raise TypeError(f"tracker must be a ratetrack.Tracker, not {type(self.tracker).__name__}")
        self.timeout = _checks.timeout(timeout)
        if model_name is not None and not callable(model_name) and not isinstance(model_name, Mapping):
            raise TypeError("model_name must be None, a mapping or a function of the SDK's model id")
        self.model_name = model_name
        if estimate is not None and not callable(estimate):
            raise TypeError("estimate must be a function of the request's JSON body")
        self.estimate = estimate or estimate_input_tokens
        self.default_output_tokens = _checks.u64(default_output_tokens, "default_output_tokens")
        self.stream_usage = bool(stream_usage)
        #: The SDK's base exception (openai.OpenAIError, anthropic.AnthropicError),
        #: set by the wrap functions: see :func:`sdk_error`.
        self.error_base: Optional[type] = None

    def name(self, model: str) -> str:
        mapping = self.model_name
        if mapping is None:
            return f"{self.provider}/{model}"
        if isinstance(mapping, Mapping):
            return mapping.get(model, f"{self.provider}/{model}")
        name = mapping(model)
        if not isinstance(name, str):
            raise TypeError(f"model_name({model!r}) returned {type(name).__name__}, not str")
        return name

    def wants(self, request: Any) -> bool:
        """Whether a request goes to a model endpoint (its body is read only then)."""
        return bool(request.method == "POST" and request.url.path.rstrip("/").endswith(_ENDPOINTS[self.provider]))

    def plan(self, request: Any) -> Optional[Tuple[str, int, int, Optional[bytes]]]:
        """(tracker model, input estimate, output reservation, new body or
        None) for a request to a model endpoint (:meth:`wants`, body read);
        None for a body that names no model."""
        path = request.url.path.rstrip("/")
        try:
            body = json.loads(request.content)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return None
        model = self.name(body["model"])
        estimate = self.estimate(body)
        output = output_reservation(body, self.default_output_tokens)
        new_body = None
        if (
            self.stream_usage
            and self.provider == "openai"
            and body.get("stream") is True
            and path.endswith("/completions")
        ):
            options = body.get("stream_options")
            if not isinstance(options, dict) or not options.get("include_usage"):
                body["stream_options"] = dict(options or {}, include_usage=True)
                new_body = json.dumps(body, separators=(",", ":")).encode("utf-8")
        return model, estimate, output, new_body

    def retry_after(self, headers: Any) -> Optional[str]:
        return retry_after_of(headers)


def retry_after_of(headers: Any) -> Optional[str]:
    """The delay a 429's headers ask for, as ``report_limited`` takes it:
    ``retry-after`` (seconds or an HTTP date) as it is, else OpenAI's
    ``retry-after-ms`` in seconds; None when neither is there (or readable)."""
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value:
        return str(value)
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return f"{float(ms) / 1000.0:.3f}"
        except ValueError:
            return None
    return None


_ERROR_CLASSES: Dict[Tuple[type, type], type] = {}


def sdk_error(exc: RateTrackError, base: Optional[type]) -> BaseException:
    """``exc`` as an instance of a subclass of both its class and the SDK's
    base exception: the SDKs re-raise their own errors as they are, where
    they would wrap any other exception from the transport in a connection
    error (anthropic) and retry it. ``except ratetrack.AcquireTimeout`` and
    ``except anthropic.AnthropicError`` both catch it."""
    if base is None or isinstance(exc, base):
        return exc
    key = (type(exc), base)
    cls: Optional[type] = _ERROR_CLASSES.get(key)
    if cls is None:
        cls = type(type(exc).__name__, (type(exc), base), {"__module__": type(exc).__module__})  # type: ignore[call-overload]
        _ERROR_CLASSES[key] = cls
    new: BaseException = cls.__new__(cls)  # type: ignore[call-overload]
    new.__dict__.update(exc.__dict__)
    new.args = exc.args
    new.__cause__ = exc.__cause__
    new.__traceback__ = exc.__traceback__
    return new


def _actual(grant: Grant, usage: Optional[Tuple[int, int]], complete: bool) -> Optional[Tuple[int, int]]:
    """What to settle a grant to: the usage read; for a body closed before its
    end, the output reserved if more than what was seen (the provider may have
    generated it all); None (keep the estimate) when no usage was seen."""
    if usage is None:
        return None
    if complete:
        return usage
    return usage[0], max(usage[1], grant.output_tokens)


def _rebuilt(httpx: Any, request: Any, body: bytes) -> Any:
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
    return httpx.Request(request.method, request.url, headers=headers, content=body, extensions=request.extensions)


_CLASSES: Dict[str, Tuple[type, type]] = {}


def classes(httpx: Any) -> Tuple[type, type]:
    """(sync transport class, async transport class) for an httpx module
    (``httpx`` or ``httpx2``): made once per module."""
    key = httpx.__name__
    if key in _CLASSES:
        return _CLASSES[key]
    decoders = decoders_of(httpx)

    class _Stream(httpx.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, reader: UsageReader, done: Callable[..., None]) -> None:
            self._inner = inner
            self._reader = reader
            self._done = done

        def __iter__(self) -> Any:
            for chunk in self._inner:
                self._reader.feed(chunk)
                yield chunk
            self._done(self._reader.result(), True)

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._done(self._reader.result(), self._reader.finished)

    class _AsyncStream(httpx.AsyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, reader: UsageReader, done: Callable[..., Any]) -> None:
            self._inner = inner
            self._reader = reader
            self._done = done

        async def __aiter__(self) -> Any:
            async for chunk in self._inner:
                self._reader.feed(chunk)
                yield chunk
            await self._done(self._reader.result(), True)

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                await self._done(self._reader.result(), self._reader.finished)

    def _settler(tracker: Tracker, grant: Grant) -> Callable[..., None]:
        settled: List[bool] = []

        def done(usage: Optional[Tuple[int, int]], complete: bool) -> None:
            if settled:
                return
            settled.append(True)
            actual = _actual(grant, usage, complete)
            if actual is not None:  # unknown: the estimate stays booked
                tracker.settle_io(grant, actual[0], actual[1])

        return done

    def _async_settler(tracker: Tracker, grant: Grant) -> Callable[..., Any]:
        settled: List[bool] = []

        async def done(usage: Optional[Tuple[int, int]], complete: bool) -> None:
            if settled:
                return
            settled.append(True)
            actual = _actual(grant, usage, complete)
            if actual is not None:
                await tracker.settle_io_async(grant, actual[0], actual[1])

        return done

    class RateTrackTransport(httpx.BaseTransport):  # type: ignore[misc, name-defined]
        """A sync httpx transport that rate-limits the requests it sends
        through ``inner`` (see :mod:`ratetrack.integrations`)."""

        def __init__(self, inner: Any, policy: Policy) -> None:
            self.inner = inner
            self.policy = policy

        def handle_request(self, request: Any) -> Any:
            try:
                return self._handle(request)
            except RateTrackError as exc:
                raise sdk_error(exc, self.policy.error_base) from None

        def _handle(self, request: Any) -> Any:
            if not self.policy.wants(request):
                return self.inner.handle_request(request)
            request.read()
            plan = self.policy.plan(request)
            if plan is None:
                return self.inner.handle_request(request)
            model, estimate, output, body = plan
            if body is not None:
                request = _rebuilt(httpx, request, body)
            tracker = self.policy.tracker
            grant = tracker.acquire(model, estimate, self.policy.timeout, output_tokens=output)
            try:
                response = self.inner.handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                tracker.settle_io(grant, 0, 0)  # never reached the provider
                raise
            # Any other failure: sent, no answer; the provider may have processed it (the estimate stays).
            failed = response.status_code >= 400
            try:
                tracker.observe_headers(model, response.headers)
                if response.status_code == 429:
                    tracker.report_limited(model, self.policy.retry_after(response.headers))
            except BaseException:
                if failed:  # an error answer uses no tokens, fed back or not
                    with contextlib.suppress(Exception):  # the feedback's error is the one raised
                        tracker.settle_io(grant, 0, 0)
                response.close()
                raise
            if failed:
                try:
                    tracker.settle_io(grant, 0, 0)
                except BaseException:
                    response.close()
                    raise
                return response
            reader = UsageReader(
                response.headers.get("content-type", ""), response.headers.get("content-encoding", ""), decoders
            )
            stream = _Stream(response.stream, reader, _settler(tracker, grant))
            return httpx.Response(
                response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
            )

        def close(self) -> None:
            self.inner.close()

    class AsyncRateTrackTransport(httpx.AsyncBaseTransport):  # type: ignore[misc, name-defined]
        """The asyncio form of the transport: it waits with ``asyncio.sleep``
        and uses the tracker's async calls (never blocking the event loop)."""

        def __init__(self, inner: Any, policy: Policy) -> None:
            self.inner = inner
            self.policy = policy

        async def handle_async_request(self, request: Any) -> Any:
            try:
                return await self._handle(request)
            except RateTrackError as exc:
                raise sdk_error(exc, self.policy.error_base) from None

        async def _handle(self, request: Any) -> Any:
            if not self.policy.wants(request):
                return await self.inner.handle_async_request(request)
            await request.aread()
            plan = self.policy.plan(request)
            if plan is None:
                return await self.inner.handle_async_request(request)
            model, estimate, output, body = plan
            if body is not None:
                request = _rebuilt(httpx, request, body)
            tracker = self.policy.tracker
            grant = await tracker.acquire_async(model, estimate, self.policy.timeout, output_tokens=output)
            try:
                response = await self.inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                await tracker.settle_io_async(grant, 0, 0)  # never reached the provider
                raise
            # Any other failure (a cancelled task too): the estimate stays.
            failed = response.status_code >= 400
            try:
                await tracker.observe_headers_async(model, response.headers)
                if response.status_code == 429:
                    await tracker.report_limited_async(model, self.policy.retry_after(response.headers))
            except BaseException:
                if failed:  # an error answer uses no tokens, fed back or not
                    with contextlib.suppress(Exception):  # the feedback's error is the one raised
                        await tracker.settle_io_async(grant, 0, 0)
                await response.aclose()
                raise
            if failed:
                try:
                    await tracker.settle_io_async(grant, 0, 0)
                except BaseException:
                    await response.aclose()
                    raise
                return response
            reader = UsageReader(
                response.headers.get("content-type", ""), response.headers.get("content-encoding", ""), decoders
            )
            stream = _AsyncStream(response.stream, reader, _async_settler(tracker, grant))
            return httpx.Response(
                response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
            )

        async def aclose(self) -> None:
            await self.inner.aclose()

    _CLASSES[key] = (RateTrackTransport, AsyncRateTrackTransport)
    return _CLASSES[key]
