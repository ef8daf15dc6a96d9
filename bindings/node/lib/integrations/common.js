'use strict';
/**
 * What the SDK integrations (ratetrack/openai, ratetrack/anthropic,
 * ratetrack/ai) share: the options, the token estimate, acquiring with a
 * timeout, and reading `usage`. Every tracker call here is an asynchronous
 * one (the *Async methods), so a redis:// backend never blocks the event loop.
 */
const rt = require('../..');
const checks = require('../checks');

/** Output tokens reserved when a request names no max_tokens (settled to the real count afterwards). */
const DEFAULT_OUTPUT_TOKENS = 1024;
/** How long a call waits for room in the tracker by default, in ms. */
const DEFAULT_TIMEOUT_MS = 60000;

/**
 * The tracker found no room for a request within the timeout: nothing was
 * sent to the provider and nothing was recorded.
 */
class RateTrackLimitError extends Error {
  constructor(model, timeoutMs, retryAfterMs) {
    super(
      `ratetrack: no room for a request to ${model} within ${timeoutMs} ms (the tracker's limits or the ` +
        `provider's last report); it would fit in about ${retryAfterMs} ms. Nothing was sent.`,
    );
    this.name = 'RateTrackLimitError';
    this.code = 'RATETRACK_LIMITED';
    this.model = model;
    this.timeoutMs = timeoutMs;
    this.retryAfterMs = retryAfterMs;
  }
}

function optionError(message) {
  return new rt.RateTrackError(rt.Status.RT_E_INVALID, message);
}

/**
 * Checks the options shared by every integration and fills in the defaults:
 * tracker (the global tracker), timeoutMs (60000; 0 fails fast), model
 * (`provider/<request model>` or a function), estimateInputTokens (chars/4),
 * defaultOutputTokens (1024), onError (process.emitWarning).
 */
function resolveOptions(options, provider) {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') throw optionError('options must be an object');
  const o = { ...options };
  if (o.tracker === undefined) o.tracker = rt.globalTracker();
  else if (!(o.tracker instanceof rt.Tracker)) throw optionError('options.tracker must be a Tracker (ratetrack.open() or globalTracker())');
  o.provider = o.provider === undefined ? provider : o.provider;
  if (typeof o.provider !== 'string' || o.provider === '' || o.provider.includes('/')) {
    throw optionError(`options.provider must be a provider name like "openai", got ${JSON.stringify(o.provider)}`);
  }
  o.timeoutMs = o.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : checks.timeoutMs(o.timeoutMs);
  o.defaultOutputTokens =
    o.defaultOutputTokens === undefined ? DEFAULT_OUTPUT_TOKENS : checks.u64(o.defaultOutputTokens, 'options.defaultOutputTokens');
  if (o.model !== undefined && typeof o.model !== 'string' && typeof o.model !== 'function') {
    throw optionError('options.model must be a "provider/model" string or a function (requestModel, body) => "provider/model"');
  }
  for (const k of ['estimateInputTokens', 'onError', 'onAttempt']) {
    if (o[k] !== undefined && typeof o[k] !== 'function') throw optionError(`options.${k} must be a function`);
  }
  o.onError = o.onError || ((err) => process.emitWarning(err));
  return o;
}

/** The tracker's name for a request's model: options.model, else "provider/model". */
function modelName(o, requestModel, request) {
  let name;
  if (typeof o.model === 'string') name = o.model;
  else if (typeof o.model === 'function') name = o.model(requestModel, request);
  else name = requestModel ? `${o.provider}/${requestModel}` : null;
  if (name === null || name === undefined) return null;
  if (typeof name !== 'string' || name === '') throw optionError(`options.model gave ${String(name)}, not a model name`);
  return name;
}

// Keys whose strings are not text the model reads: labels and ids, and the
// images, audio and files inline in a request (base64 data, data: URLs),
// which the providers count by size or pixels, not by characters.
const NOT_TEXT = new Set([
  'role', 'type', 'id', 'tool_call_id', 'tool_use_id', 'cache_control', 'media_type', 'mediaType',
  'data', 'url', 'image_url', 'file_data',
]);

/** The characters of text in a value: every string leaf, except under NOT_TEXT keys (images and files are skipped). */
function textChars(value, depth = 0) {
  if (typeof value === 'string') return value.length;
  if (value === null || typeof value !== 'object' || depth > 32) return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (const v of value) n += textChars(v, depth + 1);
  } else {
    for (const [k, v] of Object.entries(value)) if (!NOT_TEXT.has(k)) n += textChars(v, depth + 1);
  }
  return n;
}

/**
 * The heuristic estimate of a request's input tokens: the characters of its
 * text divided by 4, rounded up (about right for English with the OpenAI and
 * Anthropic tokenizers). `parts` are the message-bearing fields of the body
 * (messages, system, input, instructions, prompt, tools).
 */
function estimateTokens(...parts) {
  let chars = 0;
  for (const p of parts) chars += textChars(p);
  return tokensOfChars(chars);
}

/** The heuristic's tokens of `chars` characters of text: a quarter, rounded up. */
function tokensOfChars(chars) {
  return Math.ceil(chars / 4);
}

/** A non-negative integer token count from a usage field, or undefined. */
function count(v) {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/**
 * Acquires input + output tokens on `model`, waiting up to o.timeoutMs (0:
 * fail fast). Resolves to the Grant; rejects with RateTrackLimitError when
 * no room came in time, or with signal.reason when aborted.
 */
async function acquireOrFail(o, model, input, output, signal) {
  const grant = await o.tracker.acquire(model, input, { outputTokens: output, timeoutMs: o.timeoutMs, signal });
  if (grant !== null) return grant;
  let wait = 0;
  try {
    wait = await o.tracker.waitTimeAsync(model, input);
  } catch (err) {
    if (!(err instanceof rt.RateTrackError)) throw err;
  }
  throw new RateTrackLimitError(model, o.timeoutMs, wait);
}

/** Settles a grant, handing a failure to onError (the estimate then stays booked: nothing is lost). */
async function settle(o, grant, input, output) {
  try {
    await o.tracker.settleAsync(grant, input, output);
  } catch (err) {
    o.onError(err);
  }
}

/** Feeds headers back, handing a failure to onError. */
async function observe(o, model, headers) {
  if (!headers) return;
  try {
    await o.tracker.observeHeadersAsync(model, headers);
  } catch (err) {
    o.onError(err);
  }
}

/** Reports a 429, handing a failure to onError. */
async function reportLimited(o, model, retryAfter) {
  try {
    await o.tracker.reportLimitedAsync(model, retryAfter);
  } catch (err) {
    o.onError(err);
  }
}

module.exports = {
  DEFAULT_OUTPUT_TOKENS,
  DEFAULT_TIMEOUT_MS,
  RateTrackLimitError,
  optionError,
  resolveOptions,
  modelName,
  estimateTokens,
  tokensOfChars,
  count,
  acquireOrFail,
  settle,
  observe,
  reportLimited,
};
