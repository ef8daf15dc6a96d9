"""LangChain (``langchain-core``) integration: a rate limiter, a callback
handler that books the real tokens, and a chat model that picks a model with
room.

For OpenAI chat models, the tracker's own httpx clients are the one line, and
the one that sees every HTTP attempt (the openai SDK's retries of a 429
included, which a limiter and a callback never see)::

    from ratetrack.integrations import openai_http_client

    llm = ChatOpenAI(model="gpt-4o-mini", http_client=openai_http_client(timeout=30),
                     http_async_client=openai_http_client(is_async=True, timeout=30))

For chat models whose HTTP client cannot be given, the limiter and the
callback handler (they see LangChain's calls, not the HTTP attempts
under them)::

    from ratetrack.integrations.langchain import RateTrackRateLimiter, RateTrackCallbackHandler

    llm = SomeChatModel(model="some-model",
                        rate_limiter=RateTrackRateLimiter("provider/some-model", timeout=30),
                        callbacks=[RateTrackCallbackHandler("provider/some-model")])

LangChain's limiter interface passes no token count and no response: the
limiter counts the request (0 tokens) before the call; the callback adds the
response's real input and output tokens to the same model with
``Tracker.record_tokens`` (no second request counted). A limiter that cannot
admit in time RAISES ``ratetrack.AcquireTimeout``: LangChain ignores a False
return of ``acquire(blocking=True)``.

Needs ``pip install 'ratetrack[langchain]'`` (langchain-core); imported only
when this module is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, AsyncCallbackManager, BaseCallbackHandler, CallbackManager
from langchain_core.callbacks.manager import AsyncRunManager
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, LLMResult
from langchain_core.rate_limiters import BaseRateLimiter
from pydantic import ConfigDict, Field

from .. import _checks, global_tracker
from .._tracker import Grant, Tracker, _delay
from ..errors import RT_E_INVALID, InvalidArgument
from ._http import retry_after_of

__all__ = [
    "AsyncRateTrackCallbackHandler",
    "RateTrackCallbackHandler",
    "RateTrackPicker",
    "RateTrackRateLimiter",
    "estimate_message_tokens",
    "usage_from_result",
]


def _tracker(tracker: Optional[Tracker]) -> Tracker:
    t = tracker if tracker is not None else global_tracker()
    if not isinstance(t, Tracker):
        raise TypeError(f"tracker must be a ratetrack.Tracker, not {type(t).__name__}")
    return t


def _model_name(model: str) -> str:
    _checks.model(model)
    if not model:
        raise InvalidArgument("model must not be empty", RT_E_INVALID)
    return model


class RateTrackRateLimiter(BaseRateLimiter):
    """A LangChain rate limiter over one model of a tracker (default: the
    global one). ``acquire(blocking=True)`` (and ``aacquire``) wait up to
    ``timeout`` seconds (None: as long as it takes) for a request slot and
    count the request; past the timeout they raise
    ``ratetrack.AcquireTimeout``, never return False. ``blocking=False``
    tries once and returns whether it was admitted. The tokens come later,
    from :class:`RateTrackCallbackHandler`; the request is refused while a
    token window is already full."""

    def __init__(self, model: str, tracker: Optional[Tracker] = None, *, timeout: Optional[float] = None) -> None:
        self.model = _model_name(model)
        self.tracker = _tracker(tracker)
        self.timeout = _checks.timeout(timeout)

    def acquire(self, *, blocking: bool = True) -> bool:
        if not blocking:
            return bool(self.tracker.try_acquire(self.model))
        self.tracker.acquire(self.model, 0, self.timeout)
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        if not blocking:
            return bool(await self.tracker.try_acquire_async(self.model))
        await self.tracker.acquire_async(self.model, 0, self.timeout)
        return True


def usage_from_result(response: LLMResult) -> Tuple[int, int]:
    """(input, output) tokens of an LLM result: the messages'
    ``usage_metadata``, else ``llm_output["token_usage"]`` (OpenAI's
    ``prompt_tokens`` / ``completion_tokens``) or ``llm_output["usage"]``;
    (0, 0) when it has none."""
    found = _usage_found(response)
    return found if found is not None else (0, 0)


def _usage_found(response: LLMResult) -> Optional[Tuple[int, int]]:
    total_in = total_out = 0
    found = False
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None) if message is not None else None
            if usage:
                total_in += int(usage.get("input_tokens", 0) or 0)
                total_out += int(usage.get("output_tokens", 0) or 0)
                found = True
    if found:
        return total_in, total_out
    output = response.llm_output or {}
    usage = output.get("token_usage") or output.get("usage")
    if isinstance(usage, dict) and usage:
        inp = usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0
        out = usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0
        return int(inp), int(out)
    return None


def _estimated_usage(response: LLMResult, prompt_estimate: int) -> Tuple[int, int]:
    """For a result without usage (a stream whose provider sent none, e.g.
    ChatOpenAI with a ``base_url`` and no ``stream_usage=True``): the
    prompt's estimate and a quarter of the characters generated, rounded up."""
    chars = sum(len(g.text or "") for generations in response.generations for g in generations)
    return prompt_estimate, (chars + 3) // 4


class _Naming:
    """Which tracker model a run books to: the fixed ``model``, else
    ``provider/ls_model_name`` from the run's metadata (LangChain chat models
    set ``ls_provider`` and ``ls_model_name``), else ``llm_output["model_name"]``."""

    def __init__(self, model: Optional[str], provider: Optional[str]) -> None:
        self.model = None if model is None else _model_name(model)
        self.provider = provider
        self.runs: Dict[UUID, str] = {}
        #: Each run's prompt estimate, for a result that carries no usage.
        self.prompts: Dict[UUID, int] = {}

    def start(self, run_id: UUID, metadata: Optional[Dict[str, Any]],
              messages: Optional[List[List[BaseMessage]]] = None) -> None:
        if messages:
            self.prompts[run_id] = sum(estimate_message_tokens(m) for m in messages)
        if self.model is not None or not metadata:
            return
        name = metadata.get("ls_model_name")
        provider = self.provider or metadata.get("ls_provider")
        if isinstance(name, str) and isinstance(provider, str):
            self.runs[run_id] = f"{provider}/{name}"

    def forget(self, run_id: UUID) -> None:
        self.runs.pop(run_id, None)
        self.prompts.pop(run_id, None)

    def booking(self, run_id: UUID, response: LLMResult, who: str) -> Tuple[str, int, int]:
        """(model, input, output) to book for a run that ended: its usage, or
        when the result has none, an estimate (see :func:`_estimated_usage`)."""
        prompt = self.prompts.pop(run_id, 0)
        model = self.end(run_id, response)
        if model is None:
            raise InvalidArgument(f"{who}: cannot name the run's model; pass model=", RT_E_INVALID)
        found = _usage_found(response)
        inp, out = found if found is not None else _estimated_usage(response, prompt)
        return model, inp, out

    def end(self, run_id: UUID, response: Optional[LLMResult]) -> Optional[str]:
        named = self.runs.pop(run_id, None)
        if self.model is not None:
            return self.model
        if named is not None:
            return named
        output = (response.llm_output or {}) if response is not None else {}
        name = output.get("model_name") or output.get("model")
        if isinstance(name, str) and self.provider:
            return f"{self.provider}/{name}"
        return None


class RateTrackCallbackHandler(BaseCallbackHandler):
    """Books the real tokens of each chat-model run with
    ``Tracker.record_tokens`` (the request was counted by
    :class:`RateTrackRateLimiter`). ``model``: the tracker's model name; None
    names it ``provider/ls_model_name`` from the run (``provider`` overrides
    LangChain's ``ls_provider``). A run whose model cannot be named raises
    ``InvalidArgument`` rather than drop its tokens. A result without usage
    (a stream whose provider sent none: ``ChatOpenAI`` with a ``base_url``
    and no ``stream_usage=True``) books an estimate instead: a quarter of the
    characters of the prompt (:func:`estimate_message_tokens`) and of the
    text generated."""

    raise_error = True  # a booking failure is not hidden by LangChain

    def __init__(self, model: Optional[str] = None, tracker: Optional[Tracker] = None, *,
                 provider: Optional[str] = None) -> None:
        self.naming = _Naming(model, provider)
        self.tracker = _tracker(tracker)

    def on_chat_model_start(self, serialized: Dict[str, Any], messages: List[List[BaseMessage]], *,
                            run_id: UUID, metadata: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        self.naming.start(run_id, metadata, messages)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        model, inp, out = self.naming.booking(run_id, response, "RateTrackCallbackHandler")
        self.tracker.record_tokens(model, inp, out)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.naming.forget(run_id)


class AsyncRateTrackCallbackHandler(AsyncCallbackHandler):
    """:class:`RateTrackCallbackHandler` for async runs (``ainvoke``,
    ``abatch``): books with ``record_tokens_async``, never blocking the loop."""

    raise_error = True

    def __init__(self, model: Optional[str] = None, tracker: Optional[Tracker] = None, *,
                 provider: Optional[str] = None) -> None:
        self.naming = _Naming(model, provider)
        self.tracker = _tracker(tracker)

    async def on_chat_model_start(self, serialized: Dict[str, Any], messages: List[List[BaseMessage]], *,
                                  run_id: UUID, metadata: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        self.naming.start(run_id, metadata, messages)

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        model, inp, out = self.naming.booking(run_id, response, "AsyncRateTrackCallbackHandler")
        await self.tracker.record_tokens_async(model, inp, out)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.naming.forget(run_id)


def estimate_message_tokens(messages: Sequence[BaseMessage]) -> int:
    """The same heuristic as the SDK wrappers: characters / 4 of the message
    contents, plus 4 per message and 3."""
    chars = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        else:
            for part in content:
                if isinstance(part, str):
                    chars += len(part)
                elif isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return (chars + 3) // 4 + 4 * len(messages) + 3


def _is_rate_limited(exc: BaseException) -> bool:
    if getattr(exc, "status_code", None) == 429:
        return True
    return any(cls.__name__ == "RateLimitError" for cls in type(exc).__mro__)


def _retry_after(exc: BaseException) -> Optional[str]:
    """The retry-after of a 429 error's response (``retry-after``, else
    ``retry-after-ms``: the SDK transport's reading)."""
    response = getattr(exc, "response", None)
    return retry_after_of(getattr(response, "headers", None))


def _child_config(run_manager: Any) -> Dict[str, Any]:
    """The config of the inner model's call: the picker run's child callbacks,
    so that the inner run is traced under it. LangChain's wrappers pass
    ``run_manager.get_child()``; a chat model's run manager (an LLM run's)
    has no ``get_child``, so the same manager is made here as
    ``ParentRunManager.get_child`` makes it: the run's inheritable handlers,
    tags and metadata, with the run as parent."""
    if run_manager is None:
        return {}
    get_child = getattr(run_manager, "get_child", None)
    if callable(get_child):
        return {"callbacks": get_child()}
    cls = AsyncCallbackManager if isinstance(run_manager, AsyncRunManager) else CallbackManager
    manager = cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


class RateTrackPicker(BaseChatModel):
    """A chat model over several, in order of preference: each call picks
    the first with room now (``Tracker.pick``, which acquires), calls it, and
    settles the grant to the response's ``usage_metadata``. A 429 from the
    model chosen (``RateLimitError``, or any error with ``status_code`` 429)
    is reported to the tracker with its ``retry-after`` (or
    ``retry-after-ms``; the model is skipped until then) and the call goes to the next model with room. When none has
    room it waits (``timeout`` seconds at most, then
    ``ratetrack.AcquireTimeout``). Give the inner models ``max_retries=0``
    so that a 429 falls back at once instead of being retried by the SDK.

    ``models``: ``[("openai/gpt-4o-mini", ChatOpenAI(...)), ("anthropic/...",
    ChatAnthropic(...))]``. The chosen model's name is in the answer's
    ``response_metadata["ratetrack_model"]``. The inner model's call is a
    child run of the picker's (its callbacks are the picker run's children,
    as in LangChain's own wrappers), so tracing shows it; a
    :class:`RateTrackCallbackHandler` given to the picker's call would
    therefore book the inner runs' tokens again: the picker books them
    itself."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: List[Tuple[str, BaseChatModel]]
    tracker: Optional[Any] = Field(default=None, exclude=True)
    timeout: Optional[float] = None
    max_output_tokens: int = 0

    def model_post_init(self, __context: Any) -> None:
        if not self.models:
            raise InvalidArgument("RateTrackPicker needs at least one model", RT_E_INVALID)
        for name, _ in self.models:
            _model_name(name)
        _checks.timeout(self.timeout)
        _checks.u64(self.max_output_tokens, "max_output_tokens")
        self.tracker = _tracker(self.tracker)

    @property
    def _llm_type(self) -> str:
        return "ratetrack-picker"

    def _names(self) -> List[str]:
        return [name for name, _ in self.models]

    def _answer(self, name: str, message: BaseMessage) -> ChatResult:
        if isinstance(message, AIMessage):
            message.response_metadata = dict(message.response_metadata or {}, ratetrack_model=name)
        return ChatResult(generations=[ChatGeneration(message=message)])

    @staticmethod
    def _usage(message: BaseMessage) -> Tuple[int, int]:
        usage = getattr(message, "usage_metadata", None) or {}
        return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)

    def _generate(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        tracker: Tracker = _tracker(self.tracker)
        estimate = estimate_message_tokens(messages)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        names = self._names()
        while True:
            pick = tracker.pick(names, estimate, self.max_output_tokens)
            if not pick:
                time.sleep(_delay(_as_acquire(pick), deadline, ",".join(names)))
                continue
            grant: Grant = pick.grant  # type: ignore[assignment]
            chat = self.models[pick.index][1]
            try:
                message = chat.invoke(messages, _child_config(run_manager), stop=stop, **kwargs)
            except Exception as exc:
                tracker.settle_io(grant, 0, 0)
                if _is_rate_limited(exc):
                    tracker.report_limited(pick.model, _retry_after(exc))
                    continue
                raise
            tracker.settle_io(grant, *self._usage(message))
            return self._answer(pick.model, message)

    async def _agenerate(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        tracker: Tracker = _tracker(self.tracker)
        estimate = estimate_message_tokens(messages)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        names = self._names()
        while True:
            pick = await tracker.pick_async(names, estimate, self.max_output_tokens)
            if not pick:
                await asyncio.sleep(_delay(_as_acquire(pick), deadline, ",".join(names)))
                continue
            grant: Grant = pick.grant  # type: ignore[assignment]
            chat = self.models[pick.index][1]
            try:
                message = await chat.ainvoke(messages, _child_config(run_manager), stop=stop, **kwargs)
            except Exception as exc:
                await tracker.settle_io_async(grant, 0, 0)
                if _is_rate_limited(exc):
                    await tracker.report_limited_async(pick.model, _retry_after(exc))
                    continue
                raise
            await tracker.settle_io_async(grant, *self._usage(message))
            return self._answer(pick.model, message)


def _as_acquire(pick: Any) -> Any:
    from .._tracker import Acquire

    return Acquire(False, pick.retry_after, None)
