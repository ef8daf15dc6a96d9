'use strict';
/**
 * ratetrack/ai: a Vercel AI SDK (`ai` 6, LanguageModelV3) language-model
 * middleware for wrapLanguageModel. For every doGenerate / doStream (each of
 * the AI SDK's own retries included) it acquires (input estimate: chars/4 of
 * the prompt's text; output: maxOutputTokens, else defaultOutputTokens),
 * observes the response headers, reports a 429 (APICallError with status 429
 * and retry-after), and settles to the result's `usage` (for streamText, the
 * `finish` part's).
 *
 *   const { generateText, wrapLanguageModel } = require('ai');
 *   const { ratetrackMiddleware } = require('ratetrack/ai');
 *   const model = wrapLanguageModel({ model: openai('gpt-4o-mini'), middleware: ratetrackMiddleware() });
 *
 * The model is named "<provider>/<modelId>", the provider being the AI SDK's
 * provider id up to its first dot ("openai.responses", "openai.chat" -> "openai"); options.model
 * (a string, or (modelId, model) => name) overrides it.
 */
const {
  resolveOptions,
  modelName,
  estimateTokens,
  tokensOfChars,
  count,
  acquireOrFail,
  settle,
  observe,
  reportLimited,
  RateTrackLimitError,
} = require('./lib/integrations/common');

/** The tracker's name for an AI SDK model: options.model, else provider (up to its first dot) / modelId. */
function nameOf(o, model) {
  if (o.model !== undefined) return modelName(o, model.modelId, model);
  const provider = String(model.provider || o.provider).split('.')[0];
  return modelName({ ...o, provider }, model.modelId, model);
}

/** Input and output tokens from a LanguageModelV3 usage ({inputTokens: {total}, ...}) or a V2 one (numbers). */
function usageOf(usage) {
  if (!usage || typeof usage !== 'object') return { input: undefined, output: undefined };
  const side = (v) => (v && typeof v === 'object' ? count(v.total) : count(v));
  return { input: side(usage.inputTokens), output: side(usage.outputTokens) };
}

/** The response headers and status of a failed call (an APICallError), if it was answered. */
async function onCallError(o, model, grant, err) {
  const status = err && typeof err.statusCode === 'number' ? err.statusCode : 0;
  if (status === 0) {
    o.onAttempt?.({ model, status, grant, error: err }); // no answer: the estimate stays booked
    return;
  }
  const headers = err.responseHeaders || null;
  await observe(o, model, headers);
  if (status === 429) {
    const h = headers || {};
    const ms = Number.parseFloat(h['retry-after-ms'] ?? '');
    await reportLimited(o, model, Number.isFinite(ms) && ms >= 0 ? ms / 1000 : h['retry-after']);
  }
  await settle(o, grant, 0, 0); // an error answer uses no tokens; the attempt stays one request
  o.onAttempt?.({ model, status, grant, input: 0, output: 0, error: err });
}

/**
 * The middleware. Options: tracker, timeoutMs (60000; 0 fails fast: a
 * RateTrackLimitError, which the AI SDK does not retry), model,
 * estimateInputTokens(params), defaultOutputTokens (1024), onAttempt(info)
 * (after each attempt: {model, status, grant, input, output, error}), onError.
 * @returns {import('@ai-sdk/provider').LanguageModelV3Middleware}
 */
function ratetrackMiddleware(options = {}) {
  const o = resolveOptions(options, 'unknown');

  async function begin(params, model) {
    const name = nameOf(o, model);
    const input = o.estimateInputTokens ? o.estimateInputTokens(params) : estimateTokens(params.prompt, params.tools);
    const output = count(params.maxOutputTokens) ?? o.defaultOutputTokens;
    const grant = await acquireOrFail(o, name, input, output, params.abortSignal);
    return { name, grant, input, output };
  }

  return {
    specificationVersion: 'v3',

    async wrapGenerate({ doGenerate, params, model }) {
      const c = await begin(params, model);
      let result;
      try {
        result = await doGenerate();
      } catch (err) {
        await onCallError(o, c.name, c.grant, err);
        throw err;
      }
      await observe(o, c.name, result.response && result.response.headers);
      const u = usageOf(result.usage);
      if (u.input !== undefined || u.output !== undefined) {
        await settle(o, c.grant, u.input ?? c.input, u.output ?? c.output);
      }
      o.onAttempt?.({ model: c.name, status: 200, grant: c.grant, input: u.input, output: u.output });
      return result;
    },

    async wrapStream({ doStream, params, model }) {
      const c = await begin(params, model);
      let result;
      try {
        result = await doStream();
      } catch (err) {
        await onCallError(o, c.name, c.grant, err);
        throw err;
      }
      await observe(o, c.name, result.response && result.response.headers);
      let usage = { input: undefined, output: undefined };
      let textChars = 0; // of the text and reasoning seen, for a stream cut off before its finish part
      let settled = false;
      const finish = async () => {
        if (settled) return;
        settled = true;
        if (usage.input !== undefined || usage.output !== undefined) {
          await settle(o, c.grant, usage.input ?? c.input, usage.output ?? c.output);
        } else if (tokensOfChars(textChars) > c.output) {
          // Cut off (cancelled, aborted, failed) before the finish part, so no
          // usage seen: the output reserved, or the text seen if more (the
          // rule of Python's transport for a stream closed before its last
          // event; the provider may have generated it all).
          await settle(o, c.grant, c.input, tokensOfChars(textChars));
        } // else the estimate stays booked
        o.onAttempt?.({ model: c.name, status: 200, grant: c.grant, input: usage.input, output: usage.output });
      };
      // A pass-through with pull and cancel, as the fetch wrappers' usageTee:
      // the stream settles when it ends, when its reader cancels it (an abort,
      // reader.cancel()) and when the provider's stream fails.
      const reader = result.stream.getReader();
      const stream = new ReadableStream({
        async pull(controller) {
          let r;
          try {
            r = await reader.read();
          } catch (err) {
            await finish();
            controller.error(err);
            return;
          }
          if (r.done) {
            await finish();
            controller.close();
            return;
          }
          const part = r.value;
          if (part && part.type === 'finish') {
            usage = usageOf(part.usage);
            await finish(); // before the finish part reaches streamText
          } else if (part && (part.type === 'text-delta' || part.type === 'reasoning-delta') && typeof part.delta === 'string') {
            textChars += part.delta.length;
          }
          controller.enqueue(part);
        },
        async cancel(reason) {
          await finish();
          await reader.cancel(reason);
        },
      });
      return { ...result, stream };
    },
  };
}

module.exports = { ratetrackMiddleware, estimateTokens, RateTrackLimitError };
