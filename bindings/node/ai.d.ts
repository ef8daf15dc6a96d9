// Types of ratetrack/ai: a Vercel AI SDK (`ai` 6) language-model middleware.
import type { IntegrationOptions } from './integrations';
export { estimateTokens, RateTrackLimitError } from './integrations';
export type { AttemptInfo, IntegrationOptions } from './integrations';

export interface MiddlewareOptions extends Omit<IntegrationOptions, 'model' | 'estimateInputTokens'> {
  /** The tracker's model name: fixed, or from the AI SDK model (default "<provider up to its first dot>/<modelId>"). */
  model?: string | ((modelId: string, model: { provider: string; modelId: string }) => string | null);
  /** The input estimate of the call options (default: the prompt's text characters / 4). */
  estimateInputTokens?: (params: any) => number | bigint;
}

/**
 * A LanguageModelV3 middleware for wrapLanguageModel({ model, middleware }): acquires before each
 * doGenerate / doStream (the AI SDK's retries included), observes the response headers, reports a
 * 429, settles to `usage` (streamText: the finish part's). Fails with RateTrackLimitError when no
 * room comes within timeoutMs.
 */
export function ratetrackMiddleware(options?: MiddlewareOptions): {
  specificationVersion: 'v3';
  wrapGenerate: (options: any) => PromiseLike<any>;
  wrapStream: (options: any) => PromiseLike<any>;
};
