'use strict';
/**
 * ratetrack/openai: the tracker in front of an `openai` (v6) client, through
 * its `fetch` option. Every HTTP attempt (the SDK's retries included)
 * acquires, is observed, reports its 429 and settles to its real usage.
 *
 *   const OpenAI = require('openai');
 *   const { ratetrackFetch } = require('ratetrack/openai');
 *   const client = new OpenAI({ fetch: ratetrackFetch() });   // models "openai/<model>"
 *
 * See README.md ("OpenAI, Anthropic and the Vercel AI SDK").
 */
const fetchImpl = require('./lib/integrations/fetch');
const { estimateTokens, RateTrackLimitError } = require('./lib/integrations/common');

/** ratetrackFetch with model names "openai/<model>" (options: see lib/integrations/fetch.js and index.d.ts). */
function ratetrackFetch(options) {
  return fetchImpl.ratetrackFetch(options, 'openai');
}

/** A copy of a constructed OpenAI client with ratetrackFetch around its own fetch. */
function withRatetrack(client, options) {
  return fetchImpl.withRatetrack(client, options, 'openai');
}

module.exports = { ratetrackFetch, withRatetrack, estimateTokens, RateTrackLimitError };
