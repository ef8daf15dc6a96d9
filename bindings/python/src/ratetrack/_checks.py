"""The binding's checks of what it passes to C: everything the C API cannot
represent is refused here, never truncated, wrapped or dropped.

ctypes would otherwise silently cut a ``str`` at its first NUL, wrap an int to
64 (or 32) bits, and JSON would carry NaN into a configuration. One rule per
kind of value, used by every entry point:

* wrong type (a float or bool for a count, a non-str model...): ``TypeError``;
* a count outside 0..2**64-1, a timeout that is negative, NaN or infinite, a
  NUL character in a string: :class:`InvalidArgument` (a ``ValueError``);
* the same inside a configuration (a dict's NaN, infinity or NUL, or a NUL in
  JSON text): :class:`ConfigError` (a ``ValueError``);
* a ``str`` that is not valid Unicode (a lone surrogate such as ``"\\ud800"``):
  ``UnicodeEncodeError`` (a ``ValueError``), its reason naming the argument;
  bytes that are not UTF-8, where bytes are taken (``retry_after``):
  ``UnicodeDecodeError``, the same way.

Model names are encoded once per distinct ``str`` and cached, so the hot path
(``try_acquire``) pays a dict lookup, not a scan and an encode.
"""

from __future__ import annotations

import json
import math
import operator
import os
from typing import Any, Dict, Mapping, Optional, Union

from .errors import RT_E_CONFIG, RT_E_INVALID, ConfigError, InvalidArgument

U64_MAX = (1 << 64) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1

#: Encoded model names by str. Bounded: cleared when it grows past _MODELS_MAX
#: (a caller inventing a name per call must not grow it forever).
_models: Dict[str, bytes] = {}
_MODELS_MAX = 4096


def text(value: object, what: str, allow_bytes: bool = False) -> bytes:
    """A str (or, with ``allow_bytes``, UTF-8 bytes) for a ``const char *``
    argument, as UTF-8."""
    if allow_bytes and isinstance(value, bytes):
        if b"\0" in value:
            raise InvalidArgument(f"{what} must not contain NUL characters: {value!r}", RT_E_INVALID)
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            exc.reason = f"{what} is not UTF-8 ({exc.reason})"
            raise
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgument(f"{what} must not contain NUL characters: {value!r}", RT_E_INVALID)
    return utf8(value, what)


def utf8(value: str, what: str) -> bytes:
    """``value.encode("utf-8")``; a lone surrogate is a UnicodeEncodeError naming ``what``."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        exc.reason = f"{what} is not valid Unicode ({exc.reason}); libratetrack needs UTF-8"
        raise


def model(name: str) -> bytes:
    """A model name as UTF-8 (cached per str: a hit is a dict lookup, no re-check)."""
    try:
        return _models[name]
    except (KeyError, TypeError):  # TypeError: unhashable, so not a str either
        pass
    raw = text(name, "model")
    if type(name) is str:  # a str subclass could compare equal to another text
        if len(_models) >= _MODELS_MAX:
            _models.clear()
        _models[name] = raw
    return raw


def u64(value: object, what: str) -> int:
    """A count for a ``uint64_t`` argument: an int (or an object with
    ``__index__``) in 0..2**64-1; bool is refused, not taken as 0 or 1."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}") from None
    if not 0 <= number <= U64_MAX:
        raise InvalidArgument(f"{what} must be in 0..2**64-1, got {number}", RT_E_INVALID)
    return number


def c_int(value: object, what: str) -> int:
    """An int for an ``int`` argument, in the C int's range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not _INT_MIN <= value <= _INT_MAX:
        raise InvalidArgument(f"{what} must be in -2**31..2**31-1, got {value}", RT_E_INVALID)
    return int(value)


def seconds(value: object, what: str) -> float:
    """A finite, non-negative number of seconds (int or float, not bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if isinstance(value, int):
        if value < 0:
            raise InvalidArgument(f"{what} must be >= 0 seconds, got {value}", RT_E_INVALID)
        return float(min(value, 1 << 62))  # beyond any real wait; float() of 10**400 would overflow
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{what} must be a finite number >= 0 seconds, got {value}", RT_E_INVALID)
    return value


def timeout(value: object) -> Optional[float]:
    """A blocking acquire's timeout: None (no timeout) or :func:`seconds`.
    ``float("inf")`` is refused, not read as "no timeout": pass None for that."""
    return None if value is None else seconds(value, "timeout")


def path(value: "Union[str, bytes, os.PathLike[Any]]", what: str = "path") -> str:
    """A file path for dlopen, as str (bytes through os.fsdecode, so any file
    name survives); a NUL is refused (the loader would stop at it)."""
    p = os.fsdecode(os.fspath(value))
    if "\0" in p:
        raise InvalidArgument(f"{what} must not contain NUL characters: {p!r}", RT_E_INVALID)
    return p


def config(value: "Optional[Union[Mapping[str, Any], str]]") -> Optional[bytes]:
    """A configuration as JSON text for C: a str is sent as is (a NUL in it is
    refused), a mapping is serialised with NaN, infinities and NUL characters
    refused (json.dumps would write NaN / Infinity, and a key with a NUL names
    a model no call can reach)."""
    if value is None:
        return None
    if isinstance(value, str):
        if "\0" in value:
            raise ConfigError("configuration text must not contain NUL characters", RT_E_CONFIG)
        return utf8(value, "configuration")
    if not isinstance(value, Mapping):
        raise TypeError(f"configuration must be a dict or JSON text, not {type(value).__name__}")
    _walk(value, "", 0)
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:  # a circular reference (non-finite floats were found above)
        raise ConfigError(f"configuration: {exc}", RT_E_CONFIG) from None
    return utf8(encoded, "configuration")


def _walk(node: object, where: str, depth: int) -> None:
    """Refuses a non-finite float or a NUL in a key or string anywhere in ``node``."""
    if isinstance(node, str):
        if "\0" in node:
            raise ConfigError(f"configuration: {where or 'value'} contains a NUL character", RT_E_CONFIG)
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise ConfigError(
                f"configuration: {where or 'value'} is {node}; a limit is a non-negative integer "
                "or None (unlimited)",
                RT_E_CONFIG,
            )
    elif depth > 64:
        return  # deeper than any configuration: json.dumps reports a cycle
    elif isinstance(node, Mapping):
        for key, child in node.items():
            name = f"{where}.{key}" if where else str(key)
            if isinstance(key, (str, float)):
                _walk(key, f"key {name!r}", depth + 1)
            _walk(child, name, depth + 1)
    elif isinstance(node, (list, tuple)):
        for i, child in enumerate(node):
            _walk(child, f"{where}[{i}]", depth + 1)
