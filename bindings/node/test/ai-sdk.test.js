'use strict';
// ratetrack/ai: the Vercel AI SDK middleware with the real `ai` package and
// the @ai-sdk/openai (its default model, on the Responses API, and .chat) and
// @ai-sdk/anthropic providers under it (pinned
// in devDependencies), against the fake server of helpers/fake-llm-server.js.
const test = require('node:test');
const assert = require('node:assert/strict');
const { tracker, win, sdkSkip, load, withServer } = require('./helpers/integration');

const ai = load('ai');
const aiOpenai = load('@ai-sdk/openai');
const aiAnthropic = load('@ai-sdk/anthropic');
const skip = sdkSkip() || ai.skip || aiOpenai.skip || aiAnthropic.skip;
const { ratetrackMiddleware, RateTrackLimitError } = require('../ai');

const PROMPT = 'Tell me something about rate limits, please, in a few short words. '.padEnd(120, '.');

const PROVIDERS = [
  {
    // openai('gpt-4o-mini'), the provider's default: POST /v1/responses
    name: 'openai/gpt-4o-mini',
    label: "openai('gpt-4o-mini') (Responses API)",
    path: '/v1/responses',
    model: (server) => aiOpenai.mod.createOpenAI({ apiKey: 'test', baseURL: `${server.url}/v1` })('gpt-4o-mini'),
  },
  {
    name: 'openai/gpt-4o-mini',
    label: "openai.chat('gpt-4o-mini')",
    path: '/v1/chat/completions',
    model: (server) => aiOpenai.mod.createOpenAI({ apiKey: 'test', baseURL: `${server.url}/v1` }).chat('gpt-4o-mini'),
  },
  {
    name: 'anthropic/claude-sonnet-4-5',
    model: (server) => aiAnthropic.mod.createAnthropic({ apiKey: 'test', baseURL: `${server.url}/v1` })('claude-sonnet-4-5'),
  },
];

for (const p of PROVIDERS) {
  test(`${p.label ?? p.name}: generateText and streamText through the middleware settle the real usage`, { skip }, async () => {
    await withServer({ rpm: 50 }, async (server) => {
      const t = tracker({ [p.name]: { rpm: 100, tpm: 100000 } });
      const model = ai.mod.wrapLanguageModel({ model: p.model(server), middleware: ratetrackMiddleware({ tracker: t }) });
      const g = await ai.mod.generateText({ model, prompt: PROMPT, maxOutputTokens: 20, maxRetries: 0 });
      assert.equal(g.usage.inputTokens, 26);
      assert.equal(win(t, p.name, 'tokens_per_minute').current, 33, 'settled from 50 estimated');
      const s = ai.mod.streamText({ model, prompt: PROMPT, maxOutputTokens: 20, maxRetries: 0 });
      let text = '';
      for await (const delta of s.textStream) text += delta;
      assert.match(text, /ok/);
      assert.equal((await s.usage).outputTokens, 7);
      assert.equal(win(t, p.name, 'tokens_per_minute').current, server.tokens);
      assert.equal(server.tokens, 2 * 33);
      assert.equal(win(t, p.name, 'requests_per_minute').current, 2);
      if (p.path) assert.deepEqual(server.paths, [p.path, p.path]);
      // The response headers were observed.
      assert.equal(t.stats().provider[p.name].requests.limit, 50);
      t.close();
    });
  });

  test(`${p.label ?? p.name}: concurrent generateText and streamText keep within equal limits (0 server 429s)`, { skip }, async () => {
    await withServer({ rpm: 4 }, async (server) => {
      const t = tracker({ [p.name]: { rpm: 4 } });
      const model = ai.mod.wrapLanguageModel({ model: p.model(server), middleware: ratetrackMiddleware({ tracker: t, timeoutMs: 0 }) });
      const gen = () => ai.mod.generateText({ model, prompt: PROMPT, maxOutputTokens: 20 });
      // A refused stream fails through onError (its text then rejects with
      // AI_NoOutputGeneratedError): the error passed there is the refusal.
      const stream = async () => {
        let failure;
        const s = ai.mod.streamText({
          model, prompt: PROMPT, maxOutputTokens: 20, onError: ({ error }) => { failure = error; },
        });
        try {
          await s.consumeStream();
          const text = await s.text;
          if (failure === undefined) return text;
        } catch (e) {
          if (failure === undefined) throw e;
        }
        throw failure;
      };
      const calls = [gen, stream, gen, stream, gen, stream, gen, stream];
      const results = await Promise.allSettled(calls.map((f) => f()));
      assert.equal(server.limited, 0);
      assert.equal(server.served, 4);
      const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
      for (const e of refused) assert.ok(e instanceof RateTrackLimitError || e?.cause instanceof RateTrackLimitError, String(e));
      assert.equal(win(t, p.name, 'tokens_per_minute').current, server.tokens);
      t.close();
    });
  });
}

for (const p of PROVIDERS.slice(0, 2)) test(`${p.label}: a 429 through the AI SDK (its own retries on) is reported and blocks the model`, { skip }, async () => {
  await withServer({ rpm: 1, windowMs: 2000, retryAfter: 2, headers: 'none' }, async (server) => {
    const name = 'openai/gpt-4o-mini';
    const t = tracker({ [name]: { rpm: 100 } });
    const seen = [];
    const onAttempt = (info) => {
      // Right after the 429 is reported, before the AI SDK's retry: every caller is refused.
      if (info.status === 429) seen.push({ wait: t.waitTime(name), ok: t.tryAcquire(name).ok });
    };
    const middleware = ratetrackMiddleware({ tracker: t, onAttempt });
    const model = ai.mod.wrapLanguageModel({ model: p.model(server), middleware });
    await ai.mod.generateText({ model, prompt: PROMPT, maxOutputTokens: 20 });
    const g = await ai.mod.generateText({ model, prompt: PROMPT, maxOutputTokens: 20, maxRetries: 2 });
    assert.equal(g.usage.outputTokens, 7);
    assert.equal(server.limited, 1);
    assert.equal(seen.length, 1);
    assert.ok(seen[0].wait > 1000 && seen[0].wait <= 2100, JSON.stringify(seen));
    assert.equal(seen[0].ok, false);
    assert.equal(win(t, name, 'requests_per_minute').current, 3);
    assert.equal(win(t, name, 'tokens_per_minute').current, server.tokens);
    assert.deepEqual(new Set(server.paths), new Set([p.path]));
    t.close();
  });
});

test('a file or image part of the prompt (its data) is not counted as text in the estimate', async () => {
  const t = tracker({ 'openai/gpt-4o-mini': { rpm: 100, tpm: 100000 } });
  const image = 'iVBORw0KGgo'.repeat(40000); // 440 000 characters of base64
  let seen;
  const mw = ratetrackMiddleware({ tracker: t, timeoutMs: 0 });
  await mw.wrapGenerate({
    params: {
      maxOutputTokens: 10,
      prompt: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'file', mediaType: 'image/png', data: image }] }],
    },
    model: { provider: 'openai.chat', modelId: 'gpt-4o-mini' },
    doGenerate: async () => {
      seen = win(t, 'openai/gpt-4o-mini', 'tokens_per_minute').current;
      return { content: [], usage: { inputTokens: { total: 7 }, outputTokens: { total: 3 } }, response: { headers: {} } };
    },
  });
  assert.ok(seen < 100, `estimate + 10 reserved is ${seen}, not the image's characters / 4`);
  assert.equal(win(t, 'openai/gpt-4o-mini', 'tokens_per_minute').current, 10);
  t.close();
});

/** A LanguageModelV3 stream of a few parts that then hangs, as a slow provider's does, erroring with the abort reason when `signal` aborts (as a fetch body does); `cancelled` tells whether it was cancelled. */
function hangingStream(parts, signal) {
  const state = { cancelled: false };
  state.stream = new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(p);
      signal?.addEventListener('abort', () => c.error(signal.reason));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return state;
}

const STARTED = [
  { type: 'stream-start', warnings: [] },
  { type: 'text-start', id: '1' },
  { type: 'text-delta', id: '1', delta: 'hello ' },
];

/** A promise of the first onAttempt call, rejected after ms if none comes. */
function firstAttempt(ms = 5000) {
  let onAttempt;
  const seen = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`onAttempt not called within ${ms} ms: the stream never settled`)), ms);
    onAttempt = (info) => {
      clearTimeout(timer);
      resolve(info);
    };
  });
  return { seen, onAttempt };
}

test('streamText aborted by the consumer settles (onAttempt fires; nothing seen: the estimate stays)', { skip }, async () => {
  const { MockLanguageModelV3 } = require('ai/test');
  const name = 'mock/m';
  const t = tracker({ [name]: { rpm: 10, tpm: 100000 } });
  const { seen, onAttempt } = firstAttempt();
  const model = new MockLanguageModelV3({
    provider: 'mock',
    modelId: 'm',
    doStream: async ({ abortSignal }) => ({ stream: hangingStream(STARTED, abortSignal).stream }),
  });
  const wrapped = ai.mod.wrapLanguageModel({ model, middleware: ratetrackMiddleware({ tracker: t, onAttempt }) });
  const ac = new AbortController();
  const s = ai.mod.streamText({ model: wrapped, prompt: 'x'.repeat(40), maxOutputTokens: 20, abortSignal: ac.signal, onError: () => {} });
  const reader = s.textStream.getReader();
  assert.equal((await reader.read()).value, 'hello ');
  ac.abort();
  const info = await seen;
  assert.equal(info.model, name);
  assert.equal(info.output, undefined);
  // No usage came: the estimate (10 input + 20 reserved) stays booked, as for a fetch stream cut off.
  assert.equal(win(t, name, 'tokens_per_minute').current, 30);
  await reader.cancel().catch(() => {});
  t.close();
});

test('a middleware stream cancelled by its reader settles to the text seen when more than reserved, and cancels the provider stream', async () => {
  const name = 'openai/gpt-4o-mini';
  const t = tracker({ [name]: { rpm: 10, tpm: 100000 } });
  const { seen, onAttempt } = firstAttempt();
  const mw = ratetrackMiddleware({ tracker: t, onAttempt });
  const long = 'y'.repeat(400); // 100 tokens of text seen, 20 reserved
  const provider = hangingStream([...STARTED.slice(0, 2), { type: 'text-delta', id: '1', delta: long }]);
  const result = await mw.wrapStream({
    params: { maxOutputTokens: 20, prompt: [{ role: 'user', content: [{ type: 'text', text: 'x'.repeat(40) }] }] },
    model: { provider: 'openai.chat', modelId: 'gpt-4o-mini' },
    doStream: async () => ({ stream: provider.stream, response: { headers: {} } }),
  });
  const reader = result.stream.getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  assert.equal(win(t, name, 'tokens_per_minute').current, 30, 'the estimate while it streams');
  await reader.cancel('the consumer is done');
  const info = await seen;
  assert.equal(info.status, 200);
  assert.equal(provider.cancelled, true);
  assert.equal(win(t, name, 'tokens_per_minute').current, 10 + 100);
  t.close();
});
