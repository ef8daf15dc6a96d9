'use strict';
// Every string rt_stats_json returns is freed with rt_free: 100k stats calls
// must not grow the resident set beyond a small slack.
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');
const rt = require('..');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

function settledRss() {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().rss;
}

test('100k stats calls do not leak', () => {
  const limits = {};
  for (let i = 0; i < 3; i++) limits[`acme/model-${i}`] = { rpm: 1000, tpm: 100000, rpd: 10000, tpd: 1000000 };
  const t = rt.open({ builtin_tiers: false, limits });
  try {
    for (const m of Object.keys(limits)) t.record(m, 7);
    const size = JSON.stringify(t.stats()).length;
    for (let i = 0; i < 5000; i++) t.stats(); // warm up allocator and JIT
    const before = settledRss();
    for (let i = 0; i < 100_000; i++) {
      const s = t.stats();
      if (s.models['acme/model-2'].requests_per_minute.current !== 1) assert.fail('bad stats');
    }
    const grown = settledRss() - before;
    const slack = 16 * 1024 * 1024;
    // Leaking every string would cost at least 100k * size bytes: far more than the slack.
    assert.ok(100_000 * size > 4 * slack, `stats text too small (${size} B) for the test to mean anything`);
    assert.ok(grown < slack, `RSS grew by ${(grown / 1048576).toFixed(1)} MiB over 100k stats calls`);
  } finally {
    t.close();
  }
});

test('globalStats calls do not leak', () => {
  // The global's tier1 stats list every built-in model (~13 KB): 10k calls
  // would leak over 100 MiB without rt_free.
  rt.resetGlobal();
  rt.globalTracker('tier1').record('openai/gpt-4o-mini', 1);
  const size = JSON.stringify(rt.globalStats()).length;
  for (let i = 0; i < 1000; i++) rt.globalStats();
  const before = settledRss();
  for (let i = 0; i < 10_000; i++) rt.globalStats();
  const grown = settledRss() - before;
  rt.resetGlobal();
  assert.ok(10_000 * size > 4 * 16 * 1024 * 1024, `global stats too small (${size} B)`);
  assert.ok(grown < 16 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MiB`);
});
