'use strict';
// Behaviour against the real library (RATETRACK_LIBRARY): the global
// tracker, the seed scenario, errors, stats, grants, waiting.
const test = require('node:test');
const assert = require('node:assert/strict');
const rt = require('..');

const MINI = 'openai/gpt-4o-mini';

/** asserts that fn() throws a RateTrackError with this status name. */
function throwsStatus(fn, status) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof rt.RateTrackError, `not a RateTrackError: ${e}`);
    assert.equal(e.status, status, e.message);
    assert.equal(e.code, rt.Status[status]);
    return true;
  });
}

const shortWindow = (limit, seconds) => ({
  builtin_tiers: false,
  limits: { 'acme/m': { windows: [{ unit: 'requests', limit, seconds }] } },
});

test.beforeEach(() => rt.resetGlobal());
test.afterEach(() => rt.resetGlobal());

test('library version matches the binding', () => {
  assert.match(rt.version(), /^0\.1\.\d+$/);
  assert.equal(Math.floor(rt.versionNumber() / 100), 1);
  assert.equal(rt.load().version, rt.version());
  assert.equal(typeof rt.statusString(-2), 'string');
  assert.notEqual(rt.statusString(-2), rt.statusString(-3));
});

test('one global per process: two handles share usage', () => {
  assert.equal(rt.globalStats(), null, 'no global before the first globalTracker()');
  const a = rt.globalTracker('tier1');
  const b = rt.globalTracker();
  assert.ok(a.isGlobal && b.isGlobal);
  a.record(MINI, 10);
  b.record(MINI, 5);
  const sa = a.stats();
  const sb = b.stats();
  assert.deepEqual(sa, sb);
  assert.equal(sa.tier, 'tier1');
  assert.equal(sa.backend, 'memory');
  assert.equal(sa.models[MINI].requests_per_minute.current, 2);
  assert.equal(sa.models[MINI].tokens_per_minute.current, 15);
  assert.deepEqual(rt.globalStats(), sa);
  // close() on the global is a no-op.
  a.close();
  assert.equal(a.closed, false);
  b.record(MINI, 0);
  assert.equal(a.stats().models[MINI].requests_per_minute.current, 3);
  // resetGlobal forgets the usage; old handles stay valid on the emptied global.
  rt.resetGlobal();
  assert.equal(rt.globalStats(), null);
  const c = rt.globalTracker();
  assert.equal(c.stats().models[MINI].requests_per_minute.current, 0);
  a.record(MINI, 1);
  assert.equal(c.stats().models[MINI].requests_per_minute.current, 1);
});

test('resetGlobal: stats null and the old tier in force until the next globalTracker()', () => {
  // tier2 allows 5000 rpm on gpt-4o-mini, tier1 500.
  const a = rt.globalTracker('tier2');
  a.record(MINI, 10);
  rt.resetGlobal();
  assert.equal(rt.globalStats(), null, 'the global is "never created" again');
  // The old handle acts on the emptied global, still with tier2's limits.
  const s = a.stats();
  assert.equal(s.tier, 'tier2');
  assert.equal(s.models[MINI].requests_per_minute.current, 0);
  assert.equal(s.models[MINI].requests_per_minute.limit, 5000);
  for (let i = 0; i < 600; i++) assert.equal(a.tryAcquire(MINI).ok, true, `request ${i} under tier2`);
  assert.equal(rt.globalStats(), null, 'still null: no globalTracker() call yet');
  // The next globalTracker() chooses the tier again as at first creation.
  rt.resetGlobal();
  const b = rt.globalTracker();
  const expected = process.env.RATETRACK_TIER || 'tier1';
  assert.equal(b.stats().tier, expected);
  assert.equal(a.stats().tier, expected, 'old handles see the new tier too');
  assert.deepEqual(rt.globalStats(), b.stats());
});

test('seed scenario: agent 400 + tool 100 on tier1 gpt-4o-mini, then refused', () => {
  const agent = rt.globalTracker('tier1');
  const tool = rt.globalTracker();
  for (let i = 0; i < 400; i++) {
    const r = agent.tryAcquire(MINI, 50);
    assert.deepEqual(r, { ok: true, retryAfterMs: 0 }, `agent call ${i}`);
  }
  for (let i = 0; i < 100; i++) {
    assert.equal(tool.canMake(MINI, 50), true, `tool call ${i}`);
    tool.record(MINI, 50);
  }
  assert.equal(agent.canMake(MINI, 50), false);
  assert.equal(tool.canMake(MINI, 0), false);
  const r = tool.tryAcquire(MINI, 50);
  assert.equal(r.ok, false);
  // A window counts a unit up to one bucket (~1/60 of it) past its span: the library's resolution.
  assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= 60_000 * 1.05, `retryAfterMs=${r.retryAfterMs}`);
  assert.ok(agent.waitTime(MINI, 50) > 0);
  const rpm = rt.globalStats().models[MINI].requests_per_minute;
  assert.deepEqual(
    { current: rpm.current, limit: rpm.limit, remaining: rpm.remaining, usage_percent: rpm.usage_percent },
    { current: 500, limit: 500, remaining: 0, usage_percent: 100 },
  );
  assert.equal(rt.globalStats().models[MINI].tokens_per_minute.current, 500 * 50);
});

test('invalid arguments: RT_E_INVALID', () => {
  const g = rt.globalTracker('tier1');
  throwsStatus(() => g.tryAcquire('', 1), 'RT_E_INVALID'); // from the library
  throwsStatus(() => g.canMake('', 1), 'RT_E_INVALID');
  throwsStatus(() => g.record('', 1), 'RT_E_INVALID');
  throwsStatus(() => g.waitTime(''), 'RT_E_INVALID');
  throwsStatus(() => g.tryAcquire(MINI, -1), 'RT_E_INVALID'); // from the binding
  throwsStatus(() => g.tryAcquire(MINI, 1.5), 'RT_E_INVALID');
  throwsStatus(() => g.tryAcquire(42), 'RT_E_INVALID');
  throwsStatus(() => g.settle({ model: MINI, ticket: 1n, tokens: 0 }, 0), 'RT_E_INVALID');
  const t = rt.open();
  t.close();
  t.close(); // idempotent
  assert.equal(t.closed, true);
  throwsStatus(() => t.tryAcquire(MINI), 'RT_E_INVALID');
});

test('the library error message is attached', () => {
  const g = rt.globalTracker('tier1');
  try {
    g.tryAcquire('', 1);
    assert.fail('no error');
  } catch (e) {
    assert.ok(e.detail.length > 0, 'rt_last_error should say something');
    assert.equal(e.message, `RT_E_INVALID: ${e.detail}`);
  }
});

test('bad configuration: RT_E_CONFIG', () => {
  throwsStatus(() => rt.open('{not json'), 'RT_E_CONFIG');
  assert.throws(() => rt.open({ no_such_key: 1 }), (e) => e.status === 'RT_E_CONFIG' && /no_such_key/.test(e.message));
  throwsStatus(() => rt.open({ limits: { 'acme/m': { rpm: -5 } } }), 'RT_E_CONFIG');
  throwsStatus(() => rt.open({ tier: 'no-such-tier' }), 'RT_E_CONFIG');
  throwsStatus(() => rt.globalTracker('no-such-tier'), 'RT_E_CONFIG');
  throwsStatus(() => rt.configureGlobal('{not json'), 'RT_E_CONFIG');
  throwsStatus(() => rt.configureGlobal({ no_such_key: true }), 'RT_E_CONFIG');
  const t = rt.open();
  try {
    throwsStatus(() => t.configure('[1,2'), 'RT_E_CONFIG');
  } finally {
    t.close();
  }
});

test('tokens over a limit outright: RT_E_TOO_LARGE', () => {
  const g = rt.globalTracker('tier1');
  throwsStatus(() => g.canMake(MINI, 200_001), 'RT_E_TOO_LARGE');
  throwsStatus(() => g.tryAcquire(MINI, 200_001), 'RT_E_TOO_LARGE');
  throwsStatus(() => g.tryAcquireGrant(MINI, 10n ** 12n), 'RT_E_TOO_LARGE');
  throwsStatus(() => g.waitTime(MINI, 200_001), 'RT_E_TOO_LARGE');
  assert.equal(g.canMake(MINI, 200_000), true);
});

test('private trackers are independent; unknown models are admitted and tracked', () => {
  const t = rt.open({ limits: { 'acme/m': { rpm: 100, tpm: 1000 } } });
  try {
    assert.equal(t.isGlobal, false);
    assert.deepEqual(t.tryAcquire('zzz/unknown', 123), { ok: true, retryAfterMs: 0 });
    t.record('acme/m', 10);
    const s = t.stats();
    assert.equal(s.models['zzz/unknown'].requests_per_minute.current, 1);
    assert.equal(s.models['zzz/unknown'].requests_per_minute.limit, null);
    assert.equal(s.models['zzz/unknown'].requests_per_minute.remaining, null);
    assert.equal(s.models['zzz/unknown'].requests_per_minute.usage_percent, null);
    assert.equal(s.models['zzz/unknown'].tokens_per_day.usage_percent, null);
    assert.equal(s.models['acme/m'].requests_per_minute.usage_percent, 1);
    assert.equal(s.models['acme/m'].requests_per_day.usage_percent, null);
    assert.equal(s.models['acme/m'].tokens_per_minute.limit, 1000);
    assert.equal(s.models['acme/m'].tokens_per_minute.remaining, 990);
    assert.equal(rt.globalStats(), null, 'the global is untouched');
    t.reset();
    assert.equal(t.stats().models['acme/m'].tokens_per_minute.current, 0);
    t.configure({ limits: { 'acme/m': { rpm: 1 } } });
    assert.equal(t.tryAcquire('acme/m').ok, true);
    assert.equal(t.tryAcquire('acme/m').ok, false);
  } finally {
    t.close();
  }
});

test('configureGlobal applies custom limits to the global', () => {
  rt.configureGlobal(shortWindow(3, 30));
  try {
    const g = rt.globalTracker();
    for (let i = 0; i < 3; i++) assert.equal(g.tryAcquire('acme/m').ok, true);
    const r = g.tryAcquire('acme/m');
    assert.equal(r.ok, false);
    assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= 30_000 * 1.05 + 50, `retryAfterMs=${r.retryAfterMs}`);
    assert.equal(rt.globalStats().models['acme/m'].requests_per_30s.current, 3);
  } finally {
    rt.configureGlobal({ builtin_tiers: true, limits: {} });
  }
});

test('grants settle to the real token count; wait time', () => {
  const t = rt.open({ builtin_tiers: false, limits: { 'acme/m': { tpm: 1000 } } });
  try {
    const r = t.tryAcquireGrant('acme/m', 800);
    assert.equal(r.ok, true);
    assert.ok(r.grant instanceof rt.Grant);
    assert.equal(typeof r.grant.ticket, 'bigint');
    assert.notEqual(r.grant.ticket, 0n);
    assert.equal(r.grant.model, 'acme/m');
    assert.equal(r.grant.tokens, 800);
    const no = t.tryAcquireGrant('acme/m', 300);
    assert.equal(no.ok, false);
    assert.equal(no.grant, null);
    assert.ok(no.retryAfterMs > 0);
    assert.equal(t.waitTime('acme/m', 200), 0);
    assert.ok(t.waitTime('acme/m', 300) > 0);
    throwsStatus(() => t.waitTime('acme/m', 1001), 'RT_E_TOO_LARGE');
    t.settle(r.grant, 100); // refund 700
    assert.equal(t.stats().models['acme/m'].tokens_per_minute.current, 100);
    assert.equal(t.waitTime('acme/m', 900), 0);
    assert.equal(t.tryAcquire('acme/m', 300).ok, true);
    // Ticket 0, or a forged ticket, is not a grant.
    throwsStatus(() => t.settle(new rt.Grant('acme/m', 0n, 1), 1), 'RT_E_INVALID');
    throwsStatus(() => t.settle(new rt.Grant('acme/m', 10n ** 15n, 1), 1), 'RT_E_INVALID');
  } finally {
    t.close();
  }
});

const tpm1000 = () => rt.open({ builtin_tiers: false, limits: { 'acme/m': { tpm: 1000 } } });
const tokensNow = (t) => t.stats().models['acme/m'].tokens_per_minute.current;
const requestsNow = (t) => t.stats().models['acme/m'].requests_per_minute.current;

test('settle: a refund gives the capacity back', () => {
  const t = tpm1000();
  try {
    t.record('acme/m', 100);
    const { grant } = t.tryAcquireGrant('acme/m', 800);
    assert.equal(tokensNow(t), 900);
    assert.equal(t.tryAcquire('acme/m', 200).ok, false, 'full before the refund');
    t.settle(grant, 250); // refund 550
    assert.equal(tokensNow(t), 350);
    assert.equal(requestsNow(t), 2, 'a settle changes tokens, not requests');
    assert.equal(t.canMake('acme/m', 650), true);
    assert.equal(t.tryAcquire('acme/m', 650).ok, true);
    assert.equal(tokensNow(t), 1000);
    assert.equal(t.tryAcquire('acme/m', 1).ok, false);
  } finally {
    t.close();
  }
});

test('settle: a top-up counts against the windows', () => {
  const t = tpm1000();
  try {
    const { grant } = t.tryAcquireGrant('acme/m', 200n); // bigint tokens
    assert.equal(grant.tokens, 200n);
    t.settle(grant, 700n); // top-up 500
    assert.equal(tokensNow(t), 700);
    assert.equal(requestsNow(t), 1);
    assert.equal(t.tryAcquire('acme/m', 301).ok, false);
    assert.equal(t.tryAcquire('acme/m', 300).ok, true);
    assert.equal(tokensNow(t), 1000);
  } finally {
    t.close();
  }
});

test('settle: a granted count that is not the grant\'s own is RT_E_INVALID, usage unchanged', () => {
  const t = tpm1000();
  try {
    t.record('acme/m', 600);
    const { grant } = t.tryAcquireGrant('acme/m', 300);
    assert.equal(tokensNow(t), 900);
    for (const wrong of [299, 301, 0, 10n ** 15n]) {
      throwsStatus(() => t.settle(new rt.Grant('acme/m', grant.ticket, wrong), 1), 'RT_E_INVALID');
      assert.equal(tokensNow(t), 900, `granted ${wrong}: usage must not change`);
    }
    // A forged ticket with the right count is refused too.
    throwsStatus(() => t.settle(new rt.Grant('acme/m', grant.ticket ^ 1n, 300), 1), 'RT_E_INVALID');
    assert.equal(tokensNow(t), 900);
    assert.equal(requestsNow(t), 2);
    // The grant itself still settles.
    t.settle(grant, 100);
    assert.equal(tokensNow(t), 700);
  } finally {
    t.close();
  }
});

test('settle: a ticket from another private tracker is RT_E_INVALID', () => {
  const a = tpm1000();
  const b = tpm1000();
  try {
    const { grant } = a.tryAcquireGrant('acme/m', 800);
    b.record('acme/m', 800);
    throwsStatus(() => b.settle(grant, 100), 'RT_E_INVALID');
    assert.equal(tokensNow(b), 800, 'the other tracker is unchanged');
    assert.equal(tokensNow(a), 800, 'the issuing tracker is unchanged');
    a.settle(grant, 100);
    assert.equal(tokensNow(a), 100);
    assert.equal(tokensNow(b), 800);
  } finally {
    a.close();
    b.close();
  }
});

test('acquire waits without blocking the event loop', async () => {
  const t = rt.open(shortWindow(2, 1));
  try {
    // Timed from before the window fills: the third request cannot be admitted
    // until about 1 s after the first two, however loaded the machine is.
    const start = Date.now();
    assert.ok((await t.acquire('acme/m')) instanceof rt.Grant);
    assert.ok((await t.acquire('acme/m', 0, { timeoutMs: 0 })) instanceof rt.Grant);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 20);
    const g = await t.acquire('acme/m', 5, { timeoutMs: 20_000 });
    const elapsed = Date.now() - start;
    clearInterval(timer);
    assert.ok(g instanceof rt.Grant);
    assert.equal(g.tokens, 5);
    assert.ok(elapsed >= 700 && elapsed < 15_000, `waited ${elapsed} ms`);
    assert.ok(ticks >= 3, `the event loop ran only ${ticks} ticks while waiting`);
    // The third was admitted once the first left the window; the second may
    // still be in it (they can fall in different buckets), but never more.
    const current = t.stats().models['acme/m'].requests_per_1s.current;
    assert.ok(current >= 1 && current <= 2, `requests_per_1s.current=${current}`);
  } finally {
    t.close();
  }
});

test('acquire times out (null, nothing recorded) and honours AbortSignal', async () => {
  // 30 s windows: a stalled test cannot see the window free up mid-way.
  const config = shortWindow(1, 30);
  config.limits['acme/m'].windows.push({ unit: 'tokens', limit: 1000, seconds: 30 });
  const t = rt.open(config);
  try {
    assert.ok(await t.acquire('acme/m'));
    assert.equal(await t.acquire('acme/m', 0, { timeoutMs: 0 }), null);
    const start = Date.now();
    assert.equal(await t.acquire('acme/m', 0, { timeoutMs: 150 }), null);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 100 && elapsed < 10_000, `timed out after ${elapsed} ms`);
    assert.equal(t.stats().models['acme/m'].requests_per_30s.current, 1);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('stop')), 50);
    await assert.rejects(t.acquire('acme/m', 0, { signal: ac.signal }), /stop/);
    await assert.rejects(t.acquire('acme/m', 1001, {}), (e) => e.status === 'RT_E_TOO_LARGE');
    await assert.rejects(t.acquire('acme/m', 0, { timeoutMs: -1 }), (e) => e.status === 'RT_E_INVALID');
  } finally {
    t.close();
  }
});

test('recordTokens books tokens to a counted request: token windows only, even past a limit', () => {
  const M = 'acme/tok';
  const t = rt.open({ builtin_tiers: false, limits: { [M]: { rpm: 2, tpm: 100, itpm: 80, otpm: 50 } } });
  try {
    assert.equal(t.tryAcquire(M, 10).ok, true);
    t.recordTokens(M, 30, 20); // the callback learned the request's real use
    t.recordTokens(M, 5); // output 0
    let m = t.stats().models[M];
    assert.equal(m.requests_per_minute.current, 1, 'no second request');
    assert.equal(m.tokens_per_minute.current, 65);
    assert.equal(m.input_tokens_per_minute.current, 45);
    assert.equal(m.output_tokens_per_minute.current, 20);
    t.recordTokens(M, 100n, 100n); // past every token limit: still booked
    m = t.stats().models[M];
    assert.equal(m.tokens_per_minute.current, 265);
    assert.equal(t.tryAcquire(M, 1).ok, false, 'the tokens count against the limits');
  } finally {
    t.close();
  }
});
