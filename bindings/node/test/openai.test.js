'use strict';
// ratetrack/openai with the real `openai` package (pinned in devDependencies)
// against the fake server of helpers/fake-llm-server.js.
const test = require('node:test');
const assert = require('node:assert/strict');
const rt = require('..');
const { tracker, win, sdkSkip, load, rejection, withServer } = require('./helpers/integration');

const sdk = load('openai');
const skip = sdkSkip() || sdk.skip;
const OpenAI = sdk.mod;
const { ratetrackFetch, withRatetrack } = require('../openai');
const fetchImpl = require('../lib/integrations/fetch');

const MODEL = 'gpt-4o-mini';
const NAME = `openai/${MODEL}`;
// 120 characters of prompt: the estimate is 30 input tokens, the server's usage 26.
const PROMPT = 'Tell me something about rate limits, please, in a few short words. '.padEnd(120, '.');
const ask = (client, extra = {}) =>
  client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: PROMPT }], max_tokens: 20, ...extra });

function client(server, t, options = {}, clientOptions = {}) {
  return new OpenAI({
    apiKey: 'test',
    baseURL: `${server.url}/v1`,
    maxRetries: 0,
    fetch: ratetrackFetch({ tracker: t, ...options }),
    ...clientOptions,
  });
}

test('equal limits, sequential: 0 server 429s, the extra calls fail fast locally, token counts equal', { skip }, async () => {
  await withServer({ rpm: 5 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 5, tpm: 100000 } });
    const c = client(server, t, { timeoutMs: 0 });
    let ok = 0;
    const errors = [];
    for (let i = 0; i < 8; i++) {
      const e = await rejection(() => ask(c));
      if (e === null) ok++;
      else errors.push(e);
    }
    assert.equal(ok, 5);
    assert.equal(server.limited, 0, 'no 429 from the server');
    assert.equal(server.requests, 5, 'the refused calls were never sent');
    for (const e of errors) {
      assert.ok(e instanceof OpenAI.RateLimitError, String(e));
      assert.match(e.message, /ratetrack: no room for a request to openai\/gpt-4o-mini within 0 ms/);
      assert.equal(e.headers.get('x-ratetrack-limited'), NAME);
    }
    assert.equal(win(t, NAME, 'requests_per_minute').current, 5);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    assert.equal(server.tokens, 5 * (26 + 7));
    t.close();
  });
});

test('equal limits, concurrent: 0 server 429s and token counts equal (requests and tokens limits)', { skip }, async () => {
  // Requests bound: 12 at once for 6.
  await withServer({ rpm: 6 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 6 } });
    const c = client(server, t, { timeoutMs: 0 });
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => ask(c)));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 6);
    assert.equal(server.limited, 0);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    t.close();
  });
  // Tokens bound: 200 tokens a minute, 33 a call really, 50 estimated (30 + max_tokens 20).
  await withServer({ tpm: 200 }, async (server) => {
    const t = tracker({ [NAME]: { tpm: 200 } });
    const c = client(server, t, { timeoutMs: 0 });
    const first = await Promise.allSettled(Array.from({ length: 8 }, () => ask(c)));
    const okFirst = first.filter((r) => r.status === 'fulfilled').length;
    assert.equal(okFirst, 4, 'four estimates of 50 fit in 200');
    // Settled to 33 each, the refunds make room for one more (132 + 50 <= 200), then none.
    const second = await Promise.allSettled(Array.from({ length: 4 }, () => ask(c)));
    assert.equal(second.filter((r) => r.status === 'fulfilled').length, 1);
    assert.equal(server.limited, 0);
    assert.equal(server.served, 5);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    assert.equal(server.tokens, 5 * 33);
    t.close();
  });
});

test('waiting callers (timeoutMs) are admitted as room comes back, with 0 server 429s', { skip }, async () => {
  // A 2 s window on both sides; 6 concurrent callers for 3 a window wait for the next one.
  await withServer({ rpm: 3, windowMs: 2000 }, async (server) => {
    const t = tracker({ [NAME]: { windows: [{ unit: 'requests', limit: 3, seconds: 2 }] } });
    const c = client(server, t, { timeoutMs: 30000 });
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => ask(c)));
    assert.deepEqual(results.map((r) => r.status), Array(6).fill('fulfilled'));
    assert.equal(server.limited, 0);
    assert.equal(server.served, 6);
  });
});

test('tracker configured higher than the server: the limit learned from the first response is enforced', { skip }, async () => {
  // The server sends only x-ratelimit-limit-*: what stops the calls is the learned limit of 4,
  // not a "remaining" report. Needs the core's learned-limit enforcement (issue #26).
  await withServer({ rpm: 4, headers: 'limit-only' }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100 } });
    const c = client(server, t, { timeoutMs: 0 });
    await ask(c);
    assert.equal(win(t, NAME, 'requests_per_minute').observed_limit, 4);
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => ask(c)));
    assert.equal(server.limited, 0, `server 429s after the limit was learned: ${server.limited} (needs the core's learned-limit enforcement, issue #26)`);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
    assert.equal(server.served, 4);
    const w = win(t, NAME, 'requests_per_minute');
    assert.equal(w.remaining, 0, `the stats show the room really in force: ${JSON.stringify(w)}`);
    t.close();
  });
  // With the full headers (remaining too), the first burst can only be over by what is in flight.
  await withServer({ rpm: 4 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100 } });
    const c = client(server, t, { timeoutMs: 0 });
    const burst = 6;
    await Promise.allSettled(Array.from({ length: burst }, () => ask(c)));
    assert.ok(server.limited <= burst, `${server.limited} 429s`);
    const before = server.limited;
    await Promise.allSettled(Array.from({ length: 10 }, () => ask(c)));
    assert.equal(server.limited, before, 'no 429 once the provider has spoken');
    t.close();
  });
});

for (const backend of ['memory', 'shm']) {
  test(`a 429 with retry-after: 2 blocks every caller of the model (${backend}), with the SDK's own retries on`, { skip }, async () => {
    const shmName = `rt-node-openai-${process.pid}`;
    const config = { [NAME]: { rpm: 100 } };
    const extra = backend === 'shm' ? { backend: `shm:${shmName}` } : {};
    const t = tracker(config, extra);
    const other = backend === 'shm' ? tracker(config, extra) : t; // another process's view, through the segment
    try {
      await withServer({ rpm: 1, windowMs: 2000, retryAfter: 2, headers: 'none' }, async (server) => {
        const seen = [];
        const onAttempt = (info) => {
          if (info.status !== 429) return;
          // Right after the 429 is reported, before the SDK's retry: every caller is refused.
          const wait = other.waitTime(NAME);
          const r = other.tryAcquire(NAME);
          seen.push({ wait, ok: r.ok, retryAfterMs: r.retryAfterMs });
        };
        const c = client(server, t, { timeoutMs: 30000, onAttempt }, { maxRetries: 2 });
        await ask(c);
        const answer = await ask(c); // 429 (retry-after: 2), then the SDK's retry gets through
        assert.equal(answer.choices[0].finish_reason, 'stop');
        assert.equal(server.limited, 1);
        assert.equal(seen.length, 1);
        assert.ok(seen[0].wait > 1000 && seen[0].wait <= 2100, JSON.stringify(seen));
        assert.equal(seen[0].ok, false);
        assert.ok(seen[0].retryAfterMs > 1000, JSON.stringify(seen));
        // 3 attempts counted as requests; only the answered ones' tokens: never booked twice.
        assert.equal(win(t, NAME, 'requests_per_minute').current, 3);
        assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
        assert.equal(server.tokens, 2 * 33);
      });
    } finally {
      if (other !== t) other.close();
      t.close();
      if (backend === 'shm') rt.shmRemove(shmName);
    }
  });
}

test('streaming: include_usage is added and the grant settles to the real usage', { skip }, async () => {
  await withServer({}, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100, tpm: 100000 } });
    const c = client(server, t);
    const stream = await ask(c, { stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.match(text, /ok/);
    assert.deepEqual(server.bodies[0].stream_options, { include_usage: true });
    assert.equal(win(t, NAME, 'tokens_per_minute').current, 33, 'settled from 50 estimated to 26 + 7');
    assert.equal(server.tokens, 33);
    // A caller's own stream_options are kept.
    const s2 = await ask(c, { stream: true, stream_options: { include_usage: true } });
    for await (const chunk of s2) void chunk;
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    t.close();
  });
});

test('the Responses API (client.responses.create, plain and streaming) settles to its usage', { skip }, async () => {
  await withServer({ rpm: 50 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100, tpm: 100000 } });
    const c = client(server, t);
    const r = await c.responses.create({ model: MODEL, input: PROMPT, max_output_tokens: 20 });
    assert.match(r.output_text, /ok/);
    assert.deepEqual([r.usage.input_tokens, r.usage.output_tokens], [26, 7]);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, 33, 'settled to 26 + 7 from the estimate + 20 reserved');
    // stream: true: the usage comes in the response.completed event (no stream_options to add).
    const stream = await c.responses.create({ model: MODEL, input: [{ role: 'user', content: PROMPT }], max_output_tokens: 20, stream: true });
    let text = '';
    let completed;
    for await (const ev of stream) {
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') completed = ev.response;
    }
    assert.match(text, /ok/);
    assert.equal(completed.usage.total_tokens, 33);
    assert.equal(server.bodies[1].stream_options, undefined);
    // The SDK's responses.stream() helper, on the same endpoint.
    const helper = c.responses.stream({ model: MODEL, input: PROMPT, max_output_tokens: 20 });
    const final = await helper.finalResponse();
    assert.equal(final.usage.output_tokens, 7);
    assert.deepEqual(server.paths, ['/v1/responses', '/v1/responses', '/v1/responses']);
    assert.equal(server.tokens, 3 * 33);
    assert.equal(win(t, NAME, 'tokens_per_minute').current, server.tokens);
    assert.equal(win(t, NAME, 'requests_per_minute').current, 3);
    assert.equal(t.stats().provider[NAME].requests.limit, 50);
    t.close();
  });
});

test('withRatetrack(client) wraps a constructed client; headers of every attempt are observed', { skip }, async () => {
  await withServer({ rpm: 50, tpm: 10000 }, async (server) => {
    const t = tracker({ [NAME]: { rpm: 100, tpm: 100000 } });
    const c = withRatetrack(new OpenAI({ apiKey: 'test', baseURL: `${server.url}/v1`, maxRetries: 0 }), { tracker: t });
    const { data, response } = await ask(c).withResponse();
    assert.equal(data.usage.prompt_tokens, 26);
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '50');
    const s = t.stats();
    assert.equal(s.provider[NAME].requests.limit, 50);
    assert.equal(s.provider[NAME].requests.remaining, 49);
    assert.equal(s.models[NAME].tokens_per_minute.current, 33);
    t.close();
  });
});

test('options are checked; a request the wrapper cannot read passes through untouched', { skip }, async () => {
  const bad = (o) => assert.throws(() => ratetrackFetch(o), (e) => e instanceof rt.RateTrackError && e.status === 'RT_E_INVALID');
  bad({ tracker: {} });
  bad({ timeoutMs: -1 });
  bad({ timeoutMs: NaN });
  bad({ model: 5 });
  bad({ provider: 'a/b' });
  bad({ onAttempt: 'x' });
  bad({ defaultOutputTokens: 1.5 });
  bad('x');
  const t = tracker({});
  let called = 0;
  const f = ratetrackFetch({ tracker: t, fetch: async () => (called++, new Response('{}')) });
  await f('http://127.0.0.1:9/v1/models'); // a GET
  await f('http://127.0.0.1:9/v1/chat/completions', { method: 'POST', body: new Uint8Array(3) }); // not JSON text
  await f('http://127.0.0.1:9/v1/chat/completions', { method: 'POST', body: '{"messages": []}' }); // no model
  assert.equal(called, 3);
  assert.deepEqual(t.stats().models, {});
  t.close();
});

test('only the endpoints that spend the limits are tracked', { skip }, async () => {
  const t = tracker({});
  const urls = [];
  const f = ratetrackFetch({ tracker: t, fetch: async (u) => (urls.push(u), new Response('{"input_tokens": 3}', { headers: { 'content-type': 'application/json' } })) });
  const post = (path) => f(`http://127.0.0.1:9${path}`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: [] }) });
  await post('/v1/messages/count_tokens');
  await post('/v1/messages/batches');
  await post('/v1/moderations');
  assert.deepEqual(t.stats().models, {});
  await post('/v1/chat/completions');
  await post('/v1/messages?beta=true');
  assert.equal(t.stats().models['openai/m'].requests_per_minute.current, 2);
  assert.equal(urls.length, 5);
  t.close();
});

test('an answer whose usage has no output side (embeddings) settles the output reservation to 0', async () => {
  const t = tracker({ 'openai/text-embedding-3-small': { rpm: 100, tpm: 100000 } });
  const answer = { object: 'list', data: [], model: 'text-embedding-3-small', usage: { prompt_tokens: 5, total_tokens: 5 } };
  const f = ratetrackFetch({
    tracker: t,
    fetch: async () => new Response(JSON.stringify(answer), { headers: { 'content-type': 'application/json' } }),
  });
  await f('http://127.0.0.1:9/v1/embeddings', { method: 'POST', body: JSON.stringify({ model: 'text-embedding-3-small', input: 'hello' }) });
  // not 5 + the 1024 output tokens reserved: an embedding has no output
  assert.equal(win(t, 'openai/text-embedding-3-small', 'tokens_per_minute').current, 5);
  t.close();
});

test('images and files inline in a request (base64) are not counted as text in the estimate', async () => {
  const image = 'iVBORw0KGgo'.repeat(40000); // 440 000 characters of base64
  const openaiBody = {
    model: 'gpt-4o-mini',
    max_tokens: 10,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${image}` } }] }],
  };
  const anthropicBody = {
    model: 'claude-sonnet-4-5',
    max_tokens: 10,
    messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: image } }, { type: 'text', text: 'What is this?' }] }],
  };
  for (const [provider, body, path] of [['openai', openaiBody, '/v1/chat/completions'], ['anthropic', anthropicBody, '/v1/messages']]) {
    const name = `${provider}/${body.model}`;
    // 100 000 tokens a minute: the image's 110 000 characters/4 would never fit
    const t = tracker({ [name]: { rpm: 100, tpm: 100000 } });
    let seen;
    const f = fetchImpl.ratetrackFetch({
      tracker: t,
      timeoutMs: 0,
      fetch: async () => ((seen = win(t, name, 'tokens_per_minute').current), new Response('not json')),
    }, provider);
    const res = await f(`http://127.0.0.1:9${path}`, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 200, `${provider}: admitted`);
    assert.ok(seen < 100, `${provider}: estimate + 10 reserved is ${seen}, not the image's characters / 4`);
    t.close();
  }
});
