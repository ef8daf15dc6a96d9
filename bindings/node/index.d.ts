// Type definitions for ratetrack, the Node.js binding of libratetrack.

/** A count of requests or tokens (uint64): a safe non-negative integer or a bigint. */
export type Count = number | bigint;

/**
 * A configuration: an object (sent as JSON) or a JSON string. An object is checked as it is
 * serialised: NaN, Infinity, undefined, integers beyond Number.MAX_SAFE_INTEGER, BigInts,
 * non-plain objects and strings with a NUL or a lone surrogate throw RT_E_CONFIG (JSON would
 * turn NaN into null, i.e. unlimited).
 */
export type Config = string | ConfigObject;

export interface ConfigObject {
  /** Built-in tier(s): "tier1", or per provider "openai=tier2,anthropic=tier1". */
  tier?: string;
  /** Where the counters live ("memory": in-process). */
  backend?: string;
  /** false: use only `limits`. */
  builtin_tiers?: boolean;
  /** Per model ("provider/model") or per provider ("provider/*"). */
  limits?: Record<string, ModelLimits>;
}

export interface ModelLimits {
  /** Requests and tokens (input and output together) per minute and per day. */
  rpm?: number | null;
  tpm?: number | null;
  rpd?: number | null;
  tpd?: number | null;
  /** Input and output tokens per minute and per day, counted apart (Anthropic's ITPM / OTPM). */
  itpm?: number | null;
  otpm?: number | null;
  itpd?: number | null;
  otpd?: number | null;
  windows?: Array<WindowLimit>;
}

/** A window of any whole number of `seconds`, or a calendar day in an IANA zone (`calendar_day`). */
export interface WindowLimit {
  unit: 'requests' | 'tokens' | 'input_tokens' | 'output_tokens';
  limit: number | null;
  seconds?: number;
  /** Counts from local midnight to local midnight in this IANA zone, e.g. "America/Los_Angeles". */
  calendar_day?: string;
}

/** One window of a model's usage; limit, remaining and usage_percent are null when unlimited. */
export interface Window {
  current: number;
  limit: number | null;
  remaining: number | null;
  usage_percent: number | null;
  /** The limit the provider reported in its headers, where it differs from `limit` (per-minute windows). */
  observed_limit?: number;
  /** A calendar-day window's IANA zone ("<unit>_per_calendar_day"). */
  resets_at_midnight?: string;
}

/** What the provider's headers said about one budget of a model; null where it did not say. */
export interface ProviderBudget {
  remaining: number | null;
  reset_in_ms: number | null;
  limit: number | null;
}

/** What the provider said about a model (observeHeaders, reportLimited). */
export interface ProviderModel {
  /** Refused after a 429 for this many more milliseconds. */
  blocked_for_ms?: number;
  requests?: ProviderBudget;
  tokens?: ProviderBudget;
  input_tokens?: ProviderBudget;
  output_tokens?: ProviderBudget;
}

/**
 * Usage of a tracker: models -> window name ("requests_per_minute", "tokens_per_2s",
 * "input_tokens_per_minute", "requests_per_calendar_day", ...) -> Window.
 */
export interface Stats {
  tier: string;
  backend: string;
  models: Record<string, Record<string, Window>>;
  /** Per model, what the provider said; absent when it has said nothing yet. */
  provider?: Record<string, ProviderModel>;
}

/** A "shm:NAME" shared-memory segment in /dev/shm (shmList()), with the library's keys. */
export interface ShmSegment {
  /** The NAME of "shm:NAME". */
  name: string;
  /** "/dev/shm/ratetrack.NAME". */
  path: string;
  bytes: number;
  /** Permissions in octal, e.g. "0600". */
  mode: string;
  uid: number;
  /** Whether this library can use it (its layout matches). */
  compatible: boolean;
  /** Present for a readable libratetrack segment (compatible or not). */
  layout_version?: number;
  /** Models stored in the segment. */
  models?: number;
  /** Model slots, fixed at creation ("shm_models"). */
  capacity?: number;
  creator_pid?: number;
  created_unix_ms?: number;
  /** Present when this user cannot read the segment. */
  error?: string;
}

export interface TryAcquireResult {
  /** true: admitted and recorded. false: nothing recorded. */
  ok: boolean;
  /** When not ok: milliseconds until it would fit (> 0). 0 when ok. */
  retryAfterMs: number;
}

export interface TryAcquireGrantResult extends TryAcquireResult {
  /** The grant when ok, else null. */
  grant: Grant | null;
}

export interface AcquireOptions {
  /**
   * Give up (resolve null) after this many ms; 0 tries once; omitted waits as long as needed.
   * A count like `tokens`: NaN, Infinity, negative and fractional values are refused (RT_E_INVALID).
   */
  timeoutMs?: Count;
  /** Rejects with signal.reason when aborted. */
  signal?: AbortSignal;
  /** Also reserve this many output tokens (as tryAcquireIo); `tokens` are then the input tokens. */
  outputTokens?: Count;
}

export interface PickResult {
  /** true: admitted and recorded on `model`. false: none could; nothing recorded. */
  ok: boolean;
  /** ok: the model chosen. Not ok: the candidate that frees up first. */
  model: string;
  /** The index of `model` in the candidates. */
  index: number;
  /** Not ok: milliseconds until `model` would take the request (> 0). 0 when ok. */
  retryAfterMs: number;
  /** The grant when ok, else null. */
  grant: Grant | null;
}

/** A header value: multi-valued headers pass each value; null and undefined are skipped. */
export type HeaderValue = string | number | ReadonlyArray<string | number> | null | undefined;

/**
 * Response headers: a plain object (e.g. IncomingMessage.headers), or an iterable of
 * [name, value] pairs (fetch's Headers, a Map, an array of pairs).
 */
export type HeadersInput =
  | Iterable<readonly [string, HeaderValue]>
  | { readonly [name: string]: HeaderValue };

/**
 * A Retry-After: the header's text (delay seconds "30", "1.5", or an HTTP date), a number of
 * seconds, a Date, or null / undefined / '' for the library's default of 1 second.
 */
export type RetryAfter = string | number | bigint | Date | null | undefined;

/**
 * A ticket for an admitted request, to settle with its real token counts. tokens (= inputTokens)
 * and outputTokens are what it was granted with (outputTokens 0 for a grant of one tokens count).
 */
export class Grant {
  constructor(model: string, ticket: bigint, tokens: Count, outputTokens?: Count);
  readonly model: string;
  readonly ticket: bigint;
  readonly tokens: Count;
  /** The same as tokens: plain tokens are input tokens. */
  readonly inputTokens: Count;
  readonly outputTokens: Count;
}

/** A rate-limit tracker: the global one or a private one from open(). */
export class Tracker {
  private constructor();
  /** Whether this is the process-wide global tracker (close() is a no-op). */
  readonly isGlobal: boolean;
  /** Whether close() was called on this private tracker. */
  readonly closed: boolean;
  /** Whether the request fits every window now (records nothing). Throws RT_E_TOO_LARGE if it never can. */
  canMake(model: string, tokens?: Count): boolean;
  /** Records a request that happened now (even past a limit). */
  record(model: string, tokens?: Count): void;
  /**
   * Books tokens to a request that was already counted, without counting another request
   * (rt_record_tokens; for callback-style frameworks that learn the tokens after the call): they
   * are added to the token windows now (request windows unchanged) and count against what the
   * provider said remains. Always recorded, even past a limit. inputTokens is required.
   */
  recordTokens(model: string, inputTokens: Count, outputTokens?: Count): void;
  /** Checks and records atomically. Throws RT_E_TOO_LARGE if it never fits. */
  tryAcquire(model: string, tokens?: Count): TryAcquireResult;
  /** tryAcquire that also returns a Grant for settle(). */
  tryAcquireGrant(model: string, tokens?: Count): TryAcquireGrantResult;
  /** tryAcquireGrant with input and output tokens counted apart (rt_try_acquire_io). */
  tryAcquireIo(model: string, inputTokens?: Count, outputTokens?: Count): TryAcquireGrantResult;
  /**
   * Settles a grant to the tokens really used (refund or top-up at the grant's time), passing
   * the grant's own counts as the granted ones. actualOutputTokens is required when the grant
   * reserved output tokens (rt_settle_io). Throws RT_E_INVALID, changing nothing, for a ticket of
   * 0, a forged ticket, one from another tracker, or a grant whose counts are not the grant's own.
   */
  settle(grant: Grant, actualTokens: Count, actualOutputTokens?: Count): void;
  /**
   * Acquires on the first of `models` (in order of preference) that can take the request now.
   * When none can: ok false, naming the candidate that frees up first (not an error). Throws
   * RT_E_TOO_LARGE when the request exceeds a limit of every candidate outright.
   */
  pick(models: Iterable<string>, inputTokens?: Count, outputTokens?: Count): PickResult;
  /**
   * Feeds a response's headers back (OpenAI x-ratelimit-*, Anthropic anthropic-ratelimit-*):
   * the tracker then never believes in more capacity than the provider reported. Unknown or
   * malformed headers (lone surrogates included) are skipped; a NUL in a name or value throws
   * RT_E_INVALID.
   */
  observeHeaders(model: string, headers: HeadersInput): void;
  /** Reports a 429: the model is refused until the Retry-After time (default 1 s, at most a day). */
  reportLimited(model: string, retryAfter?: RetryAfter): void;
  /** Milliseconds until the request would fit (0: now). Throws RT_E_TOO_LARGE if never. */
  waitTime(model: string, tokens?: Count): number;
  /**
   * Waits (setTimeout between tries, each try an asynchronous call on the thread pool: never
   * blocking the event loop) until admitted; null on timeout.
   */
  acquire(model: string, tokens?: Count, options?: AcquireOptions): Promise<Grant | null>;

  // The asynchronous forms: the same arguments, checks and results as the synchronous methods,
  // run with koffi's asynchronous calls on the libuv thread pool (UV_THREADPOOL_SIZE, 4 by
  // default), so a redis:// round trip never blocks the event loop and N concurrent callers have
  // N calls in flight. Bad arguments reject before the call. A failure's message carries the
  // status code's description (rt_last_error stays on the worker thread).
  canMakeAsync(model: string, tokens?: Count): Promise<boolean>;
  recordAsync(model: string, tokens?: Count): Promise<void>;
  recordTokensAsync(model: string, inputTokens: Count, outputTokens?: Count): Promise<void>;
  tryAcquireAsync(model: string, tokens?: Count): Promise<TryAcquireResult>;
  tryAcquireGrantAsync(model: string, tokens?: Count): Promise<TryAcquireGrantResult>;
  tryAcquireIoAsync(model: string, inputTokens?: Count, outputTokens?: Count): Promise<TryAcquireGrantResult>;
  settleAsync(grant: Grant, actualTokens: Count, actualOutputTokens?: Count): Promise<void>;
  pickAsync(models: Iterable<string>, inputTokens?: Count, outputTokens?: Count): Promise<PickResult>;
  observeHeadersAsync(model: string, headers: HeadersInput): Promise<void>;
  reportLimitedAsync(model: string, retryAfter?: RetryAfter): Promise<void>;
  waitTimeAsync(model: string, tokens?: Count): Promise<number>;
  statsAsync(): Promise<Stats>;
  metricsTextAsync(): Promise<string>;
  resetAsync(): Promise<void>;
  /** Clears recorded usage; keeps limits and tier. */
  reset(): void;
  /** Usage as native data. */
  stats(): Stats;
  /**
   * Usage in the Prometheus text exposition format (0.0.4), to serve on your own HTTP server:
   * ratetrack_info, ratetrack_window_{usage,limit,remaining,observed_limit}, ratetrack_admitted_total
   * and ratetrack_refused_total (this process's tryAcquire / pick decisions), ratetrack_blocked_seconds,
   * ratetrack_backend_errors_total, ratetrack_backend_up.
   */
  metricsText(): string;
  /** Applies a configuration (RT_E_CONFIG and nothing changed if bad). */
  configure(config: Config): void;
  /**
   * Frees a private tracker (idempotent); no-op on the global one. Asynchronous calls still
   * running keep the handle until they return.
   */
  close(): void;
  [Symbol.dispose](): void;
}

export type StatusName =
  | 'RT_E_INVALID'
  | 'RT_E_CONFIG'
  | 'RT_E_TOO_LARGE'
  | 'RT_E_BACKEND'
  | 'RT_E_NOMEM'
  | 'RT_E_INTERNAL';

/** A negative status from libratetrack: .code is the int, .status its name. */
export class RateTrackError extends Error {
  constructor(code: number, message?: string);
  readonly code: number;
  readonly status: StatusName | string;
  /** rt_last_error() text read right after the failing call ('' if none). */
  readonly detail: string;
}

/** The library could not be loaded; `tried` lists every place with the loader's message. */
export class LoadError extends Error {
  readonly tried: Array<{ source: string; path: string; error: string }>;
}

/** The library's major.minor differs from the binding's. */
export class VersionMismatchError extends LoadError {
  readonly path: string;
  readonly libraryVersion: string;
  readonly bindingVersion: string;
}

export interface LoadedLibrary {
  path: string;
  /** 'explicit path', '$RATETRACK_LIBRARY' or 'system loader'. */
  source: string;
  version: string;
  versionNumber: number;
}

/** Loads the library now: `path`, then $RATETRACK_LIBRARY, then libratetrack.so.0. Once per process. */
export function load(path?: string): LoadedLibrary;
/** The process-wide global tracker; `tier` applies that tier from now on. */
export function globalTracker(tier?: string | null): Tracker;
/** A private tracker (defaults when config is omitted). */
export function open(config?: Config | null): Tracker;
/** Configures the global tracker, before or after it is created. */
export function configureGlobal(config: Config): void;
/** The global tracker's stats, or null before it exists (and after resetGlobal(), until the next globalTracker()). */
export function globalStats(): Stats | null;
/**
 * Returns the global tracker to "never created": usage forgotten, globalStats() null until the
 * next globalTracker(), which chooses the tier again as at first creation (until then the old
 * tier's limits stay in force). Configuration kept; existing handles stay valid.
 */
export function resetGlobal(): void;
/** The global tracker's metricsText(); before the global exists, one comment line saying so. */
export function metricsText(): string;
/** The shared-memory segments in /dev/shm (every "shm:NAME" backend's). */
export function shmList(): ShmSegment[];
/**
 * Removes (unlinks) the segment NAME; processes that have it mapped keep their mapping.
 * Throws RT_E_INVALID for a bad or unknown name, RT_E_BACKEND if it cannot be removed.
 */
export function shmRemove(name: string): void;
/** Loaded library version "MAJOR.MINOR.PATCH". */
export function version(): string;
/** Loaded library version as MAJOR*10000 + MINOR*100 + PATCH. */
export function versionNumber(): number;
/** The library's description of a status code. */
export function statusString(code: number): string;
/** The name of a status code ('RT_E_CONFIG'). */
export function statusName(code: number): string;
/** The error for a negative status code. */
export function errorFromStatus(code: number, message?: string): RateTrackError;
/** Whether a library version number has this binding's major.minor. */
export function isCompatible(libraryVersionNumber: number, bindingVersion?: string): boolean;

export const Status: Readonly<{
  RT_OK: 0;
  RT_LIMITED: 1;
  RT_E_INVALID: -1;
  RT_E_CONFIG: -2;
  RT_E_TOO_LARGE: -3;
  RT_E_BACKEND: -4;
  RT_E_NOMEM: -5;
  RT_E_INTERNAL: -6;
}>;
/** This binding's version; the library's major.minor must match. */
export const BINDING_VERSION: string;
/** RT_WAIT_NEVER (UINT64_MAX). */
export const WAIT_NEVER: bigint;
