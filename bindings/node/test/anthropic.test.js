'use strict';
// ratetrack/anthropic with the real `@anthropic-ai/sdk` package (pinned in
// devDependencies) against the fake server of helpers/fake-llm-server.js.
const test = require('node:test');
const assert = require('node:assert/strict');
const { tracker, win, sdkSkip, load, rejection, withServer } = require('./helpers/integration');

const sdk = load('@anthropic-ai/sdk');
const skip = sdkSkip() || sdk.skip;
const Anthropic = sdk.mod && (sdk.mod.default || sdk.mod);
const { ratetrackFetch, withRatetrack } = require('../anthropic');

const MODEL = 'claude-sonnet-4-5';
const NAME = `anthropic/${MODEL}`;
// 100 characters of system prompt + message: the estimate is 25 input tokens, the server's usage 22.
const SYSTEM = 'You are terse.';
const PROMPT = 'Tell me something about rate limits, please, in a few words. '.padEnd(86, '.');
const ask = (client, extra = {}) =>
  client.messages.create({ model: MODEL, max_tokens: 20, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }], ...extra });
const REAL = 22 + 7;

function client(server, t, options = {}, clientOptions = {}) {
  return new Anthropic({
    apiKey: 'test',
    baseURL: server.url,
    maxRetries: 0,
    fetch: ratetrackFetch({ tracker: t, ...options }),
    ...clientOptions,
  });
}

test('equal limits, sequential and concurrent: 0 server 429s, token counts equal', { skip }, async () => {
  await withServer({ rpm: 4, tpm: 100000 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 4, tpm: 100000 } });
    const c = client(server, t, { timeoutMs: 0 });
    let ok = 0;
    for (let i = 0; i < 3; i++) if ((await rejection(() => ask(c))) === null) ok++;
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => ask(c)));
    ok += results.filter((r) => r.status === 'fulfilled').length;
    assert.equal(ok, 4);
    assert.equal(server.limited, 0);
    assert.equal(server.requests, 4);
    const refused = results.find((r) => r.status === 'rejected').reason;
    assert.ok(refused instanceof Anthropic.RateLimitError, String(refused));
    assert.match(refused.message, /ratetrack: no room for a request to anthropic\/claude-sonnet-4-5/);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    assert.equal(server.tokens, 4 * REAL);
    // The anthropic-ratelimit-* headers (RFC 3339 resets) were read.
    const p = t.stats().provider[NAME];
    assert.equal(p.requests.limit, 4);
    assert.equal(p.requests.remaining, 0);
    t.close();
  });
});

test('input and output limits (itpm / otpm) are settled apart', { skip }, async () => {
  await withServer({}, async (server) => {
    const t = tracker({ [NAME]: { itpm: 10000, otpm: 10000 } });
    const c = client(server, t);
    const m = await ask(c);
    assert.equal(m.usage.input_tokens, 22);
    assert.equal(win(t, NAME, 'input_tokens_per_minute').current, 22);
    assert.equal(win(t, NAME, 'output_tokens_per_minute').current, 7);
    t.close();
  });
});

test('tracker configured higher than the server: the limit learned from the first response is enforced', { skip }, async () => {
  // Only anthropic-ratelimit-requests-limit is sent: needs the core's learned-limit enforcement (issue #26).
  await withServer({ rpm: 3, headers: 'limit-only' }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100 } });
    const c = client(server, t, { timeoutMs: 0 });
    await ask(c);
    await Promise.allSettled(Array.from({ length: 8 }, () => ask(c)));
    assert.equal(server.limited, 0, `server 429s after the limit was learned: ${server.limited} (needs the core's learned-limit enforcement, issue #26)`);
    assert.equal(server.served, 3);
    t.close();
  });
});

test('a 429 with retry-after: 2 blocks every caller of the model, with the SDK\'s own retries on', { skip }, async () => {
  await withServer({ rpm: 1, windowMs: 2000, retryAfter: 2, headers: 'none' }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100 } });
    const seen = [];
    const onAttempt = (info) => {
      if (info.status === 429) seen.push({ wait: t.waitTime(NAME), ok: t.tryAcquire(NAME).ok });
    };
    const c = client(server, t, { timeoutMs: 30000, onAttempt }, { maxRetries: 2 });
    await ask(c);
    const m = await ask(c);
    assert.equal(m.stop_reason, 'end_turn');
    assert.equal(server.limited, 1);
    assert.equal(seen.length, 1);
    assert.ok(seen[0].wait > 1000 && seen[0].wait <= 2100, JSON.stringify(seen));
    assert.equal(seen[0].ok, false);
    assert.equal(win(t, NAME, 'requests_per_minute').current, 3);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    t.close();
  });
});

test('streaming (create with stream: true, and messages.stream): settles message_start input + message_delta output', { skip }, async () => {
  await withServer({}, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100, tpm: 100000 } });
    const c = client(server, t);
    const stream = await ask(c, { stream: true });
    const types = [];
    for await (const ev of stream) types.push(ev.type);
    assert.deepEqual(types.slice(0, 1).concat(types.slice(-2)), ['message_start', 'message_delta', 'message_stop']);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, REAL, 'settled from 45 estimated');
    const final = await c.messages
      .stream({ model: MODEL, max_tokens: 20, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] })
      .finalMessage();
    assert.equal(final.usage.output_tokens, 7);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    assert.equal(server.tokens, 2 * REAL);
    t.close();
  });
});

test('withRatetrack(client) wraps a constructed Anthropic client', { skip }, async () => {
  await withServer({ rpm: 9 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100, tpm: 100000 } });
    const c = withRatetrack(new Anthropic({ apiKey: 'test', baseURL: server.url, maxRetries: 0 }), { tracker: t });
    await ask(c);
    assert.equal(t.stats().provider[NAME].requests.limit, 9);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, REAL);
    t.close();
  });
});
