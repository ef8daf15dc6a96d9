'use strict';
/**
 * The binding's checks of what it passes to C: what the C API cannot
 * represent is refused here, never truncated, wrapped or dropped. koffi would
 * otherwise cut a string at its first NUL, turn a lone surrogate into U+FFFD
 * (two different names, one model), and JSON.stringify would turn a NaN or
 * Infinity limit into null (unlimited) and drop an undefined one.
 *
 * Every refusal is a RateTrackError: status RT_E_INVALID for an argument,
 * RT_E_CONFIG for anything inside a configuration (as the library itself
 * reports a bad configuration).
 */
const { Status, RateTrackError } = require('./errors');

const { RT_E_INVALID, RT_E_CONFIG } = Status;
const UINT64_MAX = 0xffffffffffffffffn;
const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;

/** Whether s has no lone (unpaired) surrogate, for Node < 20 (no isWellFormed). */
const LONE_SURROGATE = /\p{Cs}/u; // in u-mode a proper pair is one astral code point, not Cs
function isWellFormedFallback(s) {
  return !LONE_SURROGATE.test(s);
}
const isWellFormed =
  typeof String.prototype.isWellFormed === 'function' ? (s) => s.isWellFormed() : isWellFormedFallback;

/** Why `s` cannot go to C as UTF-8 text ('' when it can). */
function textProblem(s) {
  if (s.includes('\0')) return 'must not contain NUL characters';
  if (!isWellFormed(s)) return 'must not contain lone surrogates (it has no UTF-8 form)';
  return '';
}

function describe(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || value === null || value === undefined) return String(value);
  return typeof value;
}

/** A string argument for a `const char *`; code: the status of the error (RT_E_INVALID). */
function text(value, what, code = RT_E_INVALID) {
  if (typeof value !== 'string') throw new RateTrackError(code, `${what} must be a string, got ${typeof value}`);
  const problem = textProblem(value);
  if (problem) throw new RateTrackError(code, `${what} ${problem}: ${describe(value)}`);
  return value;
}

// The last model name that passed: a caller's loop usually passes the same
// one, and then the check is one comparison (per thread: each has its own).
let lastModel = '';

/** A model name (the hot path: one comparison, or a type test and two short scans). */
function model(value) {
  if (value === lastModel) return value;
  if (typeof value === 'string' && !value.includes('\0') && isWellFormed(value)) {
    lastModel = value;
    return value;
  }
  return text(value, 'model');
}

/**
 * A uint64 count: a Number that is a safe non-negative integer (beyond
 * 2^53 - 1 a Number is not exact), or a BigInt in 0..2^64-1; undefined is 0.
 */
function u64(value, what) {
  if (value === undefined) return 0;
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
  } else if (typeof value === 'bigint') {
    if (value >= 0n && value <= UINT64_MAX) return value;
  }
  throw new RateTrackError(
    RT_E_INVALID,
    `${what} must be a non-negative integer: a Number up to 2^53-1 or a BigInt up to 2^64-1, got ${describe(value)}`,
  );
}

/** A timeout in ms as a Number (undefined: none): a count, as u64 checks it. */
function timeoutMs(value) {
  return value === undefined ? undefined : Number(u64(value, 'timeoutMs'));
}

/** An int argument (a status code), in the C int's range. */
function cInt(value, what) {
  if (Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) return value;
  throw new RateTrackError(RT_E_INVALID, `${what} must be an integer in -2^31..2^31-1, got ${describe(value)}`);
}

function configError(message) {
  return new RateTrackError(RT_E_CONFIG, `configuration: ${message}`);
}

/**
 * A configuration as JSON text for C: a string is sent as is (a NUL or lone
 * surrogate refused), an object is serialised with every value checked as
 * JSON.stringify meets it (so what is checked is what is sent): refused are
 * NaN and ±Infinity (which would become null, unlimited), integers beyond
 * 2^53-1 (not exact), undefined, functions and symbols (which would be
 * dropped), BigInts, objects other than plain objects and arrays (a Map would
 * become {}), and keys or strings with a NUL or a lone surrogate.
 * undefined / null give null (the defaults) when allowEmpty.
 */
function config(value, allowEmpty) {
  if (value === undefined || value === null) {
    if (allowEmpty) return null;
    throw new RateTrackError(RT_E_INVALID, 'configuration is required');
  }
  if (typeof value === 'string') return text(value, 'configuration text', RT_E_CONFIG);
  if (typeof value !== 'object') {
    throw new RateTrackError(RT_E_INVALID, `configuration must be an object or a JSON string, got ${typeof value}`);
  }
  const paths = new Map([[value, '']]); // object -> its path, for the messages
  const where = (holder, key) => {
    const base = paths.get(holder);
    if (base === undefined) return key; // the root wrapper {"": value}
    return Array.isArray(holder) ? `${base}[${key}]` : base ? `${base}.${key}` : key;
  };
  function check(key, v) {
    if (key !== '' || paths.get(this) !== undefined) {
      const keyProblem = textProblem(key);
      if (keyProblem) throw configError(`key ${describe(key)} ${keyProblem}`);
    }
    const at = where(this, key) || 'the configuration';
    switch (typeof v) {
      case 'string': {
        const problem = textProblem(v);
        if (problem) throw configError(`${at} ${problem}`);
        return v;
      }
      case 'number':
        if (!Number.isFinite(v)) {
          throw configError(`${at} is ${v}; a limit is a non-negative integer, or null for unlimited`);
        }
        if (Number.isInteger(v) && !Number.isSafeInteger(v)) {
          throw configError(`${at} is ${v}, beyond 2^53-1 where a Number is not exact; pass JSON text for it`);
        }
        return v;
      case 'boolean':
        return v;
      case 'object': {
        if (v === null) return v;
        const tag = Object.prototype.toString.call(v);
        if (tag !== '[object Object]' && tag !== '[object Array]') {
          throw configError(`${at} is a ${tag.slice(8, -1)}; use plain objects, arrays, strings, numbers, booleans and null`);
        }
        paths.set(v, at === 'the configuration' ? '' : at);
        return v;
      }
      default: // undefined, function, symbol, bigint
        throw configError(
          `${at} is ${typeof v === 'bigint' ? `the BigInt ${v}n` : typeof v}, which JSON cannot carry` +
            (typeof v === 'bigint' ? '; pass JSON text for it' : ''),
        );
    }
  }
  try {
    return JSON.stringify(value, check);
  } catch (err) {
    if (err instanceof RateTrackError) throw err;
    throw configError(String(err.message).split('\n')[0]); // a circular structure
  }
}

/** A library path for dlopen: a string without NUL or lone surrogates. */
function path(value) {
  return text(String(value), 'library path');
}

module.exports = {
  UINT64_MAX,
  text,
  model,
  u64,
  timeoutMs,
  cInt,
  config,
  path,
  isWellFormed,
  isWellFormedFallback,
};
