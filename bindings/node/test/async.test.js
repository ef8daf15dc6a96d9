'use strict';
// The asynchronous forms (*Async, and acquire): the same answers as the
// synchronous calls, run on the libuv thread pool with koffi's f.async, on
// memory and on a real redis-server (started here on a free loopback port).
const test = require('node:test');
const assert = require('node:assert/strict');
const rt = require('..');
const { redisSkip, startRedis } = require('./helpers/redis');
const { FakeLlmServer } = require('./helpers/fake-llm-server');
const { sdkSkip, load } = require('./helpers/integration');

const M = 'acme/m';
const limits = { [M]: { rpm: 20, tpm: 100000 } };

async function exercise(t) {
  // 8 concurrent callers, 40 tries for 20 slots: exactly 20 admitted.
  let admitted = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 5; i++) {
        const r = await t.tryAcquireAsync(M, 10);
        if (r.ok) admitted++;
        else {
          assert.ok(r.retryAfterMs > 0);
          refused++;
        }
      }
    }),
  );
  assert.equal(admitted, 20);
  assert.equal(refused, 20);
  let s = await t.statsAsync();
  assert.equal(s.models[M].requests_per_minute.current, 20);
  assert.equal(s.models[M].tokens_per_minute.current, 200);
  assert.equal(await t.canMakeAsync(M, 1), false);
  assert.ok((await t.waitTimeAsync(M, 1)) > 0);
  // Booking tokens to a counted request, and recording, never refuse.
  await t.recordTokensAsync(M, 30, 5);
  await t.recordAsync(M, 7);
  s = await t.statsAsync();
  assert.equal(s.models[M].requests_per_minute.current, 21);
  assert.equal(s.models[M].tokens_per_minute.current, 242);
  // Grants, settled asynchronously, on another model.
  const N = 'acme/n';
  const g = (await t.tryAcquireGrantAsync(N, 100)).grant;
  await t.settleAsync(g, 40);
  const io = (await t.tryAcquireIoAsync(N, 50, 50)).grant;
  await t.settleAsync(io, 10, 20);
  const p = await t.pickAsync([M, N], 5, 5);
  assert.equal(p.ok, true);
  assert.equal(p.model, N);
  await t.settleAsync(p.grant, 1, 1);
  assert.equal((await t.statsAsync()).models[N].tokens_per_minute.current, 72);
  // Provider truth.
  await t.observeHeadersAsync(N, { 'x-ratelimit-limit-requests': '50', 'x-ratelimit-remaining-requests': '40' });
  await t.reportLimitedAsync(N, 3);
  const r = await t.tryAcquireAsync(N);
  assert.equal(r.ok, false);
  assert.ok(r.retryAfterMs > 1000);
  s = await t.statsAsync();
  assert.equal(s.provider[N].requests.limit, 50);
  assert.match(await t.metricsTextAsync(), /ratetrack_window_usage/);
  // acquire waits with timers and the async calls; a timeout resolves null.
  assert.equal(await t.acquire(N, 1, { timeoutMs: 50 }), null);
  await t.resetAsync();
  assert.equal((await t.statsAsync()).models[M].requests_per_minute.current, 0);
  assert.ok((await t.acquire(M, 1, { timeoutMs: 0 })) instanceof rt.Grant);
}

test('the async forms on memory', async () => {
  const t = rt.open({ builtin_tiers: false, limits });
  try {
    await exercise(t);
  } finally {
    t.close();
  }
});

test('async errors: bad arguments reject before the call; a failure carries the status code', async () => {
  const t = rt.open({ builtin_tiers: false, limits });
  const invalid = (e) => e instanceof rt.RateTrackError && e.status === 'RT_E_INVALID';
  await assert.rejects(t.tryAcquireAsync('a\0b'), invalid);
  await assert.rejects(t.recordTokensAsync(M), invalid);
  await assert.rejects(t.settleAsync({}, 1), invalid);
  const g = new rt.Grant(M, 12345n, 10);
  await assert.rejects(t.settleAsync(g, 1), (e) => invalid(e) && /rt_settle/.test(e.message));
  t.close();
  await assert.rejects(t.statsAsync(), invalid);
});

test('close() during asynchronous calls frees the handle only after they return', async () => {
  const t = rt.open({ builtin_tiers: false, limits });
  const calls = Array.from({ length: 16 }, () => t.tryAcquireAsync(M, 1));
  t.close();
  const results = await Promise.all(calls);
  assert.equal(results.filter((r) => r.ok).length, 16);
  assert.equal(t.closed, true);
});

const skipRedis = redisSkip();

test('the async forms on redis://, and the OpenAI integration on it', { skip: skipRedis }, async () => {
  const redis = await startRedis();
  try {
    // 5 s: the default 50 ms is for production; a call that timed out on a
    // loaded machine is on_error's to decide, which is not what this checks.
    const backend = `${redis.url}?prefix=node-async-${process.pid}&timeout_ms=5000`;
    const t = rt.open({ builtin_tiers: false, backend, limits });
    const other = rt.open({ builtin_tiers: false, backend, limits }); // another tracker on the same Redis
    try {
      assert.match((await t.statsAsync()).backend, /^redis:\/\//);
      await exercise(t);
      // Both see the one budget.
      assert.equal((await other.statsAsync()).models[M].requests_per_minute.current, 1);
      const skipSdk = sdkSkip() || load('openai').skip;
      if (!skipSdk) {
        const OpenAI = require('openai');
        const { ratetrackFetch } = require('../openai');
        const server = await new FakeLlmServer({ rpm: 3 }).start();
        try {
          const name = 'openai/gpt-4o-mini';
          const cfg = { builtin_tiers: false, backend, limits: { [name]: { rpm: 3 } } };
          t.configure(cfg);
          other.configure(cfg);
          const c = new OpenAI({ apiKey: 'x', baseURL: `${server.url}/v1`, maxRetries: 0, fetch: ratetrackFetch({ tracker: t, timeoutMs: 0 }) });
          const c2 = new OpenAI({ apiKey: 'x', baseURL: `${server.url}/v1`, maxRetries: 0, fetch: ratetrackFetch({ tracker: other, timeoutMs: 0 }) });
          const ask = (cl) => cl.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hello there, how are you today?' }] });
          const results = await Promise.allSettled([ask(c), ask(c2), ask(c), ask(c2), ask(c), ask(c2)]);
          assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
          assert.equal(server.limited, 0);
          assert.equal((await other.statsAsync()).models[name].tokens_per_minute.current, server.tokens);
        } finally {
          await server.close();
        }
      }
    } finally {
      t.close();
      other.close();
    }
  } finally {
    await redis.stop();
  }
});

test('more concurrent async calls than koffi queues (256) all complete', async () => {
  const t = rt.open({ builtin_tiers: false, limits: { [M]: { rpm: 500 } } });
  try {
    const results = await Promise.all(Array.from({ length: 1000 }, () => t.tryAcquireAsync(M, 1)));
    assert.equal(results.filter((r) => r.ok).length, 500);
    assert.equal((await t.statsAsync()).models[M].requests_per_minute.current, 500);
  } finally {
    t.close();
  }
});
