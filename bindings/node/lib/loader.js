'use strict';
/**
 * Finds, loads and checks libratetrack at run time, once per process (each
 * worker thread has its own module instance, but the dynamic loader maps the
 * library once per process, so every thread shares one global tracker).
 */
const koffi = require('./koffi');
const { LoadError, VersionMismatchError } = require('./errors');
const checks = require('./checks');

/** Version of this binding; the library's major.minor must match it. */
const BINDING_VERSION = '0.1.0';
/** The system loader name of the library (its SONAME). */
const SONAME = 'libratetrack.so.0';
/** Environment variable naming the library file. */
const ENV_VAR = 'RATETRACK_LIBRARY';

/** major*100 + minor of a "MAJOR.MINOR.PATCH" string (0.1.0 -> 1). */
function majorMinorOf(versionString) {
  const [major, minor] = versionString.split('.').map(Number);
  return major * 100 + minor;
}

/** "M.m.p" of a version number built as major*10000 + minor*100 + patch. */
function formatVersionNumber(n) {
  return `${Math.floor(n / 10000)}.${Math.floor(n / 100) % 100}.${n % 100}`;
}

/**
 * Whether a library version number (rt_version_number()) is usable by this
 * binding: its major.minor (number / 100) must equal the binding's.
 */
function isCompatible(libraryVersionNumber, bindingVersion = BINDING_VERSION) {
  return (
    Number.isInteger(libraryVersionNumber) &&
    libraryVersionNumber >= 0 &&
    Math.floor(libraryVersionNumber / 100) === majorMinorOf(bindingVersion)
  );
}

/**
 * The places to try, in order: the explicit path (if given), then
 * $RATETRACK_LIBRARY (if set), then the system loader name.
 */
function candidates(explicitPath, env = process.env) {
  const list = [];
  if (explicitPath) list.push({ source: 'explicit path', path: String(explicitPath) });
  if (env[ENV_VAR]) list.push({ source: `$${ENV_VAR}`, path: env[ENV_VAR] });
  list.push({ source: 'system loader', path: SONAME });
  return list;
}

/**
 * Opens the first candidate that `open` accepts. Throws a LoadError naming
 * every place tried with the loader's message for each.
 */
function openFirst(list, open) {
  const tried = [];
  for (const c of list) {
    try {
      return { lib: open(c.path), path: c.path, source: c.source };
    } catch (err) {
      tried.push({ ...c, error: err && err.message ? err.message : String(err) });
    }
  }
  const lines = tried.map((t) => `  - ${t.source}: ${t.path}: ${t.error}`);
  throw new LoadError(
    `cannot load libratetrack; tried ${tried.length} place(s):\n${lines.join('\n')}\n` +
      `(pass a path to ratetrack.load(), set ${ENV_VAR}, or install ${SONAME} where the system loader finds it)`,
    tried,
  );
}

let loaded = null; // { lib, path, source, fn, versionNumber, version }

/** Declares every C function of ratetrack.h on a koffi library. */
function declare(lib) {
  // The opaque type is registered once per koffi instance (per thread).
  if (!declare.tracker) declare.tracker = koffi.opaque('rt_tracker');
  const f = (proto) => lib.func(proto);
  return {
    rt_version_string: f('const char *rt_version_string(void)'),
    rt_status_string: f('const char *rt_status_string(int status)'),
    rt_last_error: f('const char *rt_last_error(void)'),
    rt_free: f('void rt_free(void *p)'),
    // The _ex variants give a status code (the error kind) where rt_open,
    // rt_global_get and rt_stats_json give only NULL; the binding uses only
    // them. Pointer out-parameters are declared `void **` and passed a
    // pointer-sized Buffer (a "cell", see index.js), never a koffi _Out_
    // array: koffi makes a napi reference for each _Out_ array, and Node 18
    // frees its memory only when the event loop turns (a synchronous loop of
    // 100k stats() calls held 60 MiB).
    rt_global_get_ex: f('int rt_global_get_ex(const char *tier, void **out)'),
    rt_global_configure: f('int rt_global_configure(const char *config_json)'),
    rt_open_ex: f('int rt_open_ex(const char *config_json, void **out)'),
    rt_configure: f('int rt_configure(rt_tracker *t, const char *config_json)'),
    rt_close: f('void rt_close(rt_tracker *t)'),
    rt_can_make: f('int rt_can_make(rt_tracker *t, const char *model, uint64_t tokens)'),
    rt_record: f('int rt_record(rt_tracker *t, const char *model, uint64_t tokens)'),
    // Out parameters are passed as BigUint64Array(1) scratch buffers.
    rt_try_acquire: f(
      'int rt_try_acquire(rt_tracker *t, const char *model, uint64_t tokens, uint64_t *retry_after_ms)',
    ),
    rt_try_acquire_grant: f(
      'int rt_try_acquire_grant(rt_tracker *t, const char *model, uint64_t tokens, uint64_t *retry_after_ms, uint64_t *grant)',
    ),
    rt_settle: f(
      'int rt_settle(rt_tracker *t, const char *model, uint64_t grant, uint64_t granted_tokens, uint64_t actual_tokens)',
    ),
    rt_wait_time: f('int rt_wait_time(rt_tracker *t, const char *model, uint64_t tokens, uint64_t *wait_ms)'),
    rt_reset: f('int rt_reset(rt_tracker *t)'),
    // Owned string: its pointer lands in a cell (never auto-converted),
    // is decoded, then rt_free'd.
    rt_stats_json_ex: f('int rt_stats_json_ex(rt_tracker *t, void **json_out)'),
    ...declareOptional(lib),
  };
}

/**
 * The functions added after the first 0.1 builds (input/output tokens,
 * picking a model, provider truth, Prometheus metrics, shared-memory
 * segments, booking tokens to a counted request). A library without them still loads; the
 * methods that need one throw a LoadError naming it (see `need` in index.js).
 * Each is the function or null.
 */
function declareOptional(lib) {
  const protos = {
    rt_try_acquire_io:
      'int rt_try_acquire_io(rt_tracker *t, const char *model, uint64_t input_tokens, uint64_t output_tokens, uint64_t *retry_after_ms, uint64_t *grant)',
    rt_settle_io:
      'int rt_settle_io(rt_tracker *t, const char *model, uint64_t grant, uint64_t granted_input, uint64_t granted_output, uint64_t actual_input, uint64_t actual_output)',
    // Arrays of JS strings are passed as const char ** (koffi copies them for the call).
    rt_pick:
      'int rt_pick(rt_tracker *t, const char **models, size_t count, uint64_t input_tokens, uint64_t output_tokens, size_t *picked, uint64_t *retry_after_ms, uint64_t *grant)',
    rt_observe_headers:
      'int rt_observe_headers(rt_tracker *t, const char *model, const char **names, const char **values, size_t count)',
    rt_report_limited: 'int rt_report_limited(rt_tracker *t, const char *model, const char *retry_after)',
    // Tokens booked to a request already counted (issue #26).
    rt_record_tokens:
      'int rt_record_tokens(rt_tracker *t, const char *model, uint64_t input_tokens, uint64_t output_tokens)',
    // Owned strings, as rt_stats_json_ex.
    rt_metrics_text: 'int rt_metrics_text(rt_tracker *t, void **text_out)',
    rt_shm_list: 'int rt_shm_list(void **json_out)',
    rt_shm_remove: 'int rt_shm_remove(const char *name)',
  };
  const fns = {};
  for (const [name, proto] of Object.entries(protos)) {
    try {
      fns[name] = lib.func(proto);
    } catch {
      fns[name] = null;
    }
  }
  return fns;
}

/**
 * Loads the library (once; later calls return the same one, and an explicit
 * path naming another file is refused). Lookup order:
 * `path` if given, then $RATETRACK_LIBRARY, then `libratetrack.so.0`.
 * Throws LoadError (nothing loadable) or VersionMismatchError.
 */
function load(path) {
  if (path) checks.path(path); // a NUL would load another file: refused, loaded or not
  if (loaded) {
    if (path && String(path) !== loaded.path) {
      throw new LoadError(
        `libratetrack is already loaded from ${loaded.path} (${loaded.source}); ` +
          `cannot also load ${path}: one library per process`,
        [],
      );
    }
    return loaded;
  }
  const found = openFirst(candidates(path), (p) => koffi.load(p));
  let versionNumber;
  try {
    versionNumber = found.lib.func('int rt_version_number(void)')();
  } catch (err) {
    throw new LoadError(`${found.path} is not libratetrack (no rt_version_number: ${err.message})`, [
      { source: found.source, path: found.path, error: err.message },
    ]);
  }
  if (!isCompatible(versionNumber)) {
    throw new VersionMismatchError(found.path, formatVersionNumber(versionNumber), BINDING_VERSION);
  }
  let fn;
  try {
    fn = declare(found.lib);
  } catch (err) {
    // e.g. an earlier 0.1 build without rt_open_ex / rt_global_get_ex / rt_stats_json_ex.
    throw new LoadError(
      `${found.path} (libratetrack ${formatVersionNumber(versionNumber)}) lacks a function this binding ` +
        `needs, so it is not the library version this binding was written for: ${err.message}`,
      [{ source: found.source, path: found.path, error: err.message }],
    );
  }
  loaded = {
    lib: found.lib,
    path: found.path,
    source: found.source,
    fn,
    versionNumber,
    version: fn.rt_version_string(),
  };
  return loaded;
}

module.exports = {
  BINDING_VERSION,
  SONAME,
  ENV_VAR,
  load,
  candidates,
  openFirst,
  isCompatible,
  formatVersionNumber,
};
