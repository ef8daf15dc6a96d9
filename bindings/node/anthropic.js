'use strict';
/**
 * ratetrack/anthropic: the tracker in front of an `@anthropic-ai/sdk` client, through
 * its `fetch` option. Every HTTP attempt (the SDK's retries included)
 * acquires, is observed, reports its 429 and settles to its real usage.
 *
 *   const Anthropic = require('@anthropic-ai/sdk');
 *   const { ratetrackFetch } = require('ratetrack/anthropic');
 *   const client = new Anthropic({ fetch: ratetrackFetch() });   // models "anthropic/<model>"
 *
 * See README.md ("OpenAI, Anthropic and the Vercel AI SDK").
 */
const fetchImpl = require('./lib/integrations/fetch');
const { estimateTokens, RateTrackLimitError } = require('./lib/integrations/common');

/** ratetrackFetch with model names "anthropic/<model>" (options: see lib/integrations/fetch.js and index.d.ts). */
function ratetrackFetch(options) {
  return fetchImpl.ratetrackFetch(options, 'anthropic');
}

/** A copy of a constructed Anthropic client with ratetrackFetch around its own fetch. */
function withRatetrack(client, options) {
  return fetchImpl.withRatetrack(client, options, 'anthropic');
}

module.exports = { ratetrackFetch, withRatetrack, estimateTokens, RateTrackLimitError };
