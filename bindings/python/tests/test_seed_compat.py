"""ratetrack.global_rate_tracker: the seed's names and dict shapes over the
one global tracker (the seed's own 8 singleton tests, rewritten against it)."""

from __future__ import annotations

import pytest

import ratetrack
from ratetrack import global_rate_tracker as grt
from conftest import MODEL


@pytest.fixture
def clean(clean_global: None):
    grt.reset_global_rate_tracker()
    yield
    grt.reset_global_rate_tracker()


def test_singleton_same_instance(clean: None) -> None:
    assert grt.get_global_rate_tracker("tier1") is grt.get_global_rate_tracker("tier1")
    assert grt.get_global_rate_tracker() is grt.get_global_rate_tracker("tier1")


def test_shared_state_and_the_seed_scenario(clean: None) -> None:
    main = grt.get_global_rate_tracker("tier1")
    tool = grt.get_global_rate_tracker("tier1")
    for _ in range(400):
        main.record_request(MODEL, tokens_used=100)
    assert tool.can_make_request(MODEL, 100)  # 400 < 500 RPM
    for _ in range(100):
        tool.record_request(MODEL, tokens_used=100)
    assert not main.can_make_request(MODEL, 100)  # 500 >= 500 RPM
    stats = grt.get_global_rate_tracker("tier1").get_usage_stats(MODEL)
    assert stats["requests_per_minute"]["current"] == 500
    assert stats["requests_per_minute"]["limit"] == 500
    assert stats["tokens_per_minute"]["current"] == 50000
    # the same state through the binding's own global handle (and C's)
    assert ratetrack.global_tracker().stats()["models"][MODEL]["requests_per_minute"]["current"] == 500


def test_usage_stats_shape(clean: None) -> None:
    tracker = grt.get_global_rate_tracker("tier1")
    stats = tracker.get_usage_stats(MODEL)
    for window in ("requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day"):
        assert set(stats[window]) >= {"current", "limit", "remaining", "usage_percent"}
    assert stats["requests_per_minute"]["current"] == 0
    unknown = tracker.get_usage_stats("acme/never-used")
    assert unknown["requests_per_minute"] == {"current": 0, "limit": None, "remaining": None, "usage_percent": None}
    assert tracker.can_make_request("acme/never-used", 10**12)  # no limits: always
    with pytest.raises(ratetrack.InvalidArgument):
        tracker.get_usage_stats("bad\0name")


def test_tier_change_gives_a_new_object_with_the_new_limits(clean: None) -> None:
    t1 = grt.get_global_rate_tracker("tier1")
    t1.record_request(MODEL, 10)
    t2 = grt.get_global_rate_tracker("tier2")
    assert t2 is not t1
    stats = t2.get_usage_stats(MODEL)
    assert stats["requests_per_minute"]["limit"] != 500  # tier2's limit
    assert stats["requests_per_minute"]["current"] == 1  # usage kept (the provider still counts it)


def test_reset_and_stats_before_creation(clean: None) -> None:
    assert grt.get_global_rate_tracker_stats() is None
    tracker = grt.get_global_rate_tracker("tier1")
    tracker.record_request(MODEL, 100)
    all_stats = grt.get_global_rate_tracker_stats()
    assert all_stats is not None and all_stats[MODEL]["requests_per_minute"]["current"] == 1
    grt.reset_global_rate_tracker()
    assert grt.get_global_rate_tracker_stats() is None
    again = grt.get_global_rate_tracker("tier1")
    assert again is not tracker
    assert again.get_usage_stats(MODEL)["requests_per_minute"]["current"] == 0


def test_bad_tier_and_bad_counts(clean: None) -> None:
    with pytest.raises(ratetrack.ConfigError):
        grt.get_global_rate_tracker("no-such-tier")
    with pytest.raises(ratetrack.InvalidArgument):
        grt.get_global_rate_tracker("tier1\0")
    tracker = grt.get_global_rate_tracker("tier1")
    with pytest.raises(ratetrack.InvalidArgument):
        tracker.record_request(MODEL, -1)
    with pytest.raises(TypeError):
        tracker.can_make_request(MODEL, 1.5)  # type: ignore[arg-type]
