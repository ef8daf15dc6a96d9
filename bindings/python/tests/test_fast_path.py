"""ratetrack._fast, the extension module for the hot calls, and its ctypes fallback.

run-tests.sh runs the whole suite twice: with RATETRACK_PYTHON_FAST=1 and the
module built (the first test fails if it is not the one in use), then with
RATETRACK_PYTHON_FAST=0 (the first test fails if it is). The other tests here
compare the two paths call by call in one process, where the module is
active: same results, same exceptions with the same messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable, List, Tuple

import pytest

import ratetrack
from ratetrack import _library

M = "acme/m"
CONFIG = {
    "builtin_tiers": False,
    "limits": {
        M: {"rpm": 5, "tpm": 10**6, "itpm": 10**6, "otpm": 10**6},
        "acme/\u00e9": {"rpm": 5},
    },
}


def test_the_path_asked_for_is_the_one_in_use(library_path: str) -> None:
    asked = os.environ.get(_library.FAST_ENV_VAR)
    if asked is None:
        pytest.skip("RATETRACK_PYTHON_FAST is not set (run-tests.sh sets it to 1, then 0)")
    assert _library.fast_path() is (asked != "0"), _library.fast_path_reason()
    with ratetrack.open(CONFIG) as t:
        assert (t._fast is not None) is (asked != "0")
        assert t._fast in (None, t._handle)
    if asked == "0":
        assert _library.fast_path_reason() == "ctypes: $RATETRACK_PYTHON_FAST=0"
    else:
        assert _library.fast_path_reason().startswith("ratetrack._fast (")


needs_fast = pytest.mark.skipif(
    os.environ.get(_library.FAST_ENV_VAR) == "0" or _library.FAST_MODULE is None,
    reason="ratetrack._fast is not built or not in use (the ctypes pass)",
)


class Index:
    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class Text(str):
    pass


Call = Callable[[ratetrack.Tracker], Any]
BAD_COUNTS: List[Any] = [-1, 2**64, 2**64 + 5, -(2**70), True, False, 1.0, None, "1", Index(3), Index(-1)]
BAD_MODELS: List[Any] = ["acme/m\0x", "acme/\ud800", "", "no-slash", b"acme/m", None, 5, Text(M), "x" * 300]


def _calls() -> List[Tuple[str, Call]]:
    """Every hot call, with good and with hostile arguments."""
    calls: List[Tuple[str, Call]] = []
    good = ratetrack.Grant(M, 1, 1)
    for n in [0, 7, 2**31, 2**63, 2**64 - 1] + BAD_COUNTS:
        calls += [
            (f"try_acquire(M, {n!r})", lambda t, n=n: t.try_acquire(M, n)),
            (f"try_acquire_grant(M, {n!r})", lambda t, n=n: t.try_acquire_grant(M, n)),
            (f"try_acquire_io(M, {n!r}, 1)", lambda t, n=n: t.try_acquire_io(M, n, 1)),
            (f"try_acquire_io(M, 1, {n!r})", lambda t, n=n: t.try_acquire_io(M, 1, n)),
            (f"can_make(M, {n!r})", lambda t, n=n: t.can_make(M, n)),
            (f"record(M, {n!r})", lambda t, n=n: t.record(M, n)),
            (f"record_tokens(M, {n!r}, 1)", lambda t, n=n: t.record_tokens(M, n, 1)),
            (f"record_tokens(M, 1, {n!r})", lambda t, n=n: t.record_tokens(M, 1, n)),
            (f"wait_time(M, {n!r})", lambda t, n=n: t.wait_time(M, n)),
            (f"settle(grant, {n!r})", lambda t, n=n: t.settle(good, n)),
            (f"settle(ticket {n!r})", lambda t, n=n: t.settle(ratetrack.Grant(M, n, 1), 1)),
            (f"settle_io(grant, 1, {n!r})", lambda t, n=n: t.settle_io(good, 1, n)),
            (f"settle_io(output {n!r})", lambda t, n=n: t.settle_io(ratetrack.Grant(M, 1, 1, n), 1, 1)),
        ]
    for m in BAD_MODELS + ["acme/\u00e9", "other/unknown"]:
        calls += [
            (f"try_acquire({m!r})", lambda t, m=m: t.try_acquire(m, 1)),
            (f"try_acquire_grant({m!r})", lambda t, m=m: t.try_acquire_grant(m, 1)),
            (f"try_acquire_io({m!r})", lambda t, m=m: t.try_acquire_io(m, 1, 1)),
            (f"can_make({m!r})", lambda t, m=m: t.can_make(m, 1)),
            (f"record({m!r})", lambda t, m=m: t.record(m, 1)),
            (f"record_tokens({m!r})", lambda t, m=m: t.record_tokens(m, 1, 1)),
            (f"wait_time({m!r})", lambda t, m=m: t.wait_time(m, 1)),
            (f"settle(model {m!r})", lambda t, m=m: t.settle(ratetrack.Grant(m, 1, 1), 1)),
            (f"settle_io(model {m!r})", lambda t, m=m: t.settle_io(ratetrack.Grant(m, 1, 1), 1, 1)),
        ]
    calls += [  # too large outright, never fits
        ("try_acquire(M, 10**7)", lambda t: t.try_acquire(M, 10**7)),
        ("can_make(M, 10**7)", lambda t: t.can_make(M, 10**7)),
        ("wait_time(M, 10**7)", lambda t: t.wait_time(M, 10**7)),
        ("settle(not a grant)", lambda t: t.settle(object(), 1)),  # type: ignore[arg-type]
        ("settle_io(not a grant)", lambda t: t.settle_io(object(), 1)),  # type: ignore[arg-type]
    ]
    return calls


def _outcome(call: Call, tracker: ratetrack.Tracker) -> Any:
    try:
        result = call(tracker)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome
        return ("raised", type(exc), str(exc), getattr(exc, "code", None))
    # Tickets differ between trackers, and a wait by the millisecond between
    # two calls; the rest must not.
    if isinstance(result, ratetrack.Acquire):
        grant = result.grant
        return ("result", result.ok, type(result.retry_after), result.retry_after > 0,
                None if grant is None else (grant.model, grant.tokens, grant.output_tokens,
                                            type(grant.ticket), grant.ticket > 0))
    if isinstance(result, float):
        return ("result", float, result > 0)
    return ("result", type(result), result)


@needs_fast
def test_both_paths_give_the_same_results_and_errors(library_path: str) -> None:
    # Two trackers in the same state: every call goes through ratetrack._fast
    # on one, through ctypes on the other, in the same order.
    with ratetrack.open(CONFIG) as fast, ratetrack.open(CONFIG) as slow:
        assert fast._fast == fast._handle
        slow._fast = None
        compared = 0
        for name, call in _calls():
            assert _outcome(call, fast) == _outcome(call, slow), name
            compared += 1
        assert fast.stats()["models"] == slow.stats()["models"]
        assert compared > 200
        assert not fast.try_acquire(M) and not slow.try_acquire(M)  # rpm 5, long spent
    assert fast._fast is None  # closed
    # Closed: the same errors again (the closed check, or an earlier one).
    for name, call in _calls():
        outcome = _outcome(call, fast)
        assert outcome == _outcome(call, slow), name
        assert outcome[0] == "raised", (name, outcome)


@needs_fast
def test_the_fast_path_is_taken(library_path: str) -> None:
    # The ctypes path is not silently taken for plain arguments: with the
    # ctypes functions made unusable, the fast path still answers.
    with ratetrack.open(CONFIG) as t:
        t._raw = None  # type: ignore[assignment]
        t._lib = None  # type: ignore[assignment]
        assert t.try_acquire(M, 10)
        acquired = t.try_acquire_grant(M, 10)
        assert acquired.grant is not None and acquired.grant.tokens == 10
        t.settle(acquired.grant, 5)
        io = t.try_acquire_io(M, 10, 20)
        assert io.grant is not None and io.grant.output_tokens == 20
        t.settle_io(io.grant, 10, 3)
        assert t.can_make(M, 10) in (True, False)
        t.record(M, 1)
        t.record(M, 1)  # the 5th request of rpm 5
        t.record_tokens(M, 1, 1)
        assert t.wait_time(M, 1) >= 0.0
        refused = t.try_acquire(M, 1)
        assert not refused and refused.retry_after > 0
        with pytest.raises(AttributeError):  # and the checked path would have needed them
            t.try_acquire(M, Index(1))


@needs_fast
def test_the_module_refuses_what_it_does_not_take(library_path: str) -> None:
    fast = _library.FAST_MODULE
    assert fast is not None and fast.bound()
    assert fast.floor() == ratetrack.version_number()
    # No handle, or not in the fast form: NotImplemented, nothing called.
    for handle in (None, 0, -5, True, "1", 1.5, 2**64):
        assert fast.try_acquire(handle, M, 1) is NotImplemented
    with pytest.raises(TypeError, match="takes 3 arguments"):
        fast.try_acquire(None, M)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 7 arguments"):
        fast.settle_io(None, M, 1, 1, 1, 1)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="another library"):
        fast.bind(1)


def _run(code: str, **env: str) -> str:
    environ = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_without_the_module_every_call_goes_through_ctypes(library_path: str) -> None:
    # A source tree has no ratetrack._fast: the binding falls back, and says why.
    code = """
import sys
sys.modules["ratetrack._fast"] = None  # import fails, as where it is not built
import ratetrack
from ratetrack import _library
with ratetrack.open({"builtin_tiers": False, "limits": {"acme/m": {"rpm": 1}}}) as t:
    assert t.try_acquire("acme/m", 1) and not t.try_acquire("acme/m", 1)
    assert t._fast is None
print(_library.fast_path(), _library.fast_path_reason())
"""
    out = _run(code, RATETRACK_PYTHON_FAST="1")
    assert out.startswith("False ctypes: ratetrack._fast is not built here ("), out


def test_the_environment_variable_forces_ctypes(library_path: str) -> None:
    code = "from ratetrack import _library; print(_library.fast_path(), _library.fast_path_reason())"
    assert _run(code, RATETRACK_PYTHON_FAST="0") == "False ctypes: $RATETRACK_PYTHON_FAST=0"
    if _library.FAST_MODULE is not None:
        assert _run(code, RATETRACK_PYTHON_FAST="1").startswith("True ratetrack._fast (")
