'use strict';
// Prometheus metrics text and shared-memory segment management (rt_metrics_text,
// rt_shm_list, rt_shm_remove) against the real library (RATETRACK_LIBRARY).
const test = require('node:test');
const assert = require('node:assert/strict');
const rt = require('..');

/** asserts that fn() throws a RateTrackError with this status name. */
function throwsStatus(fn, status) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof rt.RateTrackError, `not a RateTrackError: ${e}`);
    assert.equal(e.status, status, e.message);
    return true;
  });
}

test('metricsText: a private tracker after 2 admitted and 1 refused', () => {
  const model = 'acme/metrics-m';
  const t = rt.open({ builtin_tiers: false, limits: { [model]: { rpm: 2 } } });
  try {
    assert.equal(t.tryAcquire(model).ok, true);
    assert.equal(t.tryAcquire(model).ok, true);
    assert.equal(t.tryAcquire(model).ok, false);
    const text = t.metricsText();
    assert.equal(typeof text, 'string');
    const lines = text.split('\n');
    assert.ok(lines.includes(`ratetrack_admitted_total{model="${model}"} 2`), text);
    assert.ok(lines.includes(`ratetrack_refused_total{model="${model}"} 1`), text);
    assert.match(text, /^# HELP ratetrack_admitted_total /m);
    assert.match(text, /^# TYPE ratetrack_admitted_total counter$/m);
    assert.match(text, /^# HELP ratetrack_refused_total /m);
    assert.match(text, /^# TYPE ratetrack_refused_total counter$/m);
    assert.match(text, /^# TYPE ratetrack_window_usage gauge$/m);
  } finally {
    t.close();
  }
  throwsStatus(() => t.metricsText(), 'RT_E_INVALID');
});

test('metricsText(): the global tracker\'s text is a string', () => {
  rt.globalTracker();
  const text = rt.metricsText();
  assert.equal(typeof text, 'string');
  assert.match(text, /^# TYPE ratetrack_info gauge$/m);
  assert.match(text, /^ratetrack_info\{/m);
});

test('shmList / shmRemove: a segment created by a tracker is listed, removed, then unknown', () => {
  const name = `node-metrics-${process.pid}-${Date.now()}`;
  const t = rt.open({ builtin_tiers: false, backend: `shm:${name}`, limits: { 'acme/m': { rpm: 100 } } });
  try {
    assert.equal(t.tryAcquire('acme/m').ok, true);
    const seg = rt.shmList().find((s) => s.name === name);
    assert.ok(seg, `segment ${name} not listed`);
    assert.equal(seg.path, `/dev/shm/ratetrack.${name}`);
    assert.equal(seg.compatible, true);
    assert.equal(typeof seg.bytes, 'number');
    assert.ok(seg.bytes > 0);
    assert.match(seg.mode, /^0[0-7]{3}$/);
    assert.equal(typeof seg.uid, 'number');
    assert.equal(typeof seg.layout_version, 'number');
    assert.ok(seg.models >= 1, `models=${seg.models}`);
    assert.ok(seg.capacity >= seg.models, `capacity=${seg.capacity}`);
    assert.equal(seg.creator_pid, process.pid);
    assert.ok(Math.abs(seg.created_unix_ms - Date.now()) < 60_000, `created_unix_ms=${seg.created_unix_ms}`);
  } finally {
    t.close();
  }
  rt.shmRemove(name);
  assert.equal(rt.shmList().some((s) => s.name === name), false, 'removed segment still listed');
  throwsStatus(() => rt.shmRemove(name), 'RT_E_INVALID');
});

test('shmRemove: bad names are RT_E_INVALID', () => {
  throwsStatus(() => rt.shmRemove(''), 'RT_E_INVALID');
  throwsStatus(() => rt.shmRemove('../etc'), 'RT_E_INVALID');
  throwsStatus(() => rt.shmRemove('a\0b'), 'RT_E_INVALID');
  throwsStatus(() => rt.shmRemove(7), 'RT_E_INVALID');
});
