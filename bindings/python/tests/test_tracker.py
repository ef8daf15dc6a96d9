"""Private trackers: every API call and every error kind the library can produce."""

from __future__ import annotations

import dataclasses

import pytest

import ratetrack
from conftest import MODEL, short_window

SMALL = {"builtin_tiers": False, "limits": {"acme/m": {"rpm": 100, "tpm": 1000}}}


@pytest.fixture
def tracker(library_path: str):
    with ratetrack.open(SMALL) as t:
        yield t


def test_open_defaults_and_builtin_tier(library_path: str) -> None:
    with ratetrack.open() as t:
        assert t.can_make(MODEL, 100)
        t.record(MODEL, 100)
        window = t.stats()["models"][MODEL]["requests_per_minute"]
        assert window["current"] == 1 and window["limit"] == 500 and window["remaining"] == 499
    with ratetrack.open('{"tier": "tier1"}') as t:
        assert not t.is_global


def test_stats_are_native_data(tracker: ratetrack.Tracker) -> None:
    tracker.record("acme/m", 250)
    tracker.record("other/unlimited", 7)  # unknown model: admitted and tracked
    stats = tracker.stats()
    assert stats["backend"] == "memory"
    acme = stats["models"]["acme/m"]
    assert acme["requests_per_minute"] == {"current": 1, "limit": 100, "remaining": 99, "usage_percent": 1.0}
    assert acme["tokens_per_minute"]["current"] == 250
    assert acme["tokens_per_minute"]["remaining"] == 750
    assert acme["tokens_per_minute"]["usage_percent"] == pytest.approx(25.0)
    other = stats["models"]["other/unlimited"]
    for window in other.values():
        # An unlimited window: limit, remaining and usage_percent are all None.
        assert window["limit"] is None and window["remaining"] is None
        assert window["usage_percent"] is None
    assert any(w["current"] == 7 for w in other.values())


def test_try_acquire_result(tracker: ratetrack.Tracker) -> None:
    ok = tracker.try_acquire("acme/m", 600)
    assert ok and ok.ok and ok.retry_after == 0.0 and ok.grant is None
    no = tracker.try_acquire("acme/m", 600)
    assert not no and no.retry_after > 0
    assert tracker.stats()["models"]["acme/m"]["tokens_per_minute"]["current"] == 600
    tracker.reset()
    assert tracker.try_acquire("acme/m", 600)


def _grant(t: ratetrack.Tracker, tokens: int, model: str = "acme/m") -> ratetrack.Grant:
    result = t.try_acquire_grant(model, tokens)
    assert result and result.grant is not None
    grant = result.grant
    assert grant.model == model and grant.tokens == tokens and grant.ticket != 0
    return grant


def _tpm(t: ratetrack.Tracker) -> int:
    current: int = t.stats()["models"]["acme/m"]["tokens_per_minute"]["current"]
    return current


def test_settle_refund_gives_capacity_back(tracker: ratetrack.Tracker) -> None:
    grant = _grant(tracker, 800)  # tpm 1000
    assert not tracker.can_make("acme/m", 300)
    assert tracker.wait_time("acme/m", 300) > 0
    tracker.settle(grant, 100)
    assert _tpm(tracker) == 100
    assert tracker.can_make("acme/m", 900)
    assert not tracker.can_make("acme/m", 901)
    assert tracker.wait_time("acme/m", 300) == 0.0
    assert tracker.try_acquire("acme/m", 900)
    assert tracker.stats()["models"]["acme/m"]["requests_per_minute"]["current"] == 2


def test_settle_top_up_counts_against_the_window(tracker: ratetrack.Tracker) -> None:
    grant = _grant(tracker, 100)
    assert tracker.can_make("acme/m", 900)
    tracker.settle(grant, 400)  # the request used more than it was admitted with
    assert _tpm(tracker) == 400
    assert tracker.can_make("acme/m", 600)
    assert not tracker.can_make("acme/m", 601)
    assert tracker.stats()["models"]["acme/m"]["requests_per_minute"]["current"] == 1  # no extra request


def test_settle_with_a_wrong_granted_count_is_invalid(tracker: ratetrack.Tracker) -> None:
    grant = _grant(tracker, 800)
    before = tracker.stats()
    for tokens in (799, 801, 0, 100):
        with pytest.raises(ratetrack.InvalidArgument) as info:
            tracker.settle(dataclasses.replace(grant, tokens=tokens), 100)
        assert info.value.code == -1 and info.value.message
        assert tracker.stats() == before  # nothing changed
    tracker.settle(grant, 100)  # the untouched grant still settles
    assert _tpm(tracker) == 100


def test_settle_a_ticket_from_another_tracker_is_invalid(tracker: ratetrack.Tracker) -> None:
    with ratetrack.open(SMALL) as other:
        foreign = _grant(other, 800)  # same config, model and tokens: only the tracker differs
        own = _grant(tracker, 800)
        before, other_before = tracker.stats(), other.stats()
        with pytest.raises(ratetrack.InvalidArgument) as info:
            tracker.settle(foreign, 100)
        assert info.value.code == -1
        with pytest.raises(ratetrack.InvalidArgument):
            other.settle(own, 100)
        assert tracker.stats() == before and other.stats() == other_before
        other.settle(foreign, 100)  # each grant settles on its own tracker
        tracker.settle(own, 200)
        assert _tpm(other) == 100 and _tpm(tracker) == 200


def test_settle_a_zero_or_forged_ticket_is_invalid(tracker: ratetrack.Tracker) -> None:
    grant = _grant(tracker, 800)
    before = tracker.stats()
    for ticket in (0, grant.ticket ^ 1, (grant.ticket + (1 << 40)) % (1 << 64), (1 << 64) - 1):
        with pytest.raises(ratetrack.InvalidArgument):
            tracker.settle(dataclasses.replace(grant, ticket=ticket), 100)
    assert tracker.stats() == before
    with pytest.raises(ratetrack.InvalidArgument):
        tracker.settle(dataclasses.replace(grant, model=""), 100)
    assert tracker.stats() == before


def test_wait_time(library_path: str) -> None:
    # A 20 s window: the answers stay well inside their bounds even if this
    # process is descheduled for seconds between the calls (shared machine).
    with ratetrack.open(short_window(1, seconds=20)) as t:
        assert t.wait_time("acme/m") == 0.0
        assert t.try_acquire("acme/m")
        # Windows are bucketed (about 1/60 of the span, plus a guard): the answers
        # are conservative, a little over the window's 20 s.
        wait = t.wait_time("acme/m")
        assert 12.0 < wait <= 22.0
        refused = t.try_acquire("acme/m")
        assert 12.0 < refused.retry_after <= 22.0


def test_configure(tracker: ratetrack.Tracker) -> None:
    tracker.configure({"limits": {"acme/m": {"rpm": 1}}})
    assert tracker.try_acquire("acme/m")
    assert not tracker.try_acquire("acme/m")
    with pytest.raises(ratetrack.ConfigError):
        tracker.configure({"limits": {"acme/m": {"rpm": "many"}}})
    with pytest.raises(ratetrack.ConfigError):
        tracker.configure("[")


def test_invalid_empty_model(tracker: ratetrack.Tracker) -> None:
    for call in (
        lambda: tracker.can_make(""),
        lambda: tracker.record(""),
        lambda: tracker.try_acquire(""),
        lambda: tracker.try_acquire_grant(""),
        lambda: tracker.wait_time(""),
        lambda: tracker.acquire("", timeout=0),
    ):
        with pytest.raises(ratetrack.InvalidArgument) as info:
            call()
        assert info.value.code == -1
        assert info.value.message  # rt_last_error's text


def test_invalid_arguments_checked_by_the_binding(tracker: ratetrack.Tracker) -> None:
    with pytest.raises(ratetrack.InvalidArgument):
        tracker.record("acme/m", -1)
    with pytest.raises(ratetrack.InvalidArgument):
        tracker.try_acquire("acme/m", -1)
    with pytest.raises(ratetrack.InvalidArgument):
        tracker.can_make("acme/\0m")
    with pytest.raises(TypeError):
        tracker.can_make(None)  # type: ignore[arg-type]


def test_config_errors(library_path: str) -> None:
    with pytest.raises(ratetrack.ConfigError) as info:
        ratetrack.open("{bad json")
    assert info.value.code == -2 and info.value.message
    with pytest.raises(ratetrack.ConfigError) as info:
        ratetrack.open({"no_such_key": True})
    assert "no_such_key" in info.value.message
    with pytest.raises(ratetrack.ConfigError):
        ratetrack.open({"tier": "no-such-tier"})


def test_too_large(library_path: str) -> None:
    with ratetrack.open({"tier": "tier1"}) as t:
        too_many = 200_001  # over tier1's tpm for gpt-4o-mini
        for call in (
            lambda: t.can_make(MODEL, too_many),
            lambda: t.try_acquire(MODEL, too_many),
            lambda: t.try_acquire_grant(MODEL, too_many),
            lambda: t.wait_time(MODEL, too_many),
            lambda: t.acquire(MODEL, too_many),  # at once, no waiting
        ):
            with pytest.raises(ratetrack.TooLarge) as info:
                call()
            assert info.value.code == -3
        assert t.stats()["models"][MODEL]["requests_per_minute"]["current"] == 0


def test_closed_tracker(library_path: str) -> None:
    t = ratetrack.open(SMALL)
    assert not t.closed
    t.close()
    t.close()  # idempotent
    assert t.closed
    for call in (lambda: t.stats(), lambda: t.reset(), lambda: t.try_acquire("acme/m")):
        with pytest.raises(ratetrack.InvalidArgument):
            call()


def test_garbage_collected_trackers_are_closed(library_path: str) -> None:
    import gc

    for _ in range(1000):
        ratetrack.open(SMALL).record("acme/m", 1)
    gc.collect()
