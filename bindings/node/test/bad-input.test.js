'use strict';
// Hostile input (issue #24): what the C API cannot represent is refused with
// a RateTrackError (RT_E_INVALID for an argument, RT_E_CONFIG inside a
// configuration), never cut at a NUL, mapped to U+FFFD, wrapped or turned
// into null. Every refusal happens before the C call: nothing is recorded.
const test = require('node:test');
const assert = require('node:assert/strict');
const rt = require('..');
const checks = require('../lib/checks');

const M = 'acme/m';
const CONFIG = { builtin_tiers: false, limits: { [M]: { rpm: 1000, tpm: 1000000000 } } };

/** [name, fn(tracker), status]; fn may return a promise (async refusals). */
const TABLE = [];
const row = (name, fn, status = 'RT_E_INVALID') => TABLE.push([name, fn, status]);
const grant = (fields = {}) => {
  const g = { model: M, ticket: 1n, tokens: 1, outputTokens: 0, ...fields };
  return new rt.Grant(g.model, g.ticket, g.tokens, g.outputTokens);
};

// -- counts: uint64; a safe-integer Number or a BigInt up to 2^64-1 ----------------
const COUNTS = [
  ['canMake', (t, n) => t.canMake(M, n)],
  ['record', (t, n) => t.record(M, n)],
  ['tryAcquire', (t, n) => t.tryAcquire(M, n)],
  ['tryAcquireGrant', (t, n) => t.tryAcquireGrant(M, n)],
  ['tryAcquireIo.input', (t, n) => t.tryAcquireIo(M, n, 0)],
  ['tryAcquireIo.output', (t, n) => t.tryAcquireIo(M, 0, n)],
  ['acquire.tokens', (t, n) => t.acquire(M, n, { timeoutMs: 0 })],
  ['acquire.outputTokens', (t, n) => t.acquire(M, 0, { timeoutMs: 0, outputTokens: n })],
  ['pick.input', (t, n) => t.pick([M], n, 0)],
  ['pick.output', (t, n) => t.pick([M], 0, n)],
  ['settle.actual', (t, n) => t.settle(grant(), n)],
  ['settle.actualOutput', (t, n) => t.settle(grant(), 0, n)],
  ['settle.grant.tokens', (t, n) => t.settle(grant({ tokens: n }), 1)],
  ['settle.grant.ticket', (t, n) => t.settle(grant({ ticket: n }), 1)],
  ['settle.grant.outputTokens', (t, n) => t.settle(grant({ outputTokens: n }), 1, 1)],
  ['waitTime', (t, n) => t.waitTime(M, n)],
  ['recordTokens.input', (t, n) => t.recordTokens(M, n, 0)],
  ['recordTokens.output', (t, n) => t.recordTokens(M, 1, n)],
  // The asynchronous forms check the same way (and reject).
  ['recordTokensAsync.input', (t, n) => t.recordTokensAsync(M, n, 0)],
  ['recordTokensAsync.output', (t, n) => t.recordTokensAsync(M, 1, n)],
  ['recordAsync', (t, n) => t.recordAsync(M, n)],
  ['tryAcquireAsync', (t, n) => t.tryAcquireAsync(M, n)],
  ['tryAcquireIoAsync.output', (t, n) => t.tryAcquireIoAsync(M, 0, n)],
  ['settleAsync.actual', (t, n) => t.settleAsync(grant(), n)],
  ['pickAsync.input', (t, n) => t.pickAsync([M], n, 0)],
  ['waitTimeAsync', (t, n) => t.waitTimeAsync(M, n)],
];
const BAD_COUNTS = [NaN, Infinity, -Infinity, -1, -0.5, 1.5, 2 ** 53, 2 ** 64, -1n, 2n ** 64n, 2n ** 64n + 5n, '1', null, true, {}];
for (const [name, call] of COUNTS) {
  for (const bad of BAD_COUNTS) row(`${name}=${show(bad)}`, (t) => call(t, bad));
}

// -- timeouts: omitted is "no timeout"; the rest is a count of ms ---------------------
for (const bad of [NaN, Infinity, -Infinity, -1, 1.5, 2 ** 53, 2n ** 64n, '1', null]) {
  row(`acquire.timeoutMs=${show(bad)}`, (t) => t.acquire(M, 1, { timeoutMs: bad }));
}

// -- strings: a NUL would cut the text short in C --------------------------------------
const STRING_CALLS = [
  ['canMake.model', (t, s) => t.canMake(s)],
  ['record.model', (t, s) => t.record(s)],
  ['tryAcquire.model', (t, s) => t.tryAcquire(s)],
  ['tryAcquireGrant.model', (t, s) => t.tryAcquireGrant(s)],
  ['tryAcquireIo.model', (t, s) => t.tryAcquireIo(s, 1, 1)],
  ['acquire.model', (t, s) => t.acquire(s, 1, { timeoutMs: 0 })],
  ['waitTime.model', (t, s) => t.waitTime(s)],
  ['recordTokens.model', (t, s) => t.recordTokens(s, 1, 1)],
  ['recordTokensAsync.model', (t, s) => t.recordTokensAsync(s, 1, 1)],
  ['tryAcquireGrantAsync.model', (t, s) => t.tryAcquireGrantAsync(s)],
  ['observeHeadersAsync.model', (t, s) => t.observeHeadersAsync(s, {})],
  ['reportLimitedAsync.retryAfter', (t, s) => t.reportLimitedAsync(M, `3${s}`)],
  ['pick.models', (t, s) => t.pick(['other/x', s])],
  ['settle.grant.model', (t, s) => t.settle(grant({ model: s }), 1)],
  ['observeHeaders.model', (t, s) => t.observeHeaders(s, {})],
  ['reportLimited.model', (t, s) => t.reportLimited(s, 1)],
  ['reportLimited.retryAfter', (t, s) => t.reportLimited(M, `3${s}`)],
  ['globalTracker.tier', (t, s) => rt.globalTracker(`tier1${s}`)],
  ['shmRemove.name', (t, s) => rt.shmRemove(`n${s}`)],
  ['load.path', (t, s) => rt.load(`/tmp/libratetrack.so.0${s}`)],
];
const NUL = 'acme/m\0evil';
// Lone surrogates: both become U+FFFD in UTF-8, so two names would be one model.
const LONE = ['acme/\ud800', 'acme/\udfff', 'acme/\udc00\ud800', '\ud83d'];
for (const [name, call] of STRING_CALLS) {
  row(`NUL in ${name}`, (t) => call(t, NUL));
  for (const s of LONE) row(`lone surrogate ${show(s)} in ${name}`, (t) => call(t, s));
}
// recordTokens(model) alone would book nothing: refused, not a silent no-op.
row('recordTokens without inputTokens', (t) => t.recordTokens(M));
row('recordTokensAsync without inputTokens', (t) => t.recordTokensAsync(M));
row('NUL in observeHeaders.name', (t) => t.observeHeaders(M, { 'x-ratelimit-remaining-requests\0x': '0' }));
row('NUL in observeHeaders.value', (t) => t.observeHeaders(M, [['x-ratelimit-remaining-requests', '0\0 left']]));

// -- configuration (RT_E_CONFIG): JSON.stringify would write NaN as null (unlimited) --
const withRpm = (v) => ({ builtin_tiers: false, limits: { [M]: { rpm: v } } });
const CONFIG_CALLS = [
  ['open', (t, c) => rt.open(c)],
  ['configure', (t, c) => t.configure(c)],
  ['configureGlobal', (t, c) => rt.configureGlobal(c)],
];
const BAD_CONFIGS = [
  ['rpm NaN', withRpm(NaN)],
  ['rpm Infinity', withRpm(Infinity)],
  ['rpm -Infinity', withRpm(-Infinity)],
  ['rpm undefined', withRpm(undefined)],
  ['rpm 2^64 (a Number)', withRpm(2 ** 64)],
  ['rpm 2^64 (a BigInt)', withRpm(2n ** 64n)],
  ['rpm a function', withRpm(() => 1)],
  ['rpm a Symbol', withRpm(Symbol('x'))],
  ['windows[0].limit NaN', { limits: { [M]: { windows: [{ unit: 'requests', limit: NaN, seconds: 2 }] } } }],
  ['windows [undefined]', { limits: { [M]: { windows: [undefined] } } }],
  ['limits a Map', { limits: new Map([[M, { rpm: 1 }]]) }],
  ['NUL in a key', { limits: { [NUL]: { rpm: 1 } } }],
  ['NUL in a value', { tier: 'tier1\0evil' }],
  ['lone surrogate in a key', { limits: { 'acme/\ud800': { rpm: 1 } } }],
  ['lone surrogate in a value', { tier: 'tier\udc00' }],
  ['a cycle', (() => { const c = { limits: {} }; c.limits.self = c; return c; })()],
  ['NUL in JSON text', '{"tier": "tier1"}\0junk'],
  ['lone surrogate in JSON text', '{"tier": "tier\ud800"}'],
];
for (const [callName, call] of CONFIG_CALLS) {
  for (const [what, cfg] of BAD_CONFIGS) row(`${callName}: ${what}`, (t) => call(t, cfg), 'RT_E_CONFIG');
}

// -- other numbers --------------------------------------------------------------------
for (const bad of [NaN, Infinity, -1, -0.5]) row(`reportLimited(${show(bad)})`, (t) => t.reportLimited(M, bad));
row('reportLimited(-1n)', (t) => t.reportLimited(M, -1n));
row('reportLimited(an invalid Date)', (t) => t.reportLimited(M, new Date('nope')));
for (const bad of [2 ** 31, -(2 ** 31) - 1, 2 ** 32, NaN, 1.5, '1']) {
  row(`statusString(${show(bad)})`, () => rt.statusString(bad));
}

function show(v) {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'object' && v !== null) return '{}';
  return String(v);
}

async function refusal(fn) {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  return null;
}

test('bad input table: every case is refused with a RateTrackError of its status', async () => {
  const t = rt.open(CONFIG);
  try {
    const wrong = [];
    for (const [name, fn, status] of TABLE) {
      const e = await refusal(() => fn(t));
      if (!(e instanceof rt.RateTrackError) || e.status !== status || e.code !== rt.Status[status]) {
        wrong.push(`${name}: ${e ? `${e.constructor.name} ${e.message}` : 'not refused'}`);
      }
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${TABLE.length} cases not refused as expected`);
    // Nothing reached the library: no use, no name cut short or turned into U+FFFD.
    const stats = t.stats();
    assert.deepEqual(Object.keys(stats.models), [M]);
    assert.equal(stats.models[M].requests_per_minute.current, 0);
    assert.equal(stats.models[M].requests_per_minute.limit, 1000);
    assert.equal(stats.models[M].tokens_per_minute.current, 0);
    assert.equal(stats.provider, undefined);
  } finally {
    t.close();
  }
  assert.ok(TABLE.length >= 300, `only ${TABLE.length} cases`);
});

test('the edges of what is accepted', async () => {
  const t = rt.open(CONFIG);
  try {
    throwsTooLarge(() => t.canMake(M, 2n ** 64n - 1n)); // the largest counts are counts
    throwsTooLarge(() => t.canMake(M, Number.MAX_SAFE_INTEGER));
    const g = await t.acquire(M, 10, { timeoutMs: 0n }); // BigInt timeouts are counts too
    assert.ok(g instanceof rt.Grant);
    t.settle(g, 2 ** 32); // a top-up past the limit is booked
    assert.equal(t.stats().models[M].tokens_per_minute.current, 2 ** 32);
    t.record(M, -0); // -0 is 0
    t.reportLimited('other/x', 10n ** 30n); // any BigInt of seconds: the library caps a 429 at a day
    assert.ok(t.tryAcquire('other/x').retryAfterMs <= 86400000);
    // A well-formed pair (an emoji) is text like any other.
    assert.equal(t.tryAcquire('acme/\ud83d\ude00').ok, true);
    assert.equal(typeof rt.statusString(2 ** 31 - 1), 'string');
    assert.equal(typeof rt.statusString(-(2 ** 31)), 'string');
  } finally {
    t.close();
  }
  // null is how a configuration object says "unlimited".
  const u = rt.open({ builtin_tiers: false, limits: { [M]: { rpm: null, tpm: 5 } } });
  assert.equal(u.stats().models[M].requests_per_minute.limit, null);
  u.close();
});

test('a header that is not UTF-8 (a lone surrogate) is skipped like any malformed one', () => {
  const t = rt.open({ builtin_tiers: false, limits: { 'openai/gpt-4o-mini': { rpm: 500 } } });
  try {
    t.observeHeaders('openai/gpt-4o-mini', [
      ['x-ratelimit-remaining-requests', '0\ud800'],
      ['x-ratelimit-remaining-requests\udc00', '0'],
      ['x-ratelimit-limit-requests', '60'],
    ]);
    const requests = t.stats().provider['openai/gpt-4o-mini'].requests;
    assert.equal(requests.remaining, null);
    assert.equal(requests.limit, 60);
  } finally {
    t.close();
  }
});

test('the lone-surrogate check for Node 18 (no String.prototype.isWellFormed) agrees with it', () => {
  const samples = ['', 'a', 'acme/m', 'é', '\u{1F600}', 'a\ud83d\ude00b', '\ud800', '\udfff', 'a\ud800b',
    '\udc00\ud800', '\ud83d\ud83d\ude00', '\ud83d\ude00\ude00', 'x'.repeat(100) + '\ud800'];
  for (const s of samples) {
    const expected = !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
    assert.equal(checks.isWellFormedFallback(s), expected, JSON.stringify(s));
    if (typeof s.isWellFormed === 'function') assert.equal(s.isWellFormed(), expected, JSON.stringify(s));
  }
});

function throwsTooLarge(fn) {
  assert.throws(fn, (e) => e instanceof rt.RateTrackError && e.status === 'RT_E_TOO_LARGE');
}

test('without String.prototype.isWellFormed (Node 18) lone surrogates are still refused', () => {
  const { execFileSync } = require('node:child_process');
  const script = `
    delete String.prototype.isWellFormed;
    const checks = require(${JSON.stringify(require.resolve('../lib/checks'))});
    const refused = (f) => { try { f(); return false; } catch (e) { return e.status === 'RT_E_INVALID'; } };
    const ok = refused(() => checks.model('acme/\\ud800')) && refused(() => checks.text('\\udc00x', 'tier')) &&
      checks.model('acme/\\ud83d\\ude00') === 'acme/\\ud83d\\ude00' && checks.isWellFormed === checks.isWellFormedFallback;
    process.stdout.write(ok ? 'ok' : 'not ok');
  `;
  assert.equal(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }), 'ok');
});
