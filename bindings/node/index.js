'use strict';
/**
 * ratetrack: Node.js binding for libratetrack, a rate-limit tracker for LLM
 * APIs. Thin over the C ABI of libratetrack.so.0, loaded at run time with
 * koffi. See README.md and index.d.ts.
 */
const koffi = require('koffi');
const loader = require('./lib/loader');
const {
  Status,
  statusName,
  RateTrackError,
  LoadError,
  VersionMismatchError,
  errorFromStatus,
} = require('./lib/errors');

const UINT64_MAX = 0xffffffffffffffffn;
const { RT_OK, RT_LIMITED, RT_E_INVALID } = Status;

// The C functions, set by the first (lazy) load.
let F = null;
// Scratch out-parameters. JS runs one call at a time per thread, and each
// worker thread has its own module instance, so sharing them is safe.
const out1 = new BigUint64Array(1);
const out2 = new BigUint64Array(1);

/** The C functions, loading the library on first use. */
function fns() {
  if (F === null) F = loader.load().fn;
  return F;
}

/**
 * Loads libratetrack now (otherwise it is loaded on first use). Lookup
 * order: `path` if given, then $RATETRACK_LIBRARY, then the system loader
 * name `libratetrack.so.0`. Once per process: later calls return the same
 * library. Throws LoadError (naming every place tried) or
 * VersionMismatchError (library major.minor differs from the binding's).
 * @param {string} [path]
 * @returns {{path: string, source: string, version: string, versionNumber: number}}
 */
function load(path) {
  const l = loader.load(path);
  F = l.fn;
  return { path: l.path, source: l.source, version: l.version, versionNumber: l.versionNumber };
}

/** Throws the error for negative status `code`, with rt_last_error() read at once (same thread). */
function fail(code) {
  throw errorFromStatus(code, F.rt_last_error());
}

function invalid(message) {
  return new RateTrackError(RT_E_INVALID, message);
}

function checkModel(model) {
  if (typeof model !== 'string') throw invalid(`model must be a string, got ${typeof model}`);
  if (model.includes('\0')) throw invalid('model must not contain NUL characters');
  return model;
}

/** Validates a uint64 count (number or bigint); undefined means 0. */
function checkU64(value, what) {
  if (value === undefined) return 0;
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
  } else if (typeof value === 'bigint') {
    if (value >= 0n && value <= UINT64_MAX) return value;
  }
  throw invalid(`${what} must be a non-negative integer (number or bigint), got ${String(value)}`);
}

/** A configuration object is sent as JSON; a string is sent as is. */
function configText(config, allowEmpty) {
  if (config === undefined || config === null) {
    if (allowEmpty) return null;
    throw invalid('configuration is required');
  }
  if (typeof config === 'string') return config;
  if (typeof config === 'object') return JSON.stringify(config);
  throw invalid(`configuration must be an object or a JSON string, got ${typeof config}`);
}

/**
 * Calls rt_stats_json_ex(handle) (the error kind comes from its status code),
 * decodes the owned string and frees it with rt_free.
 */
function statsJson(handle) {
  const out = [null];
  const rc = F.rt_stats_json_ex(handle, out);
  if (rc < 0) fail(rc);
  const p = out[0];
  let text;
  try {
    text = koffi.decode(p, 'char', -1);
  } finally {
    F.rt_free(p);
  }
  return JSON.parse(text);
}

/**
 * A ticket for an admitted request, to settle once its real token count is
 * known (Tracker#settle).
 */
class Grant {
  /**
   * @param {string} model
   * @param {bigint} ticket opaque non-zero ticket from rt_try_acquire_grant
   * @param {number|bigint} tokens the tokens the request was admitted with
   */
  constructor(model, ticket, tokens) {
    this.model = model;
    this.ticket = ticket;
    this.tokens = tokens;
    Object.freeze(this);
  }
}

// Closes private trackers that were dropped without close().
const finalizer = new FinalizationRegistry((handle) => {
  if (F) F.rt_close(handle);
});

/**
 * A rate-limit tracker: the process-wide global one (globalTracker()) or a
 * private one (open()). Methods throw RateTrackError on negative statuses;
 * "limited" is an answer, not an error.
 */
class Tracker {
  #h;
  #global;

  /** @private Use ratetrack.open() or ratetrack.globalTracker(). */
  constructor(handle, isGlobal) {
    this.#h = handle;
    this.#global = isGlobal;
    if (!isGlobal) finalizer.register(this, handle, this);
  }

  /** Whether this is the process-wide global tracker (close() is a no-op). */
  get isGlobal() {
    return this.#global;
  }

  /** Whether close() was called on this private tracker. */
  get closed() {
    return this.#h === null;
  }

  #handle() {
    if (this.#h === null) throw invalid('tracker is closed');
    return this.#h;
  }

  /**
   * Whether a request of `tokens` tokens to `model` fits every window now.
   * Records nothing. Throws RT_E_TOO_LARGE if it can never fit.
   * @returns {boolean}
   */
  canMake(model, tokens = 0) {
    const rc = F.rt_can_make(this.#handle(), checkModel(model), checkU64(tokens, 'tokens'));
    if (rc < 0) fail(rc);
    return rc === 1;
  }

  /** Records that a request to `model` using `tokens` tokens happened now (even past a limit). */
  record(model, tokens = 0) {
    const rc = F.rt_record(this.#handle(), checkModel(model), checkU64(tokens, 'tokens'));
    if (rc < 0) fail(rc);
  }

  /**
   * Checks and records in one atomic step.
   * @returns {{ok: boolean, retryAfterMs: number}} ok: admitted and recorded;
   *   otherwise nothing was recorded and retryAfterMs (> 0) says when it would fit.
   *   Throws RT_E_TOO_LARGE if it can never fit.
   */
  tryAcquire(model, tokens = 0) {
    const rc = F.rt_try_acquire(this.#handle(), checkModel(model), checkU64(tokens, 'tokens'), out1);
    if (rc === RT_OK) return { ok: true, retryAfterMs: 0 };
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: Number(out1[0]) };
    return fail(rc);
  }

  /**
   * tryAcquire that also returns a Grant to settle later.
   * @returns {{ok: boolean, retryAfterMs: number, grant: Grant|null}}
   */
  tryAcquireGrant(model, tokens = 0) {
    checkModel(model);
    tokens = checkU64(tokens, 'tokens');
    const rc = F.rt_try_acquire_grant(this.#handle(), model, tokens, out1, out2);
    if (rc === RT_OK) return { ok: true, retryAfterMs: 0, grant: new Grant(model, out2[0], tokens) };
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: Number(out1[0]), grant: null };
    return fail(rc);
  }

  /**
   * Settles `grant` to the tokens the request really used (refund or
   * top-up, booked at the moment of the grant). Passes grant.tokens as the
   * granted count: the library checks the ticket against it and against this
   * tracker, and throws RT_E_INVALID (nothing changed) for a ticket of 0, a
   * forged one, one from another tracker, or a Grant whose tokens are not the
   * grant's own. Settle each grant once.
   * @param {Grant} grant
   * @param {number|bigint} actualTokens
   */
  settle(grant, actualTokens) {
    if (!(grant instanceof Grant)) throw invalid('grant must be a Grant from tryAcquireGrant() or acquire()');
    const rc = F.rt_settle(
      this.#handle(),
      grant.model,
      grant.ticket,
      grant.tokens,
      checkU64(actualTokens, 'actualTokens'),
    );
    if (rc < 0) fail(rc);
  }

  /**
   * Milliseconds until a request of `tokens` tokens to `model` would fit
   * (0: now). Records nothing. Throws RT_E_TOO_LARGE when it never will.
   * @returns {number}
   */
  waitTime(model, tokens = 0) {
    const rc = F.rt_wait_time(this.#handle(), checkModel(model), checkU64(tokens, 'tokens'), out1);
    if (rc < 0) fail(rc);
    return Number(out1[0]);
  }

  /**
   * Waits without blocking the event loop (setTimeout for each retry-after)
   * until the request fits, then records it and resolves to its Grant.
   * Resolves to null if `timeoutMs` passes first (nothing recorded; 0 = try
   * once; omitted = no timeout). Rejects with `signal.reason` when aborted,
   * and with RT_E_TOO_LARGE at once if it can never fit.
   * @param {{timeoutMs?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<Grant|null>}
   */
  async acquire(model, tokens = 0, { timeoutMs, signal } = {}) {
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 0)) {
      throw invalid(`timeoutMs must be a non-negative number, got ${String(timeoutMs)}`);
    }
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const r = this.tryAcquireGrant(model, tokens);
      if (r.ok) return r.grant;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await sleep(Math.max(1, Math.min(r.retryAfterMs, left)), signal);
    }
  }

  /** Clears all recorded usage; keeps limits, tier and handle. */
  reset() {
    const rc = F.rt_reset(this.#handle());
    if (rc < 0) fail(rc);
  }

  /**
   * Usage as a plain object: {tier, backend, models: {model: {window:
   * {current, limit, remaining, usage_percent}}}} (limit, remaining and
   * usage_percent null when unlimited).
   */
  stats() {
    return statsJson(this.#handle());
  }

  /**
   * Applies a configuration (object or JSON string; see open()). Throws
   * RT_E_CONFIG and changes nothing if it is bad.
   */
  configure(config) {
    const rc = F.rt_configure(this.#handle(), configText(config, false));
    if (rc < 0) fail(rc);
  }

  /** Frees a private tracker (idempotent). A no-op on the global tracker. */
  close() {
    if (this.#global || this.#h === null) return;
    const h = this.#h;
    this.#h = null;
    finalizer.unregister(this);
    F.rt_close(h);
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Tracker.prototype[Symbol.dispose] = Tracker.prototype.close;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The process-wide global tracker (one per process, shared by every worker
 * thread and every language loaded in it). `tier`: "tier1",
 * "openai=tier2,anthropic=tier1", ... or omitted (RATETRACK_TIER, then the
 * configured tier, then "tier1"). A different tier than the current one
 * applies from then on; usage is kept. Throws the status code's error
 * (RT_E_CONFIG: unknown tier or bad RATETRACK_CONFIG file; RT_E_NOMEM).
 * @param {string} [tier]
 * @returns {Tracker}
 */
function globalTracker(tier) {
  fns();
  if (tier !== undefined && tier !== null && typeof tier !== 'string') {
    throw invalid(`tier must be a string, got ${typeof tier}`);
  }
  const out = [null];
  const rc = F.rt_global_get_ex(tier || null, out);
  if (rc < 0) fail(rc);
  return new Tracker(out[0], true);
}

/**
 * Opens a private tracker, independent of the global one. `config`: an
 * object or a JSON string, e.g. {builtin_tiers: false, limits: {"acme/m":
 * {rpm: 100, tpm: 1000}}}; omitted for the defaults. Throws the status
 * code's error (RT_E_CONFIG for a bad configuration, RT_E_NOMEM).
 * @returns {Tracker}
 */
function open(config) {
  fns();
  const out = [null];
  const rc = F.rt_open_ex(configText(config, true), out);
  if (rc < 0) fail(rc);
  return new Tracker(out[0], false);
}

/**
 * Applies a configuration to the global tracker, before or after it is
 * created ("limits" replaces the configured limits as a whole; usage kept).
 */
function configureGlobal(config) {
  fns();
  const rc = F.rt_global_configure(configText(config, false));
  if (rc < 0) fail(rc);
}

/** The global tracker's stats, or null before it is created (or after resetGlobal()). */
function globalStats() {
  fns();
  return statsJson(null);
}

/**
 * Returns the global tracker to "never created": its usage is forgotten and
 * globalStats() is null until the next globalTracker(), which chooses the
 * tier again as at first creation (until then the old tier's limits stay in
 * force). Configuration from configureGlobal() is kept; existing handles stay
 * valid and act on the emptied global.
 */
function resetGlobal() {
  fns();
  const rc = F.rt_reset(null);
  if (rc < 0) fail(rc);
}

/** The loaded library's version, "MAJOR.MINOR.PATCH". */
function version() {
  fns();
  return loader.load().version;
}

/** The loaded library's version as MAJOR*10000 + MINOR*100 + PATCH. */
function versionNumber() {
  fns();
  return loader.load().versionNumber;
}

/** The library's short description of any status code. */
function statusString(code) {
  return fns().rt_status_string(code);
}

module.exports = {
  load,
  globalTracker,
  open,
  configureGlobal,
  globalStats,
  resetGlobal,
  version,
  versionNumber,
  statusString,
  statusName,
  errorFromStatus,
  isCompatible: loader.isCompatible,
  Tracker,
  Grant,
  RateTrackError,
  LoadError,
  VersionMismatchError,
  Status,
  BINDING_VERSION: loader.BINDING_VERSION,
  WAIT_NEVER: UINT64_MAX,
};
