"""A local fake of the OpenAI and Anthropic HTTP APIs, for the integration tests.

A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) that speaks
``POST /v1/chat/completions`` (plain JSON, or SSE with ``stream: true``, with a
last usage chunk when ``stream_options.include_usage`` is set), ``POST
/v1/responses`` (OpenAI's Responses API: a ``response`` object, or with
``stream: true`` the typed SSE events response.created ... response.completed,
the last carrying the response with its ``usage``) and ``POST
/v1/messages`` (plain, or SSE events message_start / content_block_* /
message_delta / message_stop). Every answer carries the real rate-limit
headers (OpenAI ``x-ratelimit-*`` with Go-duration resets, Anthropic
``anthropic-ratelimit-*`` with RFC 3339 resets) and ``usage``. The server
enforces its own limits per model (requests and tokens per fixed window, set
per test with :meth:`FakeLLM.limit`): past one it answers 429 with
``retry-after``. :meth:`FakeLLM.force_429` makes the next requests of a model
429 whatever the limits (with ``retry-after``, or ``retry-after-ms`` alone).

Usage is deterministic and differs from the client's estimate on purpose:
input = 7 + (characters of the message texts) // 3, output = min(max_tokens,
12) (12 without max_tokens; the Responses API: of ``input`` and
``instructions``, and max_output_tokens).

Run as a program (``python3 fake_llm.py``, as tests/newcomer.sh does for the
READMEs' SDK programs) it serves with no limits until SIGTERM: it prints its
URL first, then on exit one line of what it served.
"""

from __future__ import annotations

import datetime
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

OUTPUT_TOKENS = 12


def text_chars(node: Any) -> int:
    if isinstance(node, str):
        return len(node)
    if isinstance(node, dict):
        return sum(text_chars(v) for k, v in node.items() if k in ("content", "text", "system"))
    if isinstance(node, list):
        return sum(text_chars(v) for v in node)
    return 0


class Window:
    """One model's server-side limits and usage (a fixed window)."""

    def __init__(self, requests: Optional[int], tokens: Optional[int], seconds: float) -> None:
        self.requests_limit = requests
        self.tokens_limit = tokens
        self.seconds = seconds
        self.start = time.monotonic()
        self.requests = 0
        self.tokens = 0
        self.input = 0
        self.output = 0

    def roll(self, now: float) -> None:
        if now - self.start >= self.seconds:
            self.start = now
            self.requests = self.tokens = self.input = self.output = 0

    def reset_in(self, now: float) -> float:
        return max(0.001, self.start + self.seconds - now)


def go_duration(seconds: float) -> str:
    if seconds >= 60:
        minutes = int(seconds // 60)
        return f"{minutes}m{seconds - 60 * minutes:.0f}s"
    return f"{seconds:.3f}s"


def rfc3339(seconds_from_now: float) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeLLM:
    """The server and what it saw. ``url`` is ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.lock = threading.Lock()
        self.windows: Dict[str, Window] = {}
        self.forced: Dict[str, List[str]] = {}
        self.sent_429 = threading.Event()
        self.received = 0  # every request
        self.admitted = 0  # answered 200
        self.limited = 0  # answered 429
        self.tokens = 0  # input + output of the 200s
        self.input = 0
        self.output = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: List[Dict[str, Any]] = []
        self.request_headers: List[Dict[str, str]] = []  # of every POST, names lower-cased
        self.attempt_times: List[Tuple[float, int]] = []  # (monotonic, status)
        self.gzip = False  # JSON answers gzip-encoded when the client accepts it
        handler = type("Handler", (_Handler,), {"fake": self})
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 128})
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FakeLLM":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def limit(self, model: str, requests: Optional[int] = None, tokens: Optional[int] = None,
              seconds: float = 60.0) -> None:
        """Server-side limits of ``model`` (the id as sent, without a provider)."""
        with self.lock:
            self.windows[model] = Window(requests, tokens, seconds)

    def force_429(self, model: str, *retry_after: str, ms: bool = False) -> None:
        """The next len(retry_after) requests of ``model`` get a 429 with these
        in ``retry-after`` (seconds), or with ``ms`` in ``retry-after-ms``
        alone (milliseconds, as OpenAI sends it)."""
        with self.lock:
            self.forced.setdefault(model, []).extend(("ms:" + r if ms else r) for r in retry_after)

    # -- the decision, under the lock ------------------------------------------
    def decide(self, model: str, input_tokens: int, output_tokens: int) -> Tuple[int, Dict[str, str], Optional[str]]:
        now = time.monotonic()
        with self.lock:
            self.received += 1
            window = self.windows.setdefault(model, Window(None, None, 60.0))
            window.roll(now)
            retry: Optional[str] = None
            forced = self.forced.get(model)
            if forced:
                retry = forced.pop(0)
            elif window.requests_limit is not None and window.requests >= window.requests_limit:
                retry = f"{window.reset_in(now):.0f}" if window.reset_in(now) >= 1 else "1"
            elif window.tokens_limit is not None and window.tokens >= window.tokens_limit:
                retry = f"{window.reset_in(now):.0f}" if window.reset_in(now) >= 1 else "1"
            if retry is None:
                window.requests += 1
                window.tokens += input_tokens + output_tokens
                window.input += input_tokens
                window.output += output_tokens
                self.admitted += 1
                self.tokens += input_tokens + output_tokens
                self.input += input_tokens
                self.output += output_tokens
                status = 200
            else:
                self.limited += 1
                status = 429
            self.attempt_times.append((now, status))
            headers = self.headers(window, now)
        if retry is not None:
            self.sent_429.set()
        return status, headers, retry

    def headers(self, w: Window, now: float) -> Dict[str, str]:
        big = 10**9
        rl = w.requests_limit if w.requests_limit is not None else big
        tl = w.tokens_limit if w.tokens_limit is not None else big
        reset = w.reset_in(now)
        return {
            "x-ratelimit-limit-requests": str(rl),
            "x-ratelimit-remaining-requests": str(max(0, rl - w.requests)),
            "x-ratelimit-reset-requests": go_duration(reset),
            "x-ratelimit-limit-tokens": str(tl),
            "x-ratelimit-remaining-tokens": str(max(0, tl - w.tokens)),
            "x-ratelimit-reset-tokens": go_duration(reset),
            "anthropic-ratelimit-requests-limit": str(rl),
            "anthropic-ratelimit-requests-remaining": str(max(0, rl - w.requests)),
            "anthropic-ratelimit-requests-reset": rfc3339(reset),
            "anthropic-ratelimit-tokens-limit": str(tl),
            "anthropic-ratelimit-tokens-remaining": str(max(0, tl - w.tokens)),
            "anthropic-ratelimit-tokens-reset": rfc3339(reset),
            "anthropic-ratelimit-input-tokens-limit": str(tl),
            "anthropic-ratelimit-input-tokens-remaining": str(max(0, tl - w.input)),
            "anthropic-ratelimit-input-tokens-reset": rfc3339(reset),
            "anthropic-ratelimit-output-tokens-limit": str(tl),
            "anthropic-ratelimit-output-tokens-remaining": str(max(0, tl - w.output)),
            "anthropic-ratelimit-output-tokens-reset": rfc3339(reset),
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        fake = self.fake
        with fake.lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._post()
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _post(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fake = self.fake
        with fake.lock:
            fake.bodies.append(body)
            fake.request_headers.append({k.lower(): v for k, v in self.headers.items()})
        path = self.path.rstrip("/")
        anthropic = path.endswith("/messages")
        responses = path.endswith("/responses")
        if not anthropic and not responses and not path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": "not found"}}, {})
            return
        model = body.get("model", "")
        if responses:
            chars = text_chars(body.get("input", "")) + text_chars(body.get("instructions") or "")
        else:
            chars = text_chars(body.get("messages", [])) + text_chars(body.get("system", ""))
        input_tokens = 7 + chars // 3
        max_tokens = (body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
                      or OUTPUT_TOKENS)
        output_tokens = min(int(max_tokens), OUTPUT_TOKENS)
        if fake.latency:
            time.sleep(fake.latency)
        status, headers, retry = fake.decide(model, input_tokens, output_tokens)
        if status == 429:
            if retry and retry.startswith("ms:"):
                headers["retry-after-ms"] = retry[3:]
            else:
                headers["retry-after"] = retry or "1"
            if anthropic:
                error = {"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}}
            else:
                error = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
            self._json(429, error, headers)
            return
        text = "ok " * output_tokens
        stream = body.get("stream") is True
        if anthropic:
            if stream:
                self._anthropic_stream(model, input_tokens, output_tokens, text, headers)
            else:
                self._json(200, {
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                }, headers)
            return
        if responses:
            if stream:
                self._responses_stream(body, input_tokens, output_tokens, text, headers)
            else:
                self._json(200, response_object(body, input_tokens, output_tokens, text), headers)
            return
        usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                 "total_tokens": input_tokens + output_tokens}
        if stream:
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            self._openai_stream(model, text, usage if include else None, headers)
        else:
            self._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            }, headers)

    def _json(self, status: int, payload: Dict[str, Any], headers: Dict[str, str]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if self.fake.gzip and "gzip" in (self.headers.get("accept-encoding") or ""):
            raw = gzip.compress(raw)
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _sse_start(self, headers: Dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True

    def _openai_stream(self, model: str, text: str, usage: Optional[Dict[str, int]], headers: Dict[str, str]) -> None:
        self._sse_start(headers)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        pieces = text.split(" ")
        for i, piece in enumerate(pieces):
            chunk = dict(base, choices=[{"index": 0, "delta": {"content": piece + " "} if i else
                                         {"role": "assistant", "content": piece + " "},
                                         "finish_reason": None}])
            if usage is not None:
                chunk["usage"] = None
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        last = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            last["usage"] = None
        self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        if usage is not None:
            self.wfile.write(b"data: " + json.dumps(dict(base, choices=[], usage=usage)).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _responses_stream(self, body: Dict[str, Any], input_tokens: int, output_tokens: int, text: str,
                          headers: Dict[str, str]) -> None:
        # The Responses API's streaming events, as OpenAI sends them: "event:"
        # lines with the type, a sequence_number each, no [DONE].
        self._sse_start(headers)
        done = response_object(body, input_tokens, output_tokens, text)
        start = dict(done, status="in_progress", output=[], usage=None)
        item = done["output"][0]
        part = item["content"][0]
        sequence = [0]

        def event(name: str, data: Dict[str, Any]) -> None:
            data = dict(type=name, sequence_number=sequence[0], **data)
            sequence[0] += 1
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        ids = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        event("response.created", {"response": start})
        event("response.in_progress", {"response": start})
        event("response.output_item.added", {"output_index": 0, "item": dict(item, status="in_progress", content=[])})
        event("response.content_part.added", dict(ids, part=dict(part, text="")))
        for piece in text.split(" "):
            event("response.output_text.delta", dict(ids, delta=piece + " ", logprobs=[]))
        event("response.output_text.done", dict(ids, text=text, logprobs=[]))
        event("response.content_part.done", dict(ids, part=part))
        event("response.output_item.done", {"output_index": 0, "item": item})
        event("response.completed", {"response": done})

    def _anthropic_stream(self, model: str, input_tokens: int, output_tokens: int, text: str,
                          headers: Dict[str, str]) -> None:
        self._sse_start(headers)

        def event(name: str, data: Dict[str, Any]) -> None:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        event("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})
        for piece in text.split(" "):
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": piece + " "}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": output_tokens}})
        event("message_stop", {"type": "message_stop"})


def response_object(body: Dict[str, Any], input_tokens: int, output_tokens: int, text: str) -> Dict[str, Any]:
    """A completed Responses API ``response`` object (its fields as OpenAI documents them)."""
    return {
        "id": "resp_fake", "object": "response", "created_at": int(time.time()), "status": "completed",
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model", ""),
        "output": [{
            "type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }],
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
        "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": None, "metadata": {},
    }


def main() -> None:
    import signal
    import sys

    fake = FakeLLM()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(fake.url, flush=True)
    try:
        fake.server.serve_forever()
    finally:
        print(f"fake_llm: {fake.received} requests, {fake.admitted} answered 200, "
              f"{fake.input} input and {fake.output} output tokens", flush=True)


if __name__ == "__main__":
    main()
