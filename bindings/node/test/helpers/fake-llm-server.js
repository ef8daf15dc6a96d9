'use strict';
/**
 * A fake LLM API on 127.0.0.1:0 for the integration tests: POST
 * /v1/chat/completions (OpenAI, plain and SSE with a final usage chunk when
 * stream_options.include_usage), POST /v1/responses (OpenAI's Responses API:
 * a response object, or SSE events response.created ... response.completed,
 * the last carrying the usage, as the API streams them) and POST
 * /v1/messages (Anthropic, plain and
 * SSE message_start / content_block_* / message_delta / message_stop). It
 * keeps its own per-model limits over a sliding window (requests and tokens,
 * the tokens being the usage it answers), sends the real rate-limit headers
 * (x-ratelimit-* with Go-duration resets, anthropic-ratelimit-* with RFC 3339
 * resets), and answers 429 with retry-after when a request would exceed a
 * limit (or when a test queues forced 429s).
 *
 * Usage it reports: input = ceil(chars/5) + 2 of the message text (below the
 * binding's chars/4 estimate for prompts of 40+ characters), output =
 * min(max_tokens, outputTokens) (the test's choice); for /v1/responses, of the
 * input and instructions, and max_output_tokens.
 */
const http = require('node:http');

function textChars(v) {
  if (typeof v === 'string') return v.length;
  if (v === null || typeof v !== 'object') return 0;
  let n = 0;
  for (const [k, x] of Object.entries(v)) if (k !== 'role' && k !== 'type') n += textChars(x);
  return n;
}

/** "1m0s", "59.5s", "120ms" like the Go durations OpenAI sends. */
function goDuration(ms) {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`;
  const m = Math.floor(ms / 60000);
  const s = (ms - m * 60000) / 1000;
  const sText = Number.isInteger(s) ? String(s) : s.toFixed(3).replace(/0+$/, '');
  return m > 0 ? `${m}m${sText}s` : `${sText}s`;
}

class FakeLlmServer {
  /**
   * @param {object} o
   * @param {number} [o.rpm] requests per window (default unlimited)
   * @param {number} [o.tpm] tokens per window (default unlimited)
   * @param {number} [o.windowMs] the window (60000)
   * @param {'full'|'limit-only'|'none'} [o.headers] which rate-limit headers to send (the
   *   limit headers only with the per-minute window they describe)
   * @param {number} [o.retryAfter] the 429's retry-after seconds (default: until room)
   * @param {number} [o.outputTokens] output tokens of an answer (7)
   * @param {number} [o.delayMs] delay before answering (0)
   */
  constructor(o = {}) {
    this.o = { windowMs: 60000, headers: 'full', outputTokens: 7, delayMs: 0, ...o };
    this.log = []; // {at, tokens} of answered (200) requests, all models together
    this.requests = 0; // every request received
    this.served = 0;
    this.limited = 0; // 429s sent
    this.tokens = 0; // input + output of every 200 answer
    this.inputTokens = 0;
    this.outputTokens = 0;
    this.bodies = []; // every request body received
    this.paths = []; // the path of every request received
    this.forced429 = 0; // answer the next N requests with 429
    this.server = http.createServer((req, res) => this.#handle(req, res));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async close() {
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(resolve));
  }

  #inWindow(now) {
    const from = now - this.o.windowMs;
    this.log = this.log.filter((e) => e.at > from);
    return this.log;
  }

  /** The rate-limit state now: used and remaining per budget, and ms until the oldest entry leaves. */
  #state(now) {
    const log = this.#inWindow(now);
    const used = { requests: log.length, tokens: log.reduce((s, e) => s + e.tokens, 0) };
    const resetMs = log.length ? log[0].at + this.o.windowMs - now : 0;
    return { used, resetMs };
  }

  #headers(now, provider) {
    if (this.o.headers === 'none') return {};
    const { used, resetMs } = this.#state(now);
    const h = {};
    const budgets = [
      ['requests', this.o.rpm, used.requests],
      ['tokens', this.o.tpm, used.tokens],
    ];
    for (const [name, limit, u] of budgets) {
      if (limit === undefined) continue;
      const full = this.o.headers === 'full';
      // The providers' limit headers are per minute: a test window of another length sends
      // only what remains until when, which means the same whatever the window.
      const perMinute = this.o.windowMs === 60000;
      if (provider === 'openai') {
        if (perMinute) h[`x-ratelimit-limit-${name}`] = String(limit);
        if (full) {
          h[`x-ratelimit-remaining-${name}`] = String(Math.max(0, limit - u));
          h[`x-ratelimit-reset-${name}`] = goDuration(resetMs);
        }
      } else {
        if (perMinute) h[`anthropic-ratelimit-${name}-limit`] = String(limit);
        if (full) {
          h[`anthropic-ratelimit-${name}-remaining`] = String(Math.max(0, limit - u));
          h[`anthropic-ratelimit-${name}-reset`] = new Date(now + resetMs).toISOString();
        }
      }
    }
    return h;
  }

  async #handle(req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad json"}}');
      return;
    }
    this.requests++;
    this.bodies.push(body);
    this.paths.push(req.url);
    const responses = req.url.startsWith('/v1/responses');
    const provider = req.url.startsWith('/v1/messages')
      ? 'anthropic'
      : req.url.startsWith('/v1/chat/completions') || responses
        ? 'openai'
        : null;
    if (req.method !== 'POST' || provider === null) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
      return;
    }
    if (this.o.delayMs) await new Promise((r) => setTimeout(r, this.o.delayMs));
    const messages = provider === 'anthropic' ? [body.system, body.messages] : responses ? [body.instructions, body.input] : body.messages;
    const input = Math.ceil(textChars(messages) / 5) + 2;
    const maxTokens = body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens ?? Infinity;
    const output = Math.min(maxTokens, this.o.outputTokens);
    const now = Date.now();
    const { used, resetMs } = this.#state(now);
    const over =
      (this.o.rpm !== undefined && used.requests + 1 > this.o.rpm) ||
      (this.o.tpm !== undefined && used.tokens + input + output > this.o.tpm);
    if (this.forced429 > 0 || over) {
      if (this.forced429 > 0) this.forced429--;
      this.limited++;
      const retryAfter = this.o.retryAfter ?? Math.max(1, Math.ceil(resetMs / 1000));
      const err =
        provider === 'anthropic'
          ? { type: 'error', error: { type: 'rate_limit_error', message: 'fake: rate limited' } }
          : { error: { message: 'fake: rate limited', type: 'requests', code: 'rate_limit_exceeded', param: null } };
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(retryAfter), ...this.#headers(now, provider) });
      res.end(JSON.stringify(err));
      return;
    }
    this.log.push({ at: now, tokens: input + output });
    this.served++;
    this.tokens += input + output;
    this.inputTokens += input;
    this.outputTokens += output;
    const headers = this.#headers(now, provider);
    const text = 'ok '.repeat(output).trim();
    if (responses) this.#responses(res, body, headers, input, output, text);
    else if (provider === 'openai') this.#openai(res, body, headers, input, output, text);
    else this.#anthropic(res, body, headers, input, output, text);
  }

  #openai(res, body, headers, input, output, text) {
    const usage = { prompt_tokens: input, completion_tokens: output, total_tokens: input + output };
    const base = { id: 'chatcmpl-fake', created: Math.floor(Date.now() / 1000), model: body.model, system_fingerprint: null };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({
        ...base,
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
        usage,
      }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
    const chunk = (choices, u = null) => `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices, usage: u })}\n\n`;
    res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
    for (const w of text.split(' ')) res.write(chunk([{ index: 0, delta: { content: `${w} ` }, logprobs: null, finish_reason: null }]));
    res.write(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
    if (body.stream_options && body.stream_options.include_usage) res.write(chunk([], usage));
    res.end('data: [DONE]\n\n');
  }

  /** A Responses API answer: the response object, or its streaming events (typed, numbered, no [DONE]). */
  #responses(res, body, headers, input, output, text) {
    const item = {
      type: 'message',
      id: 'msg_fake',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
    };
    const response = {
      id: 'resp_fake',
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status: 'completed',
      error: null,
      incomplete_details: null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: body.model,
      output: [item],
      parallel_tool_calls: true,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      store: body.store ?? true,
      temperature: 1,
      text: { format: { type: 'text' } },
      tool_choice: 'auto',
      tools: [],
      top_p: 1,
      truncation: 'disabled',
      usage: {
        input_tokens: input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: input + output,
      },
      user: null,
      metadata: {},
    };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(response));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
    let seq = 0;
    const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
    const start = { ...response, status: 'in_progress', output: [], usage: null };
    const ids = { item_id: item.id, output_index: 0, content_index: 0 };
    ev('response.created', { response: start });
    ev('response.in_progress', { response: start });
    ev('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
    ev('response.content_part.added', { ...ids, part: { ...item.content[0], text: '' } });
    for (const w of text.split(' ')) ev('response.output_text.delta', { ...ids, delta: `${w} `, logprobs: [] });
    ev('response.output_text.done', { ...ids, text, logprobs: [] });
    ev('response.content_part.done', { ...ids, part: item.content[0] });
    ev('response.output_item.done', { output_index: 0, item });
    ev('response.completed', { response });
    res.end();
  }

  #anthropic(res, body, headers, input, output, text) {
    const message = {
      id: 'msg_fake',
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: input, output_tokens: output, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(message));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
    const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    ev('message_start', {
      message: { ...message, content: [], stop_reason: null, usage: { ...message.usage, output_tokens: 1 } },
    });
    ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    for (const w of text.split(' ')) ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `${w} ` } });
    ev('content_block_stop', { index: 0 });
    ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: output } });
    ev('message_stop', {});
    res.end();
  }
}

module.exports = { FakeLlmServer, goDuration };
