'use strict';
/**
 * ratetrackFetch: a `fetch` for the `fetch` option of the openai and
 * @anthropic-ai/sdk clients. The SDK sends every HTTP attempt through it, its
 * own retries included, and for each attempt it:
 *   1. reads the JSON body: the model ("provider/model"), the input estimate
 *      (chars/4 of the messages) and the output reservation (max_tokens,
 *      max_completion_tokens, max_output_tokens, else defaultOutputTokens);
 *      OpenAI streaming chat requests get stream_options.include_usage;
 *   2. acquires (waits up to timeoutMs; when no room comes, answers a local
 *      429 with x-should-retry: false, which the SDK raises as its
 *      RateLimitError without retrying and without sending anything);
 *   3. sends the request, observes the response headers, reports a 429
 *      (retry-after) so every caller of the model waits;
 *   4. settles the grant: to the response's usage (for a stream, read from
 *      the SSE events as the SDK reads them), or to 0 tokens for an error
 *      answer (the attempt stays one request). An attempt that got no answer
 *      (network error, abort) keeps its estimate booked.
 * Each attempt is one request in the tracker and books only its own tokens,
 * so a retried call is never booked twice.
 */
const {
  resolveOptions,
  modelName,
  estimateTokens,
  count,
  acquireOrFail,
  settle,
  observe,
  reportLimited,
  RateTrackLimitError,
  optionError,
} = require('./common');

/**
 * The endpoints that spend the model's rate limits: OpenAI chat completions,
 * completions, responses, embeddings; Anthropic messages (not
 * messages/count_tokens or messages/batches, which have limits of their own).
 */
const TRACKED_PATH = /\/(?:chat\/completions|completions|responses|embeddings|messages)\/?(?:\?|$)/;

/** The request's JSON body as an object, or null when it is not JSON text (pass it through). */
function jsonBody(init) {
  if (!init || typeof init.body !== 'string') return null;
  try {
    const b = JSON.parse(init.body);
    return b !== null && typeof b === 'object' && !Array.isArray(b) ? b : null;
  } catch {
    return null;
  }
}

function methodOf(input, init) {
  return String((init && init.method) || (input && typeof input === 'object' && input.method) || 'GET').toUpperCase();
}

function urlOf(input) {
  if (typeof input === 'string') return input;
  if (input instanceof URL) return input.href;
  return input && typeof input.url === 'string' ? input.url : String(input);
}

/** The output tokens a request reserves: its max_tokens (or the newer names), else the default. */
function outputReservation(body, o) {
  for (const k of ['max_completion_tokens', 'max_tokens', 'max_output_tokens']) {
    const n = count(body[k]);
    if (n !== undefined) return n;
  }
  return o.defaultOutputTokens;
}

/**
 * Input and output tokens from a `usage` object of any of the APIs:
 * OpenAI chat (prompt_tokens / completion_tokens), OpenAI responses and
 * Anthropic (input_tokens / output_tokens; Anthropic's cache writes count as
 * input, cache reads do not count against its input limit). Either may be
 * undefined.
 */
function usageCounts(usage) {
  if (!usage || typeof usage !== 'object') return { input: undefined, output: undefined };
  let input = count(usage.prompt_tokens) ?? count(usage.input_tokens);
  if (input !== undefined && count(usage.cache_creation_input_tokens) !== undefined) {
    input += usage.cache_creation_input_tokens;
  }
  return { input, output: count(usage.completion_tokens) ?? count(usage.output_tokens) };
}

/** The usage objects an SSE event may carry (OpenAI chat's last chunk, responses' response.completed, Anthropic's message_start / message_delta). */
function eventUsage(ev) {
  if (!ev || typeof ev !== 'object') return null;
  if (ev.usage && typeof ev.usage === 'object') return ev.usage;
  if (ev.message && ev.message.usage) return ev.message.usage;
  if (ev.response && ev.response.usage) return ev.response.usage;
  return null;
}

/**
 * A pass-through of an SSE body that reads the usage from its events as the
 * SDK reads them, and settles when the stream ends. A stream that ends with
 * no usage seen (cut off, cancelled) keeps the estimate booked.
 */
function usageTee(body, onEnd) {
  const decoder = new TextDecoder();
  let buf = '';
  let input;
  let output;
  let ended = false;
  const line = (l) => {
    if (!l.startsWith('data:')) return;
    const data = l.slice(5).trim();
    if (data === '' || data === '[DONE]') return;
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    const u = usageCounts(eventUsage(ev));
    if (u.input !== undefined) input = u.input;
    if (u.output !== undefined) output = u.output;
  };
  const end = async () => {
    if (ended) return;
    ended = true;
    await onEnd(input, output);
  };
  const reader = body.getReader();
  return new ReadableStream({
    async pull(controller) {
      let r;
      try {
        r = await reader.read();
      } catch (err) {
        await end(); // no usage in full: the estimate (or what was seen) stays
        controller.error(err);
        return;
      }
      if (r.done) {
        buf += decoder.decode();
        for (const l of buf.split(/\r?\n/)) line(l);
        buf = '';
        await end();
        controller.close();
        return;
      }
      buf += decoder.decode(r.value, { stream: true });
      const lines = buf.split(/\r?\n/);
      buf = lines.pop();
      for (const l of lines) line(l);
      controller.enqueue(r.value);
    },
    async cancel(reason) {
      await end();
      await reader.cancel(reason);
    },
  });
}

/**
 * A fetch with the tracker in front. Options (all optional):
 *   provider      the model names' prefix ("openai"; set by ratetrack/openai and ratetrack/anthropic)
 *   tracker       a Tracker (default: ratetrack.globalTracker())
 *   timeoutMs     how long to wait for room (default 60000; 0 fails fast)
 *   model         "provider/model" for every request, or (requestModel, body) => name (null: do not track)
 *   estimateInputTokens(body)  the input estimate (default: chars/4 of the messages)
 *   defaultOutputTokens        reserved when the body names no max_tokens (1024)
 *   fetch         the fetch to call (default: globalThis.fetch)
 *   onAttempt(info)            called after each attempt: {model, status, grant, input, output, error}
 *   onError(err)  a tracker failure after the request went out (default: process.emitWarning)
 * @returns {(input: string|URL|Request, init?: RequestInit) => Promise<Response>}
 */
function ratetrackFetch(options = {}, provider = 'openai') {
  const o = resolveOptions(options, provider);
  const baseFetch = o.fetch === undefined ? globalThis.fetch : o.fetch;
  if (typeof baseFetch !== 'function') throw optionError('options.fetch must be a function (no global fetch on this Node.js)');

  return async function fetchWithRatetrack(input, init) {
    const url = urlOf(input);
    const body = methodOf(input, init) === 'POST' && TRACKED_PATH.test(url) ? jsonBody(init) : null;
    const model = body && typeof body.model === 'string' ? modelName(o, body.model, body) : null;
    if (model === null) return baseFetch(input, init);

    if (body.stream === true && o.provider === 'openai' && /\/(chat\/)?completions(\?|$)/.test(url)) {
      // Usage comes in a stream's last chunk only when asked for.
      const so = body.stream_options && typeof body.stream_options === 'object' ? body.stream_options : {};
      if (so.include_usage !== true) {
        body.stream_options = { ...so, include_usage: true };
        init = { ...init, body: JSON.stringify(body) };
      }
    }
    const inputEstimate = o.estimateInputTokens
      ? o.estimateInputTokens(body)
      : estimateTokens(body.messages, body.system, body.input, body.instructions, body.prompt, body.tools);
    const outputEstimate = outputReservation(body, o);

    let grant;
    try {
      grant = await acquireOrFail(o, model, inputEstimate, outputEstimate, init && init.signal);
    } catch (err) {
      if (!(err instanceof RateTrackLimitError)) throw err;
      o.onAttempt?.({ model, status: 429, local: true, grant: null, error: err });
      return limitedResponse(err, o.provider);
    }

    let res;
    try {
      res = await baseFetch(input, init);
    } catch (err) {
      // No answer: the request may have reached the provider, so its estimate stays booked.
      o.onAttempt?.({ model, status: 0, grant, error: err });
      throw err;
    }
    await observe(o, model, res.headers);
    if (!res.ok) {
      if (res.status === 429) await reportLimited(o, model, retryAfterOf(res.headers));
      await settle(o, grant, 0, 0); // an error answer uses no tokens; the attempt stays one request
      o.onAttempt?.({ model, status: res.status, grant, input: 0, output: 0 });
      return res;
    }
    const type = res.headers.get('content-type') || '';
    if (type.includes('text/event-stream') && res.body) {
      const tee = usageTee(res.body, async (inTok, outTok) => {
        if (inTok !== undefined || outTok !== undefined) {
          await settle(o, grant, inTok ?? inputEstimate, outTok ?? outputEstimate);
        }
        o.onAttempt?.({ model, status: res.status, grant, input: inTok, output: outTok });
      });
      return new Response(tee, { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    // A whole body: read it here (the SDK reads it next anyway), settle, hand over a copy.
    const text = await res.text();
    let usage = { input: undefined, output: undefined };
    try {
      usage = usageCounts(JSON.parse(text).usage);
    } catch {
      // not JSON: the estimate stays
    }
    if (usage.input !== undefined || usage.output !== undefined) {
      // A whole answer's usage with no output side (embeddings) generated none.
      await settle(o, grant, usage.input ?? inputEstimate, usage.output ?? (usage.input !== undefined ? 0 : outputEstimate));
    }
    o.onAttempt?.({ model, status: res.status, grant, input: usage.input, output: usage.output });
    return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/** The Retry-After of a 429: retry-after-ms (OpenAI's, in ms) or retry-after. */
function retryAfterOf(headers) {
  const ms = Number.parseFloat(headers.get('retry-after-ms') || '');
  if (Number.isFinite(ms) && ms >= 0) return ms / 1000;
  return headers.get('retry-after');
}

/**
 * The local answer when the tracker has no room in time: a 429 that the SDK
 * does not retry (x-should-retry: false) and raises as its RateLimitError,
 * with the RateTrackLimitError's text as the error message and the wait in
 * retry-after-ms. x-ratetrack-limited names the model.
 */
function limitedResponse(err, provider) {
  const error =
    provider === 'anthropic'
      ? { type: 'error', error: { type: 'rate_limit_error', message: err.message } }
      : { error: { message: err.message, type: 'ratetrack_limited', code: 'ratetrack_limited', param: null } };
  return new Response(JSON.stringify(error), {
    status: 429,
    statusText: 'Too Many Requests (ratetrack)',
    headers: {
      'content-type': 'application/json',
      'x-should-retry': 'false',
      'x-ratetrack-limited': err.model,
      'retry-after-ms': String(err.retryAfterMs),
    },
  });
}

/**
 * Wraps a constructed openai / @anthropic-ai/sdk client: a copy of it
 * (client.withOptions) whose fetch is ratetrackFetch around the client's own.
 */
function withRatetrack(client, options = {}, provider = 'openai') {
  if (!client || typeof client.withOptions !== 'function') {
    throw optionError('withRatetrack(client): client must be an openai or @anthropic-ai/sdk client (it has withOptions)');
  }
  const own = typeof client.fetch === 'function' ? client.fetch : undefined;
  return client.withOptions({ fetch: ratetrackFetch({ fetch: own, ...options }, provider) });
}

module.exports = { ratetrackFetch, withRatetrack, usageCounts, RateTrackLimitError };
