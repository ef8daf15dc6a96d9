'use strict';
/**
 * ratetrack: Node.js binding for libratetrack, a rate-limit tracker for LLM
 * APIs. Thin over the C ABI of libratetrack.so.0, loaded at run time with
 * koffi. See README.md and index.d.ts.
 */
const koffi = require('./lib/koffi');
const loader = require('./lib/loader');
const checks = require('./lib/checks');
const {
  Status,
  statusName,
  RateTrackError,
  LoadError,
  VersionMismatchError,
  errorFromStatus,
} = require('./lib/errors');

const { UINT64_MAX } = checks;
const { RT_OK, RT_LIMITED, RT_E_INVALID } = Status;

// The C functions, set by the first (lazy) load.
let F = null;
// Scratch out-parameters. JS runs one call at a time per thread, and each
// worker thread has its own module instance, so sharing them is safe.
const out1 = new BigUint64Array(1);
const out2 = new BigUint64Array(1);
// Their addresses: koffi converts a typed array to a pointer at each call
// (about 25 ns on the project's machine), a pointer given as a bigint it
// passes as is. A typed array's memory does not move.
const out1Ptr = koffi.address(out1);
const out2Ptr = koffi.address(out2);
// out1 as two 32-bit halves: a wait read as a Number without making a BigInt
// (hi * 2^32 + lo rounds as Number(out1[0]) does, once).
const out1Words = new Uint32Array(out1.buffer);
const LO = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HI = 1 - LO;
/** Number(out1[0]), faster. */
function out1Number() {
  return out1Words[HI] * 4294967296 + out1Words[LO];
}

// Model names as NUL-terminated UTF-8, by string, with their addresses: the
// synchronous hot calls pass the address, not the string koffi would encode
// at every call (about 50 ns). Bounded: cleared past MODEL_PTRS_MAX names (a
// caller inventing a name per call must not grow it forever); a cleared
// Buffer is only freed by the GC, after any synchronous call that used it.
// The asynchronous calls pass strings: their call outlives this function.
const MODEL_PTRS_MAX = 4096;
const modelPtrs = new Map();
const modelBufs = new Map();
let lastPtrModel = null;
let lastPtr = 0n;

/** The address of `model` (already checked) as NUL-terminated UTF-8. */
function modelPtr(model) {
  if (model === lastPtrModel) return lastPtr;
  let p = modelPtrs.get(model);
  if (p === undefined) {
    if (modelPtrs.size >= MODEL_PTRS_MAX) {
      modelPtrs.clear();
      modelBufs.clear();
    }
    const buf = Buffer.from(`${model}\0`, 'utf8');
    p = koffi.address(buf);
    modelPtrs.set(model, p);
    modelBufs.set(model, buf);
  }
  lastPtrModel = model;
  lastPtr = p;
  return p;
}
// The pointer-sized cell for `void **` (an owned string, a tracker handle)
// and `size_t *` out-parameters: koffi passes a Buffer by address, with no
// per-call napi reference (a koffi _Out_ array makes one, which Node 18
// frees only when the event loop turns), and koffi.decode reads it back
// with a type resolved once (koffi.decode(p, 'char', -1) leaves the name of
// a new "char[N]" type behind in koffi at every call: 9 to 18 B a call).
const cell = Buffer.alloc(koffi.sizeof('void *'));
const VOID_PTR = koffi.type('void *');
const C_STRING = koffi.type('const char *');
const SIZE_T = koffi.type('size_t');

/** The pointer the last call stored in `cell` (a bigint; null for NULL). */
function cellPointer() {
  return koffi.decode(cell, VOID_PTR);
}

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

/**
 * The error for negative status `code` from an asynchronous call. The call ran
 * on a libuv worker thread, whose rt_last_error() this thread cannot read: the
 * status code says what happened (ratetrack.h, convention 2), and the message
 * names the call and the library's description of the code.
 */
function asyncError(code, call) {
  return errorFromStatus(code, `${call}: ${F.rt_status_string(code)}`);
}

/**
 * Runs C function `f` asynchronously (koffi's f.async, on the libuv thread
 * pool) and resolves to its int status. Every Buffer / typed array in `args`
 * is referenced by the caller's closure until the promise settles, so it stays
 * alive while the worker writes to it; strings are copied by koffi before the
 * call leaves this thread.
 */
function callAsync(f, args) {
  return new Promise((resolve, reject) => {
    const start = () => {
      asyncInFlight++;
      try {
        f.async(...args, (err, rc) => {
          nextAsync();
          if (err) reject(err);
          else resolve(rc);
        });
      } catch (err) {
        nextAsync();
        reject(err);
      }
    };
    if (asyncInFlight < MAX_ASYNC_IN_FLIGHT) start();
    else asyncQueue.push(start);
  });
}

// koffi throws once more than max_async_calls (256) are running or queued:
// past MAX_ASYNC_IN_FLIGHT, calls wait here in order instead (the libuv pool
// runs UV_THREADPOOL_SIZE of them at a time anyway), so any number of
// concurrent callers works and koffi keeps room for other users.
const MAX_ASYNC_IN_FLIGHT = 64;
let asyncInFlight = 0;
const asyncQueue = [];

/** One asynchronous call ended: start the next queued one, if any. */
function nextAsync() {
  asyncInFlight--;
  const next = asyncQueue.shift();
  if (next) next();
}

function invalid(message) {
  return new RateTrackError(RT_E_INVALID, message);
}

/** The optional C function `name`; throws a LoadError if the loaded library predates it. */
function need(name) {
  const f = fns()[name];
  if (f) return f;
  const l = loader.load();
  throw new LoadError(
    `the loaded libratetrack (${l.path}, ${l.version}) has no ${name}: it predates input/output ` +
      'tokens, picking a model, provider truth, metrics, shared-memory segment management or ' +
      'booking tokens to a counted request (rt_record_tokens); ' +
      'install a newer library build',
    [],
  );
}

/** Whether a Count is zero (0 or 0n). */
function isZero(n) {
  return n === 0 || n === 0n;
}

const checkModel = checks.model;
const checkU64 = checks.u64;

/** A count that must be given (undefined is refused, not read as 0). */
function checkTokens(value, what) {
  if (value === undefined) throw invalid(`${what} is required`);
  return checkU64(value, what);
}

/**
 * Calls rt_stats_json_ex(handle) (the error kind comes from its status code),
 * decodes the owned string and frees it with rt_free.
 */
function statsJson(handle) {
  const rc = F.rt_stats_json_ex(handle, cell);
  if (rc < 0) fail(rc);
  return JSON.parse(ownedText());
}

/**
 * Decodes the caller-owned C string whose pointer the last call stored in
 * `cell`, and frees it with rt_free.
 */
function ownedText() {
  return ownedTextOf(cell);
}

/** ownedText for the pointer-sized buffer `box` (an asynchronous call's own). */
function ownedTextOf(box) {
  const p = koffi.decode(box, VOID_PTR);
  try {
    return koffi.decode(box, C_STRING);
  } finally {
    F.rt_free(p);
  }
}

/** Calls rt_metrics_text(handle) (NULL: the global) and returns the owned text, freed. */
function metricsTextOf(handle) {
  const f = need('rt_metrics_text');
  const rc = f(handle, cell);
  if (rc < 0) fail(rc);
  return ownedText();
}

/**
 * A ticket for an admitted request, to settle once its real token count is
 * known (Tracker#settle). `tokens` (also `inputTokens`) and `outputTokens`
 * are the counts it was admitted with; a grant of one `tokens` count has
 * outputTokens 0 (plain tokens are input tokens).
 */
class Grant {
  /**
   * @param {string} model
   * @param {bigint} ticket opaque non-zero ticket from rt_try_acquire_grant / _io / rt_pick
   * @param {number|bigint} tokens the (input) tokens the request was admitted with
   * @param {number|bigint} [outputTokens] the output tokens it was admitted with (0)
   */
  constructor(model, ticket, tokens, outputTokens = 0) {
    this.model = model;
    this.ticket = ticket;
    this.tokens = tokens;
    this.outputTokens = outputTokens;
    Object.freeze(this);
  }

  /** The input tokens the request was admitted with (the same as `tokens`). */
  get inputTokens() {
    return this.tokens;
  }
}

/** Validates a list (array or iterable) of model names for rt_pick. */
function checkModels(models) {
  if (models === null || typeof models !== 'object' || typeof models[Symbol.iterator] !== 'function') {
    throw invalid('models must be an array (or iterable) of model names');
  }
  const list = Array.from(models);
  for (const m of list) checkModel(m);
  return list;
}

/**
 * A header name or value as a string for the C call, or null (skip the pair)
 * when it has a lone surrogate, so no UTF-8 form: a malformed header, which
 * the library would skip too. A NUL is refused: C would cut the text at it,
 * and a real HTTP stack never delivers one.
 */
function headerText(x, what) {
  const s = typeof x === 'string' ? x : String(x);
  if (s.includes('\0')) throw invalid(`header ${what} must not contain NUL characters: ${JSON.stringify(s)}`);
  return checks.isWellFormed(s) ? s : null;
}

/**
 * Flattens headers into parallel name and value arrays: a plain object
 * ({name: value}, e.g. IncomingMessage.headers), or anything iterable of
 * [name, value] pairs (Map, fetch's Headers, an array of pairs). A value that
 * is an array is passed once per element (multi-valued headers); null and
 * undefined values are skipped.
 */
function headerArrays(headers) {
  let entries;
  if (headers !== null && typeof headers === 'object' && typeof headers[Symbol.iterator] === 'function') {
    entries = headers;
  } else if (headers !== null && typeof headers === 'object') {
    entries = Object.entries(headers);
  } else {
    throw invalid('headers must be an object, a Map, a Headers or an iterable of [name, value] pairs');
  }
  const names = [];
  const values = [];
  for (const entry of entries) {
    if (entry === null || typeof entry !== 'object' || entry.length !== 2) {
      throw invalid('headers must be an object, a Map, a Headers or an iterable of [name, value] pairs');
    }
    const name = headerText(entry[0], 'name');
    const value = entry[1];
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v === null || v === undefined) continue;
      const text = headerText(v, 'value');
      if (name === null || text === null) continue;
      names.push(name);
      values.push(text);
    }
  }
  return { names, values };
}

/** Decimal seconds ("1.5") from a non-negative number of seconds, to the millisecond. */
function decimalSeconds(seconds) {
  const s = Math.min(seconds, 1e9); // the library caps a 429 at a day anyway
  return Number.isInteger(s) ? String(s) : s.toFixed(3).replace(/\.?0+$/, '');
}

/**
 * The Retry-After text for rt_report_limited: null (the library's default of
 * 1 s) for undefined, null or ''; a string as is (delay seconds or an HTTP
 * date); a number or bigint of seconds; a Date as the seconds from now to it.
 */
function retryAfterText(retryAfter) {
  if (retryAfter === undefined || retryAfter === null || retryAfter === '') return null;
  if (typeof retryAfter === 'string') return checks.text(retryAfter, 'retryAfter');
  if (typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter >= 0) {
    return decimalSeconds(retryAfter);
  }
  if (typeof retryAfter === 'bigint' && retryAfter >= 0n) return String(retryAfter);
  if (retryAfter instanceof Date && !Number.isNaN(retryAfter.getTime())) {
    return decimalSeconds(Math.max(0, (retryAfter.getTime() - Date.now()) / 1000));
  }
  throw invalid(
    `retryAfter must be a Retry-After header string, a non-negative number of seconds or a Date, got ${String(retryAfter)}`,
  );
}

/**
 * The checked arguments of settle(grant, actualTokens, actualOutputTokens):
 * {io, model, ticket, granted, grantedOutput, actual, actualOutput}; io is
 * whether rt_settle_io is needed (the grant reserved output tokens, or actual
 * output tokens were given).
 */
function settleArgs(grant, actualTokens, actualOutputTokens) {
  if (!(grant instanceof Grant)) {
    throw invalid('grant must be a Grant from tryAcquireGrant(), tryAcquireIo(), pick() or acquire()');
  }
  // A Grant can be built by hand: its fields are checked like arguments.
  const model = checkModel(grant.model);
  const ticket = checkU64(grant.ticket, 'grant.ticket');
  const granted = checkU64(grant.tokens, 'grant.tokens');
  const grantedOutput = checkU64(grant.outputTokens, 'grant.outputTokens');
  const actual = checkU64(actualTokens, 'actualTokens');
  if (actualOutputTokens === undefined && isZero(grantedOutput)) {
    return { io: false, model, ticket, granted, grantedOutput, actual, actualOutput: 0 };
  }
  if (actualOutputTokens === undefined) {
    throw invalid(
      `the grant was acquired with ${grant.outputTokens} output tokens: pass the actual output tokens too, ` +
        'settle(grant, actualInput, actualOutput)',
    );
  }
  const actualOutput = checkU64(actualOutputTokens, 'actualOutputTokens');
  return { io: true, model, ticket, granted, grantedOutput, actual, actualOutput };
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
  // Asynchronous calls still running on the thread pool, and whether close()
  // waits for them to end before freeing the handle.
  #inflight = 0;
  #closeWhenIdle = null;

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
    const rc = F.rt_can_make(this.#handle(), modelPtr(checkModel(model)), checkU64(tokens, 'tokens'));
    if (rc < 0) fail(rc);
    return rc === 1;
  }

  /** Records that a request to `model` using `tokens` tokens happened now (even past a limit). */
  record(model, tokens = 0) {
    const rc = F.rt_record(this.#handle(), modelPtr(checkModel(model)), checkU64(tokens, 'tokens'));
    if (rc < 0) fail(rc);
  }

  /**
   * Books tokens to a request that was already counted (rt_record_tokens),
   * without counting another request: for callback-style frameworks that
   * learn the tokens after the call. `inputTokens` and `outputTokens` are
   * added to the model's token windows now (request windows unchanged) and
   * count against what the provider said remains. Always recorded, even past
   * a limit.
   * @param {string} model
   * @param {number|bigint} inputTokens
   * @param {number|bigint} [outputTokens] 0 if omitted
   */
  recordTokens(model, inputTokens, outputTokens = 0) {
    const f = need('rt_record_tokens');
    const rc = f(this.#handle(), checkModel(model), checkTokens(inputTokens, 'inputTokens'), checkU64(outputTokens, 'outputTokens'));
    if (rc < 0) fail(rc);
  }

  /**
   * Checks and records in one atomic step.
   * @returns {{ok: boolean, retryAfterMs: number}} ok: admitted and recorded;
   *   otherwise nothing was recorded and retryAfterMs (> 0) says when it would fit.
   *   Throws RT_E_TOO_LARGE if it can never fit.
   */
  tryAcquire(model, tokens = 0) {
    const rc = F.rt_try_acquire(this.#handle(), modelPtr(checkModel(model)), checkU64(tokens, 'tokens'), out1Ptr);
    if (rc === RT_OK) return { ok: true, retryAfterMs: 0 };
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: out1Number() };
    return fail(rc);
  }

  /**
   * tryAcquire that also returns a Grant to settle later.
   * @returns {{ok: boolean, retryAfterMs: number, grant: Grant|null}}
   */
  tryAcquireGrant(model, tokens = 0) {
    checkModel(model);
    tokens = checkU64(tokens, 'tokens');
    const rc = F.rt_try_acquire_grant(this.#handle(), modelPtr(model), tokens, out1Ptr, out2Ptr);
    if (rc === RT_OK) return { ok: true, retryAfterMs: 0, grant: new Grant(model, out2[0], tokens) };
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: out1Number(), grant: null };
    return fail(rc);
  }

  /**
   * tryAcquireGrant with input and output tokens counted apart
   * (rt_try_acquire_io): reserve the prompt's `inputTokens` and
   * `outputTokens` = max_tokens, then settle(grant, actualInput,
   * actualOutput). Windows of unit "tokens" count both; "input_tokens" /
   * "output_tokens" windows (itpm, otpm, ...) count their side.
   * @returns {{ok: boolean, retryAfterMs: number, grant: Grant|null}}
   */
  tryAcquireIo(model, inputTokens = 0, outputTokens = 0) {
    const f = need('rt_try_acquire_io');
    checkModel(model);
    inputTokens = checkU64(inputTokens, 'inputTokens');
    outputTokens = checkU64(outputTokens, 'outputTokens');
    const rc = f(this.#handle(), model, inputTokens, outputTokens, out1, out2);
    if (rc === RT_OK) {
      return { ok: true, retryAfterMs: 0, grant: new Grant(model, out2[0], inputTokens, outputTokens) };
    }
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: Number(out1[0]), grant: null };
    return fail(rc);
  }

  /**
   * Settles `grant` to the tokens the request really used (refund or
   * top-up, booked at the moment of the grant). `actualTokens` is the real
   * (input) count; `actualOutputTokens` the real output count, required when
   * the grant was acquired with output tokens (tryAcquireIo, pick, acquire
   * with outputTokens). Passes the grant's own counts as the granted ones:
   * the library checks the ticket against them and against this tracker, and
   * throws RT_E_INVALID (nothing changed) for a ticket of 0, a forged one, one
   * from another tracker, or a Grant whose counts are not the grant's own.
   * Settle each grant once.
   * @param {Grant} grant
   * @param {number|bigint} actualTokens
   * @param {number|bigint} [actualOutputTokens]
   */
  settle(grant, actualTokens, actualOutputTokens) {
    const a = settleArgs(grant, actualTokens, actualOutputTokens);
    const rc = a.io
      ? need('rt_settle_io')(this.#handle(), a.model, a.ticket, a.granted, a.grantedOutput, a.actual, a.actualOutput)
      : F.rt_settle(this.#handle(), modelPtr(a.model), a.ticket, a.granted, a.actual);
    if (rc < 0) fail(rc);
  }

  /**
   * Acquires on the first of `models` (in order of preference) that can take
   * the request now, with one atomic acquire per candidate (rt_pick).
   * Admitted: {ok: true, model, index, retryAfterMs: 0, grant}. None can:
   * {ok: false, model, index, retryAfterMs, grant: null}, where model/index
   * name the candidate that frees up first and retryAfterMs its wait (not an
   * error). Throws RT_E_TOO_LARGE when the request exceeds a limit of every
   * candidate outright, RT_E_INVALID for no candidates or an empty name.
   * @param {Iterable<string>} models
   * @returns {{ok: boolean, model: string, index: number, retryAfterMs: number, grant: Grant|null}}
   */
  pick(models, inputTokens = 0, outputTokens = 0) {
    const f = need('rt_pick');
    const list = checkModels(models);
    inputTokens = checkU64(inputTokens, 'inputTokens');
    outputTokens = checkU64(outputTokens, 'outputTokens');
    const rc = f(this.#handle(), list, list.length, inputTokens, outputTokens, cell, out1, out2);
    if (rc < 0) fail(rc);
    const index = Number(koffi.decode(cell, SIZE_T));
    const model = list[index];
    if (rc === RT_OK) {
      return { ok: true, model, index, retryAfterMs: 0, grant: new Grant(model, out2[0], inputTokens, outputTokens) };
    }
    if (rc === RT_LIMITED) return { ok: false, model, index, retryAfterMs: Number(out1[0]), grant: null };
    return fail(rc);
  }

  /**
   * Feeds a response's headers back (rt_observe_headers): OpenAI's
   * x-ratelimit-* and Anthropic's anthropic-ratelimit-* are understood;
   * afterwards the tracker never believes in more capacity than the provider
   * reported. `headers`: a plain object (e.g. IncomingMessage.headers), a Map,
   * fetch's Headers, or an iterable of [name, value] pairs; array values pass
   * each value. Unknown or malformed headers are skipped by the library.
   * @param {string} model
   * @param {object|Iterable<[string, string]>} headers
   */
  observeHeaders(model, headers) {
    const f = need('rt_observe_headers');
    checkModel(model);
    const { names, values } = headerArrays(headers);
    const rc = f(this.#handle(), model, names, values, names.length);
    if (rc < 0) fail(rc);
  }

  /**
   * Reports a 429 from the provider (rt_report_limited): `model` is refused
   * (limited, with the remaining time as retryAfterMs) until the Retry-After
   * time. `retryAfter`: the header's text (delay seconds "30", "1.5", or an
   * HTTP date), a number (or bigint) of seconds, a Date, or omitted / null /
   * '' for the library's default of 1 second. At most a day. Through "shm:"
   * and Redis backends, one process's 429 stops the others too.
   * @param {string} model
   * @param {string|number|bigint|Date|null} [retryAfter]
   */
  reportLimited(model, retryAfter) {
    const f = need('rt_report_limited');
    checkModel(model);
    const rc = f(this.#handle(), model, retryAfterText(retryAfter));
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
   * Waits without blocking the event loop (setTimeout for each retry-after;
   * each try is an asynchronous call on the thread pool) until the request fits, then records it and resolves to its Grant.
   * Resolves to null if `timeoutMs` passes first (nothing recorded; 0 = try
   * once; omitted = no timeout). Rejects with `signal.reason` when aborted,
   * and with RT_E_TOO_LARGE at once if it can never fit. `tokens` are input
   * tokens; `outputTokens` (optional) reserves output tokens too, as
   * tryAcquireIo does.
   * @param {{timeoutMs?: number|bigint, signal?: AbortSignal, outputTokens?: number|bigint}} [options]
   *   timeoutMs is a count like tokens (NaN, Infinity, negative or fractional: RT_E_INVALID).
   * @returns {Promise<Grant|null>}
   */
  async acquire(model, tokens = 0, { timeoutMs, signal, outputTokens } = {}) {
    const timeout = checks.timeoutMs(timeoutMs);
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    for (;;) {
      signal?.throwIfAborted();
      // The asynchronous forms: on a redis:// backend each try is a round
      // trip, which must not block the event loop.
      const r =
        outputTokens === undefined
          ? await this.tryAcquireGrantAsync(model, tokens)
          : await this.tryAcquireIoAsync(model, tokens, outputTokens);
      if (r.ok) return r.grant;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await sleep(Math.max(1, Math.min(r.retryAfterMs, left, MAX_TIMER_MS)), signal);
    }
  }

  // ---------------------------------------------------------------- async
  // The Promise-returning forms of every call that can touch the network (a
  // redis:// backend makes each a round trip). Each runs the C function with
  // koffi's f.async on the libuv thread pool, so the event loop never waits
  // for Redis and N concurrent callers have N calls in flight (up to the
  // pool's size, UV_THREADPOOL_SIZE, 4 by default). Same arguments, checks
  // and results as the synchronous methods; bad arguments reject (nothing is
  // called). The out-parameters are fresh per call and held by the closure
  // until the call returns. A failure's message carries the status code's
  // description (rt_last_error belongs to the worker thread).

  /** canMake on the thread pool. @returns {Promise<boolean>} */
  async canMakeAsync(model, tokens = 0) {
    const rc = await this.#async(F.rt_can_make, [this.#handle(), checkModel(model), checkU64(tokens, 'tokens')]);
    if (rc < 0) throw asyncError(rc, 'rt_can_make');
    return rc === 1;
  }

  /** record on the thread pool. @returns {Promise<void>} */
  async recordAsync(model, tokens = 0) {
    const rc = await this.#async(F.rt_record, [this.#handle(), checkModel(model), checkU64(tokens, 'tokens')]);
    if (rc < 0) throw asyncError(rc, 'rt_record');
  }

  /** recordTokens on the thread pool. @returns {Promise<void>} */
  async recordTokensAsync(model, inputTokens, outputTokens = 0) {
    const f = need('rt_record_tokens');
    const args = [this.#handle(), checkModel(model), checkTokens(inputTokens, 'inputTokens'), checkU64(outputTokens, 'outputTokens')];
    const rc = await this.#async(f, args);
    if (rc < 0) throw asyncError(rc, 'rt_record_tokens');
  }

  /** tryAcquire on the thread pool. @returns {Promise<{ok: boolean, retryAfterMs: number}>} */
  async tryAcquireAsync(model, tokens = 0) {
    const retry = new BigUint64Array(1);
    const rc = await this.#async(F.rt_try_acquire, [this.#handle(), checkModel(model), checkU64(tokens, 'tokens'), retry]);
    if (rc === RT_OK) return { ok: true, retryAfterMs: 0 };
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: Number(retry[0]) };
    throw asyncError(rc, 'rt_try_acquire');
  }

  /** tryAcquireGrant on the thread pool. @returns {Promise<{ok: boolean, retryAfterMs: number, grant: Grant|null}>} */
  async tryAcquireGrantAsync(model, tokens = 0) {
    checkModel(model);
    tokens = checkU64(tokens, 'tokens');
    const retry = new BigUint64Array(1);
    const ticket = new BigUint64Array(1);
    const rc = await this.#async(F.rt_try_acquire_grant, [this.#handle(), model, tokens, retry, ticket]);
    if (rc === RT_OK) return { ok: true, retryAfterMs: 0, grant: new Grant(model, ticket[0], tokens) };
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: Number(retry[0]), grant: null };
    throw asyncError(rc, 'rt_try_acquire_grant');
  }

  /** tryAcquireIo on the thread pool. @returns {Promise<{ok: boolean, retryAfterMs: number, grant: Grant|null}>} */
  async tryAcquireIoAsync(model, inputTokens = 0, outputTokens = 0) {
    const f = need('rt_try_acquire_io');
    checkModel(model);
    inputTokens = checkU64(inputTokens, 'inputTokens');
    outputTokens = checkU64(outputTokens, 'outputTokens');
    const retry = new BigUint64Array(1);
    const ticket = new BigUint64Array(1);
    const rc = await this.#async(f, [this.#handle(), model, inputTokens, outputTokens, retry, ticket]);
    if (rc === RT_OK) {
      return { ok: true, retryAfterMs: 0, grant: new Grant(model, ticket[0], inputTokens, outputTokens) };
    }
    if (rc === RT_LIMITED) return { ok: false, retryAfterMs: Number(retry[0]), grant: null };
    throw asyncError(rc, 'rt_try_acquire_io');
  }

  /** settle on the thread pool (same checks). @returns {Promise<void>} */
  async settleAsync(grant, actualTokens, actualOutputTokens) {
    const a = settleArgs(grant, actualTokens, actualOutputTokens);
    const rc = a.io
      ? await this.#async(need('rt_settle_io'), [
          this.#handle(), a.model, a.ticket, a.granted, a.grantedOutput, a.actual, a.actualOutput,
        ])
      : await this.#async(F.rt_settle, [this.#handle(), a.model, a.ticket, a.granted, a.actual]);
    if (rc < 0) throw asyncError(rc, a.io ? 'rt_settle_io' : 'rt_settle');
  }

  /** pick on the thread pool. @returns {Promise<{ok: boolean, model: string, index: number, retryAfterMs: number, grant: Grant|null}>} */
  async pickAsync(models, inputTokens = 0, outputTokens = 0) {
    const f = need('rt_pick');
    const list = checkModels(models);
    inputTokens = checkU64(inputTokens, 'inputTokens');
    outputTokens = checkU64(outputTokens, 'outputTokens');
    const picked = Buffer.alloc(koffi.sizeof('size_t'));
    const retry = new BigUint64Array(1);
    const ticket = new BigUint64Array(1);
    const rc = await this.#async(f, [this.#handle(), list, list.length, inputTokens, outputTokens, picked, retry, ticket]);
    if (rc < 0) throw asyncError(rc, 'rt_pick');
    const index = Number(koffi.decode(picked, SIZE_T));
    const model = list[index];
    if (rc === RT_OK) {
      return { ok: true, model, index, retryAfterMs: 0, grant: new Grant(model, ticket[0], inputTokens, outputTokens) };
    }
    return { ok: false, model, index, retryAfterMs: Number(retry[0]), grant: null };
  }

  /** observeHeaders on the thread pool. @returns {Promise<void>} */
  async observeHeadersAsync(model, headers) {
    const f = need('rt_observe_headers');
    checkModel(model);
    const { names, values } = headerArrays(headers);
    const rc = await this.#async(f, [this.#handle(), model, names, values, names.length]);
    if (rc < 0) throw asyncError(rc, 'rt_observe_headers');
  }

  /** reportLimited on the thread pool. @returns {Promise<void>} */
  async reportLimitedAsync(model, retryAfter) {
    const f = need('rt_report_limited');
    checkModel(model);
    const rc = await this.#async(f, [this.#handle(), model, retryAfterText(retryAfter)]);
    if (rc < 0) throw asyncError(rc, 'rt_report_limited');
  }

  /** waitTime on the thread pool. @returns {Promise<number>} */
  async waitTimeAsync(model, tokens = 0) {
    const wait = new BigUint64Array(1);
    const rc = await this.#async(F.rt_wait_time, [this.#handle(), checkModel(model), checkU64(tokens, 'tokens'), wait]);
    if (rc < 0) throw asyncError(rc, 'rt_wait_time');
    return Number(wait[0]);
  }

  /** stats on the thread pool. @returns {Promise<object>} */
  async statsAsync() {
    const out = Buffer.alloc(koffi.sizeof('void *'));
    const rc = await this.#async(F.rt_stats_json_ex, [this.#handle(), out]);
    if (rc < 0) throw asyncError(rc, 'rt_stats_json_ex');
    return JSON.parse(ownedTextOf(out));
  }

  /** metricsText on the thread pool. @returns {Promise<string>} */
  async metricsTextAsync() {
    const f = need('rt_metrics_text');
    const out = Buffer.alloc(koffi.sizeof('void *'));
    const rc = await this.#async(f, [this.#handle(), out]);
    if (rc < 0) throw asyncError(rc, 'rt_metrics_text');
    return ownedTextOf(out);
  }

  /** reset on the thread pool. @returns {Promise<void>} */
  async resetAsync() {
    const rc = await this.#async(F.rt_reset, [this.#handle()]);
    if (rc < 0) throw asyncError(rc, 'rt_reset');
  }

  /** Clears all recorded usage; keeps limits, tier and handle. */
  reset() {
    const rc = F.rt_reset(this.#handle());
    if (rc < 0) fail(rc);
  }

  /**
   * Usage as a plain object: {tier, backend, models: {model: {window:
   * {current, limit, remaining, usage_percent}}}} (limit, remaining and
   * usage_percent null when unlimited). A window may carry observed_limit
   * (the provider's reported limit, where it differs) and resets_at_midnight
   * (a calendar day's zone); "provider" (when the library reports it) holds
   * what the provider said per model: {blocked_for_ms?, requests?, tokens?,
   * input_tokens?, output_tokens?: {remaining, reset_in_ms, limit}}.
   */
  stats() {
    return statsJson(this.#handle());
  }

  /**
   * This tracker's usage in the Prometheus text exposition format (0.0.4),
   * to serve on your own HTTP server (rt_metrics_text): ratetrack_info,
   * ratetrack_window_{usage,limit,remaining,observed_limit}{model,window},
   * ratetrack_admitted_total / ratetrack_refused_total{model} (this process's
   * tryAcquire / pick decisions), ratetrack_blocked_seconds{model},
   * ratetrack_backend_errors_total / ratetrack_backend_up{backend}.
   * @returns {string}
   */
  metricsText() {
    return metricsTextOf(this.#handle());
  }

  /**
   * Applies a configuration (object or JSON string; see open()). Throws
   * RT_E_CONFIG and changes nothing if it is bad.
   */
  configure(config) {
    const rc = F.rt_configure(this.#handle(), checks.config(config, false));
    if (rc < 0) fail(rc);
  }

  /** Frees a private tracker (idempotent). A no-op on the global tracker. */
  close() {
    if (this.#global || this.#h === null) return;
    const h = this.#h;
    this.#h = null;
    finalizer.unregister(this);
    // An asynchronous call still running uses the handle: free it when the last one ends.
    if (this.#inflight > 0) this.#closeWhenIdle = h;
    else F.rt_close(h);
  }

  /**
   * Runs C function `f` on the thread pool with `args` (the handle first)
   * and resolves to its status. close() meanwhile defers rt_close until the
   * call has returned.
   */
  async #async(f, args) {
    this.#inflight++;
    try {
      return await callAsync(f, args);
    } finally {
      if (--this.#inflight === 0 && this.#closeWhenIdle !== null) {
        const h = this.#closeWhenIdle;
        this.#closeWhenIdle = null;
        F.rt_close(h);
      }
    }
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Tracker.prototype[Symbol.dispose] = Tracker.prototype.close;
}

// setTimeout fires at once (with a warning) past 2^31-1 ms; a longer wait is slept in turns.
const MAX_TIMER_MS = 0x7fffffff;

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
  const rc = F.rt_global_get_ex(tier ? checks.text(tier, 'tier') : null, cell);
  if (rc < 0) fail(rc);
  return new Tracker(cellPointer(), true);
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
  const rc = F.rt_open_ex(checks.config(config, true), cell);
  if (rc < 0) fail(rc);
  return new Tracker(cellPointer(), false);
}

/**
 * Applies a configuration to the global tracker, before or after it is
 * created ("limits" replaces the configured limits as a whole; usage kept).
 */
function configureGlobal(config) {
  fns();
  const rc = F.rt_global_configure(checks.config(config, false));
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

/**
 * The global tracker's metrics in the Prometheus text format (see
 * Tracker#metricsText). Always a string: before the global exists, a single
 * comment line saying so.
 * @returns {string}
 */
function metricsText() {
  fns();
  return metricsTextOf(null);
}

/**
 * The "shm:NAME" shared-memory segments in /dev/shm (rt_shm_list), as an
 * array of plain objects with the library's keys, as stats() has: {name,
 * path, bytes, mode ("0600"), uid, compatible, layout_version?, models?,
 * capacity?, creator_pid?, created_unix_ms?, error?}. The optional fields
 * are present only for a readable libratetrack segment; `error` only for
 * one this user cannot read.
 * @returns {Array<object>}
 */
function shmList() {
  const f = need('rt_shm_list');
  const rc = f(cell);
  if (rc < 0) fail(rc);
  return JSON.parse(ownedText());
}

/**
 * Removes (unlinks) the shared-memory segment NAME (rt_shm_remove; the NAME
 * of a "shm:NAME" backend). Processes that have it mapped keep using their
 * mapping: stop them first or the budget splits in two. Throws RT_E_INVALID
 * for a bad or unknown name, RT_E_BACKEND when it cannot be removed.
 * @param {string} name
 */
function shmRemove(name) {
  const f = need('rt_shm_remove');
  const rc = f(checks.text(name, 'name'));
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
  return fns().rt_status_string(checks.cInt(code, 'code'));
}

module.exports = {
  load,
  globalTracker,
  open,
  configureGlobal,
  globalStats,
  resetGlobal,
  metricsText,
  shmList,
  shmRemove,
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
