"""Prometheus metrics text (rt_metrics_text) and shared-memory segments
(rt_shm_list, rt_shm_remove)."""

from __future__ import annotations

import os
import uuid

import pytest

import ratetrack

MODEL = "acme/m"


# -- metrics --------------------------------------------------------------------
def test_metrics_text_counts_admitted_and_refused(library_path: str) -> None:
    config = {"builtin_tiers": False, "limits": {MODEL: {"rpm": 2}}}
    with ratetrack.open(config) as t:
        assert t.try_acquire(MODEL)
        assert t.try_acquire(MODEL)
        assert not t.try_acquire(MODEL)
        text = t.metrics_text()
    assert isinstance(text, str)
    lines = text.splitlines()
    assert f'ratetrack_admitted_total{{model="{MODEL}"}} 2' in lines
    assert f'ratetrack_refused_total{{model="{MODEL}"}} 1' in lines
    for family, kind in (("ratetrack_admitted_total", "counter"),
                         ("ratetrack_refused_total", "counter"),
                         ("ratetrack_info", "gauge")):
        assert any(line.startswith(f"# HELP {family} ") for line in lines), family
        assert f"# TYPE {family} {kind}" in lines
    assert f'ratetrack_window_limit{{model="{MODEL}",window="requests_per_minute"}} 2' in lines


def test_metrics_text_of_a_closed_tracker(library_path: str) -> None:
    t = ratetrack.open()
    t.close()
    with pytest.raises(ratetrack.InvalidArgument):
        t.metrics_text()


def test_global_metrics_text(clean_global: None) -> None:
    text = ratetrack.global_metrics_text()  # not created yet: still a text
    assert isinstance(text, str)
    assert "ratetrack_admitted_total{" not in text
    tracker = ratetrack.global_tracker("tier1")
    # The decision counters are the process's: they outlive reset_global, so
    # compare against what earlier tests left.
    before = _sample(ratetrack.global_metrics_text(), 'ratetrack_admitted_total{model="openai/gpt-4o-mini"}')
    assert tracker.try_acquire("openai/gpt-4o-mini")
    text = ratetrack.global_metrics_text()
    assert _sample(text, 'ratetrack_admitted_total{model="openai/gpt-4o-mini"}') == before + 1
    assert "ratetrack_admitted_total{model=\"openai/gpt-4o-mini\"}" in tracker.metrics_text()
    assert "# TYPE ratetrack_info gauge" in text


def _sample(text: str, series: str) -> int:
    """The value of one sample line of a metrics text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return int(float(line[len(series) + 1:]))
    return 0


# -- shared memory --------------------------------------------------------------
def test_shm_list_and_remove(library_path: str) -> None:
    name = f"pytest-shm-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    config = {"builtin_tiers": False, "limits": {MODEL: {"rpm": 10}}, "backend": f"shm:{name}"}
    try:
        with ratetrack.open(config) as t:
            assert t.try_acquire(MODEL)
        segments = [s for s in ratetrack.shm_list() if s["name"] == name]
        assert len(segments) == 1
        seg = segments[0]
        assert seg["path"] == f"/dev/shm/ratetrack.{name}"
        assert seg["bytes"] > 0
        assert seg["mode"] == "0600"
        assert seg["uid"] == os.getuid()
        assert seg["compatible"] is True
        assert seg["layout_version"] >= 1
        assert seg["models"] >= 1
        assert seg["capacity"] >= seg["models"]
        assert seg["creator_pid"] == os.getpid()
        assert seg["created_unix_ms"] > 0

        ratetrack.shm_remove(name)
        assert name not in [s["name"] for s in ratetrack.shm_list()]
        assert not os.path.exists(f"/dev/shm/ratetrack.{name}")
        with pytest.raises(ratetrack.InvalidArgument):
            ratetrack.shm_remove(name)  # already gone
    finally:
        try:
            ratetrack.shm_remove(name)
        except ratetrack.InvalidArgument:
            pass


def test_shm_remove_bad_names(library_path: str) -> None:
    for bad in ("", ".hidden", "a/b", "x" * 65, "nul\0name"):
        with pytest.raises(ratetrack.InvalidArgument):
            ratetrack.shm_remove(bad)
    with pytest.raises(TypeError):
        ratetrack.shm_remove(None)  # type: ignore[arg-type]
