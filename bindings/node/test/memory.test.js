'use strict';
// The binding keeps nothing per call: every string the library returns is
// freed with rt_free, and no call leaves native or JS memory behind.
//
// Each case measures the growth per call after a warm-up, over several
// rounds. After each round the garbage collector runs and the JS heap is
// read at once (a synchronous loop must not pile up objects either); then
// the event loop turns, the collector runs again and the resident set is
// read. A leak grows every round by about the same amount; the noise (glibc
// grows and trims its heap in steps of 128 KiB, V8 adds pages, a busy
// machine's sweeper runs late) is a few such steps in some rounds. So the
// median round must stay under a bound per call that is at once at most
// half of what the leak would cost and at least four malloc steps a round.
// RATETRACK_TEST_VERBOSE=1 prints every round.
//
// What these cases caught: on Node 18, koffi's `_Out_` array parameters kept
// ~80 B of JS heap and ~400 B of RSS per call until the event loop turned
// (a synchronous loop of 100k stats() calls held 60 MiB), and
// koffi.decode(p, 'char', -1) left the name of a new "char[N]" type in koffi
// at every call (9 to 18 B a call, on every Node version).
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');
const { setImmediate: turn } = require('node:timers/promises');
const rt = require('..');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/** The JS heap in use after a full collection, without turning the event loop. */
function heapNow() {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** The resident set once the event loop has turned and the collector has run. */
async function rssSettled() {
  for (let i = 0; i < 3; i++) {
    await turn();
    gc();
  }
  await turn();
  return process.memoryUsage.rss();
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];

const MALLOC_STEP = 128 * 1024;
/** Bound on the JS heap's growth per call (after a full collection, it is exact). */
const HEAP_BOUND = 16;

/**
 * The median growth per call of `fn` (bytes of RSS and of JS heap) over
 * `rounds` rounds of `calls` calls, after `warmup` rounds, with the growth
 * of every round for the message.
 */
async function growthPerCall(fn, { rounds, calls, warmup }) {
  for (let i = 0; i < warmup * calls; i++) fn(); // JIT, allocator, heap: steady state
  let prevHeap = heapNow();
  let prevRss = await rssSettled();
  const rss = [];
  const heap = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < calls; i++) fn();
    const h = heapNow();
    heap.push((h - prevHeap) / calls);
    const m = await rssSettled();
    rss.push((m - prevRss) / calls);
    prevRss = m;
    prevHeap = heapNow();
  }
  const show = (xs) => xs.map((x) => x.toFixed(1)).join(', ');
  return {
    rss: median(rss),
    heap: median(heap),
    detail: `per call, by round: RSS ${show(rss)} B; heap ${show(heap)} B`,
  };
}

/**
 * Asserts that `fn` leaves nothing behind: RSS growth per call under
 * `bound`, JS heap growth under HEAP_BOUND. `leak` is what one leaked
 * allocation would cost a call; the bound must be well under it.
 */
async function assertNoGrowth(what, fn, { rounds = 5, warmup = 2, calls, bound, leak }) {
  assert.ok(bound * calls >= 4 * MALLOC_STEP, `${what}: ${calls} calls a round are too few for a bound of ${bound} B`);
  assert.ok(leak >= 2 * bound, `${what}: a leak (${leak} B a call) would not stand out of a bound of ${bound} B`);
  const g = await growthPerCall(fn, { rounds, calls, warmup });
  if (process.env.RATETRACK_TEST_VERBOSE) console.log(`# ${what}: ${g.detail}`);
  assert.ok(g.rss < bound, `${what}: RSS grows by ${g.rss.toFixed(1)} B per call (bound ${bound}); ${g.detail}`);
  assert.ok(g.heap < HEAP_BOUND, `${what}: JS heap grows by ${g.heap.toFixed(1)} B per call (bound ${HEAP_BOUND}); ${g.detail}`);
}

const LIMITS = { 'acme/model-0': { rpm: 1e9, tpm: 1e12, rpd: 1e12, tpd: 1e15 }, 'acme/model-1': { rpm: 1e9 } };
const textSize = (s) => Buffer.byteLength(typeof s === 'string' ? s : JSON.stringify(s));

test('an owned string costs nothing per call (globalStats() before the global exists: "null")', async () => {
  // The cheapest call that goes the whole way (rt_stats_json_ex, decode,
  // rt_free), so rounds can be long and the bound tight: a leaked "null"
  // costs a 32-byte malloc chunk, koffi's leaked type name ("char[4]") 9 B.
  rt.resetGlobal();
  assert.equal(rt.globalStats(), null);
  await assertNoGrowth('globalStats() = null', () => rt.globalStats(), { calls: 200_000, bound: 4, leak: 9 });
});

test('stats(), metricsText() and globalStats() free their strings', async () => {
  const t = rt.open({ builtin_tiers: false, limits: LIMITS });
  rt.resetGlobal();
  rt.globalTracker('tier1').record('openai/gpt-4o-mini', 1);
  try {
    t.record('acme/model-0', 7);
    const stats = () => {
      if (t.stats().models['acme/model-0'].requests_per_minute.current !== 1) assert.fail('bad stats');
    };
    await assertNoGrowth('stats()', stats, { calls: 16_384, bound: 64, leak: textSize(t.stats()) });
    await assertNoGrowth('metricsText()', () => t.metricsText(), {
      calls: 8192,
      bound: 128,
      leak: textSize(t.metricsText()),
    });
    // Every built-in model: ~20 KB.
    await assertNoGrowth('globalStats()', () => rt.globalStats(), {
      warmup: 1,
      calls: 512,
      bound: 4096,
      leak: textSize(rt.globalStats()),
    });
  } finally {
    t.close();
    rt.resetGlobal();
  }
});

test('globalTracker() and pick() keep nothing per call', async () => {
  // Both return a value through a pointer out-parameter (a handle, an index).
  await assertNoGrowth('globalTracker()', () => rt.globalTracker(), { calls: 131_072, bound: 16, leak: 80 });
  const t = rt.open({ builtin_tiers: false, limits: LIMITS });
  try {
    const models = ['acme/model-0', 'acme/model-1'];
    const pick = () => t.settle(t.pick(models, 10, 5).grant, 8, 4);
    await assertNoGrowth('pick()', pick, { calls: 65_536, bound: 16, leak: 80 });
  } finally {
    t.close();
    rt.resetGlobal();
  }
});
