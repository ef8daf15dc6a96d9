'use strict';
/**
 * Error types of the ratetrack binding: one status name per C status code
 * (RateTrackError), plus the library-loading failures (LoadError,
 * VersionMismatchError), which have no C status code.
 */

/** C status codes, pinned by ratetrack.h. */
const Status = Object.freeze({
  RT_OK: 0,
  RT_LIMITED: 1,
  RT_E_INVALID: -1,
  RT_E_CONFIG: -2,
  RT_E_TOO_LARGE: -3,
  RT_E_BACKEND: -4,
  RT_E_NOMEM: -5,
  RT_E_INTERNAL: -6,
});

const NAMES = Object.freeze(
  Object.fromEntries(Object.entries(Status).map(([name, code]) => [code, name])),
);

/** Name of a status code ('RT_E_CONFIG'), or 'RT_E_UNKNOWN(<code>)'. */
function statusName(code) {
  return NAMES[code] || `RT_E_UNKNOWN(${code})`;
}

/**
 * A failure reported by libratetrack (a negative status code).
 * `.code` is the int status (e.g. -2), `.status` its name (e.g. 'RT_E_CONFIG').
 * The kind is chosen from the code alone; the message adds rt_last_error().
 */
class RateTrackError extends Error {
  constructor(code, message) {
    const name = statusName(code);
    super(message ? `${name}: ${message}` : name);
    this.name = 'RateTrackError';
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.status = name;
    /** The library's detail message (rt_last_error), possibly ''. */
    this.detail = message || '';
  }
}

/**
 * The library could not be loaded. `.tried` lists every place tried, each
 * `{ source, path, error }` with the loader's message.
 */
class LoadError extends Error {
  constructor(message, tried = []) {
    super(message);
    this.name = 'LoadError';
    this.tried = tried;
  }
}

/** The library loaded, but its major.minor differs from the binding's. */
class VersionMismatchError extends LoadError {
  constructor(path, libraryVersion, bindingVersion) {
    super(
      `libratetrack at ${path} is version ${libraryVersion}, but this binding ` +
        `(ratetrack for Node.js) needs ${bindingVersion.split('.').slice(0, 2).join('.')}.x ` +
        `(binding version ${bindingVersion}); install a matching library or binding`,
    );
    this.name = 'VersionMismatchError';
    this.path = path;
    this.libraryVersion = libraryVersion;
    this.bindingVersion = bindingVersion;
  }
}

/**
 * The error for a negative status `code` (RT_OK and RT_LIMITED are not
 * errors: callers handle them before). Unknown negative codes map to a
 * RateTrackError whose status is 'RT_E_UNKNOWN(<code>)'.
 */
function errorFromStatus(code, message) {
  return new RateTrackError(code, message);
}

module.exports = {
  Status,
  statusName,
  RateTrackError,
  LoadError,
  VersionMismatchError,
  errorFromStatus,
};
