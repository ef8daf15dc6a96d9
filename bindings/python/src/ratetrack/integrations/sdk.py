"""One line to put an OpenAI or Anthropic SDK client under a ratetrack tracker.

::

    import openai, anthropic
    from ratetrack.integrations import wrap_openai, wrap_anthropic

    client = wrap_openai(openai.OpenAI())              # or AsyncOpenAI(), AzureOpenAI()...
    claude = wrap_anthropic(anthropic.AsyncAnthropic(), timeout=30)

The client returned is ``client.with_options(http_client=...)``: the same
client, with an httpx client made as the SDK makes its own (the environment's
proxies included) whose transports are wrapped (see
:mod:`ratetrack.integrations._http` for what it does on every attempt).
A client made with an ``http_client=`` of your own (``DefaultHttpxClient(proxy=...,
verify=..., headers=...)``, an httpx client with a transport or mounts of
yours) keeps it: that httpx client is wrapped in place, the rate-limited
transport put around each transport it sends through, so its proxies,
certificates, headers and limits stay. The same httpx client used elsewhere
is then rate-limited too, on the model endpoints only (other requests pass
through untouched); wrapping again (the wrapped client, or the original)
changes nothing, so nothing is counted twice. The SDKs are imported only
here, when a wrap function is called: ``pip install ratetrack[openai]`` /
``ratetrack[anthropic]``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Optional, Tuple

from .._tracker import Tracker
from ._http import Estimator, ModelName, Policy, classes, estimate_input_tokens

__all__ = [
    "anthropic_http_client",
    "estimate_input_tokens",
    "openai_http_client",
    "rate_limited_transport",
    "wrap_anthropic",
    "wrap_openai",
]


def _sdk(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"ratetrack.integrations needs the {name!r} package for this: pip install 'ratetrack[{name}]'"
        ) from exc


def _httpx_of(sdk: Any) -> Any:
    """The httpx module the SDK's clients are made of (``httpx2`` for openai
    3.x and anthropic 2.x, ``httpx`` before)."""
    for cls in inspect.getmro(sdk.DefaultHttpxClient):
        top = cls.__module__.split(".")[0]
        if top.startswith("httpx") and cls.__name__ == "Client":
            return importlib.import_module(top)
    raise TypeError(f"{sdk.__name__}.DefaultHttpxClient is not an httpx client")


def _limits(sdk: Any) -> Any:
    base = importlib.import_module(sdk.__name__ + "._base_client")
    return getattr(base, "DEFAULT_CONNECTION_LIMITS", None)


def rate_limited_transport(
    provider: str,
    tracker: Optional[Tracker] = None,
    *,
    is_async: bool = False,
    inner: Any = None,
    httpx_module: Any = None,
    timeout: Optional[float] = None,
    model_name: ModelName = None,
    estimate: Optional[Estimator] = None,
    default_output_tokens: int = 0,
    stream_usage: bool = True,
) -> Any:
    """The transport alone, to build your own httpx client with (proxies,
    certificates...): ``inner`` is the transport it sends through (default: a
    new ``HTTPTransport`` / ``AsyncHTTPTransport`` of ``httpx_module``, which
    defaults to the provider SDK's httpx). ``provider``: ``"openai"`` or
    ``"anthropic"`` (which endpoints, which usage, the model prefix).
    Other arguments: see :func:`wrap_openai`."""
    policy = Policy(provider, tracker, timeout, model_name, estimate, default_output_tokens, stream_usage)
    sdk = _sdk(provider)
    policy.error_base = getattr(sdk, "OpenAIError", None) or getattr(sdk, "AnthropicError", None)
    httpx = httpx_module if httpx_module is not None else _httpx_of(sdk)
    sync_cls, async_cls = classes(httpx)
    if inner is None:
        limits = _limits(_sdk(provider)) if httpx_module is None else None
        kwargs = {} if limits is None else {"limits": limits}
        inner = httpx.AsyncHTTPTransport(**kwargs) if is_async else httpx.HTTPTransport(**kwargs)
    return async_cls(inner, policy) if is_async else sync_cls(inner, policy)


def _http_client(sdk_name: str, is_async: bool, tracker: Optional[Tracker], **options: Any) -> Any:
    """The SDK's default httpx client, as the SDK would make it (its
    connection limits, and the proxies of the environment: ``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), with the rate-limited
    transport around each transport it sends through: the direct one and one
    per proxy. (Given ``transport=``, httpx ignores the environment's
    proxies: the requests of a user behind one went around it.)"""
    sdk = _sdk(sdk_name)
    factory = sdk.DefaultAsyncHttpxClient if is_async else sdk.DefaultHttpxClient
    client = factory()
    _wrap_in_place(sdk_name, client, is_async, tracker, options)
    return client


def openai_http_client(tracker: Optional[Tracker] = None, *, is_async: bool = False, **options: Any) -> Any:
    """``openai.DefaultHttpxClient`` (``DefaultAsyncHttpxClient`` with
    ``is_async``) with the rate-limited transport: for
    ``openai.OpenAI(http_client=...)``. Options: see :func:`wrap_openai`."""
    return _http_client("openai", is_async, tracker, **options)


def anthropic_http_client(tracker: Optional[Tracker] = None, *, is_async: bool = False, **options: Any) -> Any:
    """``anthropic.DefaultHttpxClient`` (or the async one) with the
    rate-limited transport, for ``anthropic.Anthropic(http_client=...)``."""
    return _http_client("anthropic", is_async, tracker, **options)


def _is_async(client: Any) -> bool:
    post = getattr(client, "post", None)
    if post is None or not callable(getattr(client, "with_options", None)):
        raise TypeError(f"not an SDK client: {type(client).__name__}")
    return inspect.iscoroutinefunction(post)


def _sdk_default_client_classes(sdk: Any) -> Tuple[type, ...]:
    """The classes of the httpx client an SDK client makes for itself when
    given no ``http_client`` (``SyncHttpxClientWrapper`` /
    ``AsyncHttpxClientWrapper`` of its ``_base_client``)."""
    base = importlib.import_module(sdk.__name__ + "._base_client")
    return tuple(
        cls for cls in (getattr(base, name, None) for name in ("SyncHttpxClientWrapper", "AsyncHttpxClientWrapper"))
        if isinstance(cls, type)
    )


def _httpx_of_client(http_client: Any) -> Any:
    """The httpx module (``httpx2`` or ``httpx``) an httpx client is made of."""
    for cls in inspect.getmro(type(http_client)):
        top = cls.__module__.split(".")[0]
        if top.startswith("httpx") and cls.__name__ in ("Client", "AsyncClient"):
            return importlib.import_module(top)
    raise TypeError(f"the SDK client's http client is not an httpx client: {type(http_client).__name__}")


def _is_ours(transport: Any) -> bool:
    from ._http import _CLASSES

    return isinstance(transport, tuple(cls for pair in _CLASSES.values() for cls in pair))


def _wrap_in_place(sdk_name: str, http_client: Any, is_async: bool, tracker: Optional[Tracker], options: Any) -> None:
    """Puts the rate-limited transport around each transport ``http_client``
    sends through (its ``_transport`` and every ``_mounts`` value: the proxies
    it was made with), keeping the client itself: its proxies, certificates,
    headers, limits and event hooks. A transport already wrapped (by an
    earlier wrap) is left as it is."""
    httpx = _httpx_of_client(http_client)
    policy: Any = None

    def wrap(inner: Any) -> Any:
        nonlocal policy
        if inner is None or _is_ours(inner):
            return inner
        if policy is None:
            transport = rate_limited_transport(
                sdk_name, tracker, is_async=is_async, inner=inner, httpx_module=httpx, **options
            )
            policy = transport.policy
            return transport
        sync_cls, async_cls = classes(httpx)
        return (async_cls if is_async else sync_cls)(inner, policy)

    http_client._transport = wrap(http_client._transport)
    http_client._mounts = {pattern: wrap(inner) for pattern, inner in http_client._mounts.items()}


def _wrap(sdk_name: str, client: Any, tracker: Optional[Tracker], options: Any) -> Any:
    sdk = _sdk(sdk_name)
    expected: Tuple[type, ...] = tuple(
        getattr(sdk, name) for name in ("OpenAI", "AsyncOpenAI", "Anthropic", "AsyncAnthropic") if hasattr(sdk, name)
    )
    if not isinstance(client, expected) and not type(client).__module__.startswith(sdk_name):
        raise TypeError(f"wrap_{sdk_name} needs a {sdk_name} client, not {type(client).__name__}")
    is_async = _is_async(client)
    own = getattr(client, "_client", None)
    if own is None or isinstance(own, _sdk_default_client_classes(sdk)):
        # The SDK's own default: a new httpx client as the SDK makes it, the
        # client given untouched.
        http_client = _http_client(sdk_name, is_async, tracker, **options)
        return client.with_options(http_client=http_client)
    # The user's http_client= (or one already wrapped): wrapped in place.
    _wrap_in_place(sdk_name, own, is_async, tracker, options)
    return client.with_options(http_client=own)


def wrap_openai(
    client: Any,
    tracker: Optional[Tracker] = None,
    *,
    timeout: Optional[float] = None,
    model_name: ModelName = None,
    estimate: Optional[Estimator] = None,
    default_output_tokens: int = 0,
    stream_usage: bool = True,
) -> Any:
    """``client`` (``openai.OpenAI`` or ``AsyncOpenAI``, Azure's too) under
    ``tracker`` (default: the global tracker), as a new client of the same
    class (``client.with_options(http_client=...)``).

    A client with the SDK's default httpx client gets a new one, made as the
    SDK makes it, and ``client`` itself is left as it was. A client made with
    an ``http_client=`` of yours keeps it, wrapped in place: its proxies,
    certificates, headers and limits stay, and every user of that httpx
    client (``client`` too) is rate-limited on the model endpoints, its other
    requests passing through untouched. A client already wrapped is not
    wrapped again (its first wrap's tracker and options stay): nothing is
    counted twice.

    ``timeout``: seconds an attempt waits for room (None: as long as it
    takes; 0: fail fast); past it, ``ratetrack.AcquireTimeout`` (a
    ``TimeoutError``) is raised from the SDK call, which the SDK does not
    retry. ``model_name``: how a request's model id is named for the tracker
    (default ``"openai/" + id``; a dict, or a function of the id).
    ``estimate``: a function of the request's JSON body giving its input
    tokens (default :func:`estimate_input_tokens`: characters / 4).
    ``default_output_tokens``: the output reserved when the request sets no
    ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``.
    ``stream_usage``: add ``stream_options={"include_usage": true}`` to
    streaming chat completions that do not ask for it, so that the real
    usage is settled (the stream then ends with one chunk whose ``choices``
    is empty, as OpenAI documents)."""
    return _wrap("openai", client, tracker, dict(
        timeout=timeout, model_name=model_name, estimate=estimate,
        default_output_tokens=default_output_tokens, stream_usage=stream_usage,
    ))


def wrap_anthropic(
    client: Any,
    tracker: Optional[Tracker] = None,
    *,
    timeout: Optional[float] = None,
    model_name: ModelName = None,
    estimate: Optional[Estimator] = None,
    default_output_tokens: int = 0,
) -> Any:
    """``client`` (``anthropic.Anthropic`` or ``AsyncAnthropic``) under
    ``tracker``: as :func:`wrap_openai` (an ``http_client=`` of yours kept
    and wrapped in place), with models named ``"anthropic/" + id``. Streams always carry their usage (``message_start`` the input,
    ``message_delta`` the output)."""
    return _wrap("anthropic", client, tracker, dict(
        timeout=timeout, model_name=model_name, estimate=estimate,
        default_output_tokens=default_output_tokens,
    ))
