// Types of ratetrack/openai and ratetrack/anthropic: the tracker in front of an `openai` or
// `@anthropic-ai/sdk` client through its `fetch` option.
import type { Tracker, Grant, Count } from './index';

/** What onAttempt sees after each HTTP attempt (the SDK's retries included). */
export interface AttemptInfo {
  /** The tracker's model name ("openai/gpt-4o-mini"). */
  model: string;
  /** The HTTP status; 0 when no answer came (network error, abort); 429 with local: true when the tracker refused. */
  status: number;
  /** true when the tracker found no room in time and nothing was sent. */
  local?: boolean;
  grant: Grant | null;
  /** The tokens settled (from usage), or undefined where the response did not say. */
  input?: number;
  output?: number;
  error?: unknown;
}

export interface IntegrationOptions {
  /** The tracker (default: ratetrack.globalTracker()). */
  tracker?: Tracker;
  /** How long a request waits for room, in ms (default 60000; 0 fails fast). */
  timeoutMs?: Count;
  /**
   * The tracker's model name: a fixed "provider/model", or a function of the request's model and
   * body; null from the function leaves the request untracked. Default "<provider>/<model>".
   */
  model?: string | ((requestModel: string, body: any) => string | null);
  /** The prefix of the default model names ("openai", "anthropic"). */
  provider?: string;
  /** The input estimate of a request body (default: the characters of its messages' text / 4, rounded up). */
  estimateInputTokens?: (body: any) => Count;
  /** Output tokens reserved when the body names no max_tokens / max_completion_tokens / max_output_tokens (1024). */
  defaultOutputTokens?: Count;
  /** Called after each attempt. */
  onAttempt?: (info: AttemptInfo) => void;
  /** A tracker failure after the request went out (default: process.emitWarning); the estimate stays booked. */
  onError?: (err: unknown) => void;
}

export interface FetchOptions extends IntegrationOptions {
  /** The fetch to call (default: globalThis.fetch). */
  fetch?: (input: any, init?: any) => Promise<Response>;
}

/**
 * A fetch for the client's `fetch` option: every attempt acquires (input estimate + max_tokens),
 * is observed (rate-limit headers), reports a 429 (retry-after), and settles to its usage (streams
 * too). When no room comes within timeoutMs it answers a local 429 with x-should-retry: false (the
 * SDK raises its RateLimitError, with a "ratetrack: no room ..." message, and does not retry).
 */
export function ratetrackFetch(options?: FetchOptions): (input: any, init?: any) => Promise<Response>;

/** A copy of a constructed client (client.withOptions) with ratetrackFetch around its own fetch. */
export function withRatetrack<C extends { withOptions(options: any): C }>(client: C, options?: FetchOptions): C;

/** The heuristic input estimate: the characters of the text in the given values / 4, rounded up. */
export function estimateTokens(...parts: unknown[]): number;

/** The tracker found no room within timeoutMs: nothing was sent, nothing recorded. */
export class RateTrackLimitError extends Error {
  readonly code: 'RATETRACK_LIMITED';
  readonly model: string;
  readonly timeoutMs: number;
  readonly retryAfterMs: number;
}
