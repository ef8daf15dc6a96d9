'use strict';
// Input/output tokens, picking a model and provider truth (response headers,
// 429s) against the real library (RATETRACK_LIBRARY), on private trackers.
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

/** A private tracker with only these limits; closed after `body`. */
function withTracker(limits, body, extra = {}) {
  const t = rt.open({ builtin_tiers: false, limits, ...extra });
  try {
    return body(t);
  } finally {
    t.close();
  }
}

const OPENAI = 'openai/gpt-4o-mini';

// OpenAI's documented sample response headers, with 2 requests left.
const openaiSample = () => ({
  'x-ratelimit-limit-requests': '60',
  'x-ratelimit-limit-tokens': '150000',
  'x-ratelimit-remaining-requests': '2',
  'x-ratelimit-remaining-tokens': '149984',
  'x-ratelimit-reset-requests': '30s',
  'x-ratelimit-reset-tokens': '6m0s',
});

test('observeHeaders: OpenAI sample headers cap the requests; stats show observed_limit', () => {
  withTracker({ [OPENAI]: { rpm: 500, tpm: 1_000_000 } }, (t) => {
    t.observeHeaders(OPENAI, openaiSample());
    assert.deepEqual(t.tryAcquire(OPENAI, 10), { ok: true, retryAfterMs: 0 });
    assert.deepEqual(t.tryAcquire(OPENAI, 10), { ok: true, retryAfterMs: 0 });
    const third = t.tryAcquire(OPENAI, 10);
    assert.equal(third.ok, false, 'the provider said 2 remain: the 3rd must be limited');
    assert.ok(third.retryAfterMs > 0 && third.retryAfterMs <= 30_000, `retryAfterMs=${third.retryAfterMs}`);
    const s = t.stats();
    const rpm = s.models[OPENAI].requests_per_minute;
    assert.equal(rpm.limit, 500, 'the configured limit is kept');
    assert.equal(rpm.observed_limit, 60, 'the provider\'s limit is shown');
    assert.equal(rpm.current, 2);
    assert.equal(s.models[OPENAI].tokens_per_minute.observed_limit, 150000);
    const p = s.provider[OPENAI];
    assert.equal(p.requests.limit, 60);
    assert.equal(p.requests.remaining, 0);
    assert.ok(p.requests.reset_in_ms > 0 && p.requests.reset_in_ms <= 30_000, JSON.stringify(p));
    assert.equal(p.tokens.limit, 150000);
  });
});

test('observeHeaders: malformed and unknown headers are ignored', () => {
  withTracker({ [OPENAI]: { rpm: 500 } }, (t) => {
    t.observeHeaders(OPENAI, {
      'x-ratelimit-remaining-requests': 'two',
      'x-ratelimit-reset-requests': 'soon',
      'x-ratelimit-limit-requests': '-5',
      'x-unrelated': '0',
      'content-type': 'application/json',
    });
    t.observeHeaders(OPENAI, {}); // nothing at all
    for (let i = 0; i < 5; i++) assert.equal(t.tryAcquire(OPENAI).ok, true, `request ${i}`);
    const s = t.stats();
    assert.equal(s.models[OPENAI].requests_per_minute.observed_limit, undefined);
    assert.equal(s.models[OPENAI].requests_per_minute.current, 5);
    assert.equal(s.provider?.[OPENAI]?.requests?.remaining ?? null, null);
  });
});

test('observeHeaders accepts Headers, Map, pairs, mixed case and multi-valued headers', () => {
  const cases = {
    Headers: (h) => new Headers(h),
    Map: (h) => new Map(Object.entries(h)),
    pairs: (h) => Object.entries(h),
    'upper-case names': (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toUpperCase(), v])),
  };
  for (const [name, make] of Object.entries(cases)) {
    withTracker({ [OPENAI]: { rpm: 500 } }, (t) => {
      t.observeHeaders(OPENAI, make({ 'x-ratelimit-remaining-requests': '1', 'x-ratelimit-reset-requests': '1m' }));
      assert.equal(t.tryAcquire(OPENAI).ok, true, name);
      assert.equal(t.tryAcquire(OPENAI).ok, false, `${name}: the provider said 1 remains`);
    });
  }
  // An array value passes each value: the malformed one is skipped, "1" is read.
  withTracker({ [OPENAI]: { rpm: 500 } }, (t) => {
    t.observeHeaders(OPENAI, {
      'x-ratelimit-remaining-requests': ['garbage', '1'],
      'x-ratelimit-reset-requests': '1m',
      'x-absent': undefined,
    });
    assert.equal(t.tryAcquire(OPENAI).ok, true);
    assert.equal(t.tryAcquire(OPENAI).ok, false);
  });
  withTracker({}, (t) => {
    throwsStatus(() => t.observeHeaders(OPENAI, null), 'RT_E_INVALID');
    throwsStatus(() => t.observeHeaders(OPENAI, 'x: 1'), 'RT_E_INVALID');
    throwsStatus(() => t.observeHeaders(OPENAI, [['only-a-name']]), 'RT_E_INVALID');
    throwsStatus(() => t.observeHeaders('', {}), 'RT_E_INVALID');
  });
});

test('observeHeaders: Anthropic headers with RFC 3339 resets', () => {
  const model = 'anthropic/claude';
  withTracker({ [model]: { rpm: 50, itpm: 100_000 } }, (t) => {
    const reset = new Date(Date.now() + 20_000).toISOString();
    t.observeHeaders(model, {
      'anthropic-ratelimit-requests-limit': '50',
      'anthropic-ratelimit-requests-remaining': '1',
      'anthropic-ratelimit-requests-reset': reset,
      'anthropic-ratelimit-input-tokens-limit': '80000',
      'anthropic-ratelimit-input-tokens-remaining': '70000',
      'anthropic-ratelimit-input-tokens-reset': reset,
    });
    assert.equal(t.tryAcquireIo(model, 100, 10).ok, true);
    const r = t.tryAcquireIo(model, 100, 10);
    assert.equal(r.ok, false);
    assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= 20_050, `retryAfterMs=${r.retryAfterMs}`);
    const p = t.stats().provider[model];
    assert.equal(p.input_tokens.limit, 80000);
    assert.equal(t.stats().models[model].input_tokens_per_minute.observed_limit, 80000);
  });
});

test('reportLimited("2"): limited for between 1 and 2 s; numbers, HTTP dates and Dates', () => {
  withTracker({}, (t) => {
    const m = 'acme/m';
    assert.equal(t.tryAcquire(m).ok, true);
    t.reportLimited(m, '2');
    const r = t.tryAcquire(m);
    assert.equal(r.ok, false);
    assert.ok(r.retryAfterMs >= 1000 && r.retryAfterMs <= 2000, `retryAfterMs=${r.retryAfterMs}`);
    assert.ok(t.stats().provider[m].blocked_for_ms > 1000);
    assert.equal(t.canMake(m), false);

    // A number of seconds is sent as decimal seconds.
    t.reportLimited('acme/n', 1.5);
    const n = t.tryAcquire('acme/n');
    assert.ok(!n.ok && n.retryAfterMs > 1000 && n.retryAfterMs <= 1500, `retryAfterMs=${n.retryAfterMs}`);

    // A 429 with an HTTP date (whole seconds: between 3 and 5 s from now).
    const httpDate = new Date(Date.now() + 5000).toUTCString();
    assert.match(httpDate, /^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/);
    t.reportLimited('acme/d', httpDate);
    const d = t.tryAcquire('acme/d');
    assert.ok(!d.ok && d.retryAfterMs > 3000 && d.retryAfterMs <= 5000, `retryAfterMs=${d.retryAfterMs}`);

    // A Date object: the seconds from now to it.
    t.reportLimited('acme/e', new Date(Date.now() + 3000));
    const e = t.tryAcquire('acme/e');
    assert.ok(!e.ok && e.retryAfterMs > 2000 && e.retryAfterMs <= 3050, `retryAfterMs=${e.retryAfterMs}`);

    // No (or an unreadable) Retry-After: 1 second.
    for (const [model, value] of [['acme/f', undefined], ['acme/g', ''], ['acme/h', 'whenever']]) {
      t.reportLimited(model, value);
      const x = t.tryAcquire(model);
      assert.ok(!x.ok && x.retryAfterMs > 0 && x.retryAfterMs <= 1000, `${value}: retryAfterMs=${x.retryAfterMs}`);
    }
    throwsStatus(() => t.reportLimited(m, -1), 'RT_E_INVALID');
    throwsStatus(() => t.reportLimited(m, NaN), 'RT_E_INVALID');
    throwsStatus(() => t.reportLimited(m, new Date('nope')), 'RT_E_INVALID');
    throwsStatus(() => t.reportLimited('', '1'), 'RT_E_INVALID');
  });
});

test('reportLimited: the block ends at the Retry-After time', async () => {
  const t = rt.open({ builtin_tiers: false });
  try {
    t.reportLimited('acme/m', '0.3');
    assert.equal(t.tryAcquire('acme/m').ok, false);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(t.tryAcquire('acme/m').ok, true);
  } finally {
    t.close();
  }
});

test('input/output tokens: itpm and otpm are counted apart and settled apart', () => {
  const m = 'anthropic/m';
  withTracker({ [m]: { itpm: 1000, otpm: 100 } }, (t) => {
    const a = t.tryAcquireIo(m, 900, 100);
    assert.equal(a.ok, true);
    assert.ok(a.grant instanceof rt.Grant);
    assert.equal(a.grant.tokens, 900);
    assert.equal(a.grant.inputTokens, 900);
    assert.equal(a.grant.outputTokens, 100);
    const b = t.tryAcquireIo(m, 1, 1);
    assert.equal(b.ok, false, 'otpm is spent');
    assert.equal(b.grant, null);
    assert.ok(b.retryAfterMs > 0);
    // Output tokens are required to settle a grant that reserved some.
    throwsStatus(() => t.settle(a.grant, 900), 'RT_E_INVALID');
    // A grant with other counts than its own is refused, nothing changed.
    throwsStatus(() => t.settle(new rt.Grant(m, a.grant.ticket, 900, 99), 900, 10), 'RT_E_INVALID');
    t.settle(a.grant, 900, 10); // refund 90 output tokens
    let s = t.stats().models[m];
    assert.equal(s.input_tokens_per_minute.current, 900);
    assert.equal(s.output_tokens_per_minute.current, 10);
    assert.equal(s.output_tokens_per_minute.limit, 100);
    assert.equal(t.tryAcquireIo(m, 0, 90).ok, true);
    assert.equal(t.tryAcquireIo(m, 0, 1).ok, false);
    // Plain tokens are input tokens: 100 fit, 101 do not.
    assert.equal(t.tryAcquire(m, 101).ok, false);
    const g = t.tryAcquireGrant(m, 100);
    assert.equal(g.ok, true);
    assert.equal(g.grant.outputTokens, 0);
    // A plain grant settles as before, or with an output count too.
    t.settle(g.grant, 50, 0);
    s = t.stats().models[m];
    assert.equal(s.input_tokens_per_minute.current, 950);
    throwsStatus(() => t.tryAcquireIo(m, 1001, 0), 'RT_E_TOO_LARGE');
    throwsStatus(() => t.tryAcquireIo(m, -1, 0), 'RT_E_INVALID');
  });
});

test('acquire with outputTokens reserves output tokens', async () => {
  const t = rt.open({ builtin_tiers: false, limits: { 'anthropic/m': { otpm: 100 } } });
  try {
    const g = await t.acquire('anthropic/m', 10, { outputTokens: 100, timeoutMs: 0 });
    assert.ok(g instanceof rt.Grant);
    assert.equal(g.outputTokens, 100);
    assert.equal(await t.acquire('anthropic/m', 10, { outputTokens: 1, timeoutMs: 0 }), null);
    t.settle(g, 10, 40);
    assert.ok(await t.acquire('anthropic/m', 10, { outputTokens: 60, timeoutMs: 0 }));
  } finally {
    t.close();
  }
});

test('pick: the first candidate that can take the request; else which frees first', () => {
  // a/x: 1 request per 5 s; b/y: 1 per minute (so a/x frees first).
  const limits = { 'a/x': { windows: [{ unit: 'requests', limit: 1, seconds: 5 }] }, 'b/y': { rpm: 1 } };
  withTracker(limits, (t) => {
    assert.equal(t.tryAcquire('a/x').ok, true); // a/x is spent first
    const p = t.pick(['a/x', 'b/y'], 10, 5);
    assert.equal(p.ok, true);
    assert.equal(p.model, 'b/y');
    assert.equal(p.index, 1);
    assert.equal(p.retryAfterMs, 0);
    assert.ok(p.grant instanceof rt.Grant);
    assert.equal(p.grant.model, 'b/y');
    assert.equal(p.grant.tokens, 10);
    assert.equal(p.grant.outputTokens, 5);
    t.settle(p.grant, 8, 2);
    assert.equal(t.stats().models['b/y'].tokens_per_minute.current, 10);
    // All spent: limited, naming a/x (its 5 s window frees first), not the first listed.
    const none = t.pick(['b/y', 'a/x'], 10);
    assert.equal(none.ok, false);
    assert.equal(none.model, 'a/x');
    assert.equal(none.index, 1);
    assert.equal(none.grant, null);
    assert.ok(none.retryAfterMs > 0 && none.retryAfterMs <= 5_500, `retryAfterMs=${none.retryAfterMs}`);
    assert.equal(t.stats().models['b/y'].requests_per_minute.current, 1, 'nothing recorded when limited');
  });
  // A 429 on a model makes pick pass over it; the block naming the first to free.
  withTracker({}, (t) => {
    t.reportLimited('a/x', '30');
    t.reportLimited('b/y', '2');
    const none = t.pick(new Set(['a/x', 'b/y']));
    assert.equal(none.ok, false);
    assert.equal(none.model, 'b/y');
    assert.ok(none.retryAfterMs > 1000 && none.retryAfterMs <= 2000, `retryAfterMs=${none.retryAfterMs}`);
    assert.equal(t.pick(['a/x', 'c/z']).model, 'c/z');
  });
  withTracker({ 'a/x': { tpm: 100 }, 'b/y': { tpm: 200 } }, (t) => {
    throwsStatus(() => t.pick(['a/x', 'b/y'], 500), 'RT_E_TOO_LARGE');
    assert.equal(t.pick(['a/x', 'b/y'], 150).model, 'b/y', 'too large for a/x only: b/y is picked');
    throwsStatus(() => t.pick([], 1), 'RT_E_INVALID');
    throwsStatus(() => t.pick(['a/x', ''], 1), 'RT_E_INVALID');
    throwsStatus(() => t.pick('a/x', 1), 'RT_E_INVALID');
    throwsStatus(() => t.pick(['a/x', 7], 1), 'RT_E_INVALID');
  });
});

test('shm backend: a 429 reported through one tracker stops the other', () => {
  const name = `node-issue6-${process.pid}-${Date.now()}`;
  const config = { builtin_tiers: false, backend: `shm:${name}`, limits: { 'acme/m': { rpm: 100 } } };
  let a = null;
  let b = null;
  try {
    a = rt.open(config);
    b = rt.open(config);
    assert.equal(b.stats().backend, `shm:${name}`);
    assert.equal(b.tryAcquire('acme/m').ok, true);
    a.reportLimited('acme/m', '5');
    const r = b.tryAcquire('acme/m');
    assert.equal(r.ok, false, 'the other tracker sees the 429');
    assert.ok(r.retryAfterMs > 3000 && r.retryAfterMs <= 5000, `retryAfterMs=${r.retryAfterMs}`);
    // Observed headers are shared as well.
    a.observeHeaders('acme/o', { 'x-ratelimit-remaining-requests': '1', 'x-ratelimit-reset-requests': '1m' });
    assert.equal(b.tryAcquire('acme/o').ok, true);
    assert.equal(a.tryAcquire('acme/o').ok, false);
  } finally {
    a?.close();
    b?.close();
    if (rt.shmList().some((seg) => seg.name === name)) rt.shmRemove(name);
  }
});
