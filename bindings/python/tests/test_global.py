"""The process-wide global tracker."""

from __future__ import annotations

import os

import pytest

import ratetrack
from conftest import MODEL


def test_one_global_per_process(clean_global: None) -> None:
    a = ratetrack.global_tracker("tier1")
    b = ratetrack.global_tracker()
    assert a.is_global and b.is_global
    assert a == b
    a.record(MODEL, 100)
    b.record(MODEL, 50)
    for t in (a, b):
        window = t.stats()["models"][MODEL]["requests_per_minute"]
        assert window["current"] == 2
        assert t.stats()["models"][MODEL]["tokens_per_minute"]["current"] == 150
    assert ratetrack.global_stats() == a.stats()


def test_seed_scenario_agent_and_tool_share_the_limit(clean_global: None) -> None:
    agent = ratetrack.global_tracker("tier1")
    tool = ratetrack.global_tracker()
    for i in range(400):  # the agent: half try_acquire, half record
        if i % 2:
            assert agent.try_acquire(MODEL, 10)
        else:
            agent.record(MODEL, 10)
    for _ in range(100):  # a tool of the agent, through its own handle
        assert tool.try_acquire(MODEL, 10)
    assert not agent.can_make(MODEL, 10)
    assert not tool.can_make(MODEL)
    refused = tool.try_acquire(MODEL, 10)
    assert not refused
    assert refused.ok is False
    assert refused.retry_after > 0
    assert refused.grant is None
    assert agent.wait_time(MODEL, 10) > 0
    rpm = ratetrack.global_stats()["models"][MODEL]["requests_per_minute"]  # type: ignore[index]
    assert rpm == {"current": 500, "limit": 500, "remaining": 0, "usage_percent": 100.0}
    stats = agent.stats()
    assert stats["tier"] == "tier1"
    assert stats["backend"] == "memory"
    assert stats["models"][MODEL]["tokens_per_minute"]["current"] == 5000


def test_global_stats_is_none_before_creation(clean_global: None) -> None:
    assert ratetrack.global_stats() is None
    g = ratetrack.global_tracker("tier1")
    assert ratetrack.global_stats() is not None
    ratetrack.reset_global()
    assert ratetrack.global_stats() is None
    g.record(MODEL, 1)  # handles stay valid after reset_global: they act on the emptied global
    assert g.stats()["models"][MODEL]["requests_per_minute"]["current"] == 1
    assert ratetrack.global_stats() is None  # "null" until the next global_tracker()
    assert ratetrack.global_tracker() == g
    assert ratetrack.global_stats()["models"][MODEL]["requests_per_minute"]["current"] == 1  # type: ignore[index]


def test_reset_global_chooses_the_tier_again_at_the_next_global_tracker(
    clean_global: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RATETRACK_TIER", raising=False)
    monkeypatch.delenv("RATETRACK_CONFIG", raising=False)
    g = ratetrack.global_tracker("tier2")
    g.record(MODEL, 5)
    assert g.stats()["tier"] == "tier2"
    ratetrack.reset_global()
    assert ratetrack.global_stats() is None
    # Until the next global_tracker(), the old handle acts on the emptied global
    # with the old tier's limits still in force.
    stats = g.stats()
    assert stats["tier"] == "tier2"
    rpm = stats["models"][MODEL]["requests_per_minute"]
    assert rpm["current"] == 0 and rpm["limit"] == 5000
    assert ratetrack.global_stats() is None
    # The next global_tracker() chooses the tier as at first creation: no
    # argument, no $RATETRACK_TIER, no configured tier -> "tier1".
    assert ratetrack.global_tracker() == g
    stats = ratetrack.global_stats()
    assert stats is not None and stats["tier"] == "tier1"
    assert stats["models"][MODEL]["requests_per_minute"]["limit"] == 500
    # ... and $RATETRACK_TIER counts again after the next reset.
    ratetrack.reset_global()
    monkeypatch.setenv("RATETRACK_TIER", "tier2")
    assert ratetrack.global_tracker().stats()["tier"] == "tier2"


def test_bad_config_file_is_a_config_error(
    clean_global: None, monkeypatch: pytest.MonkeyPatch, tmp_path: "os.PathLike[str]"
) -> None:
    monkeypatch.delenv("RATETRACK_TIER", raising=False)
    path = os.path.join(os.fspath(tmp_path), "ratetrack.json")
    with open(path, "w") as f:
        f.write("{broken")
    monkeypatch.setenv("RATETRACK_CONFIG", path)
    with pytest.raises(ratetrack.ConfigError) as info:  # from rt_global_get_ex's status code
        ratetrack.global_tracker()
    assert info.value.code == -2 and path in info.value.message
    assert ratetrack.global_stats() is None  # nothing was created
    with open(path, "w") as f:
        f.write('{"tier": "free", "limits": {"acme/m": {"rpm": 3}}}')
    stats = ratetrack.global_tracker().stats()
    assert stats["tier"] == "free"
    assert stats["models"]["acme/m"]["requests_per_minute"]["limit"] == 3


def test_close_on_the_global_is_a_no_op(clean_global: None) -> None:
    g = ratetrack.global_tracker("tier1")
    g.close()
    with ratetrack.global_tracker() as g2:
        g2.record(MODEL, 1)
    assert not g.closed
    assert g.stats()["models"][MODEL]["requests_per_minute"]["current"] == 1


def test_unknown_tier_is_a_config_error(clean_global: None) -> None:
    with pytest.raises(ratetrack.ConfigError) as info:
        ratetrack.global_tracker("no-such-tier")
    assert info.value.code == -2
    assert info.value.message


def test_configure_global(clean_global: None) -> None:
    with pytest.raises(ratetrack.ConfigError):
        ratetrack.configure_global("{not json")
    with pytest.raises(ratetrack.ConfigError):
        ratetrack.configure_global({"no_such_key": 1})
    ratetrack.configure_global({"limits": {"acme/global": {"rpm": 2}}})
    try:
        g = ratetrack.global_tracker("tier1")
        assert g.try_acquire("acme/global")
        assert g.try_acquire("acme/global")
        assert not g.try_acquire("acme/global")
        assert g.try_acquire(MODEL)  # built-in tier limits still apply to other models
    finally:
        ratetrack.configure_global({"limits": {}})
