/*
 * ratetrack.h: the C API of libratetrack, one rate-limit tracker shared by
 * every caller of a process (and, with a shared backend, of a host or fleet).
 *
 * Copyright (c) 2026 the libratetrack authors. MIT licence.
 *
 * Conventions (read these once; every declaration below follows them):
 *
 *  1. Opaque handles. `rt_tracker` is an opaque struct; only pointers to it
 *     cross this API. No struct of the library's is part of the ABI.
 *
 *  2. Status codes are the error channel. Functions return `int`: RT_OK (0)
 *     on success, RT_LIMITED (1) for "not now" (not an error), or a negative
 *     RT_E_* code. Codes are pinned: they never change meaning once released.
 *     rt_status_string() names any code. rt_last_error() gives a detail
 *     message for the calling thread's most recent failure, but a caller never
 *     needs it to know what happened: the status code says that.
 *
 *  3. Ownership. Strings the library returns as `char *` are owned by the
 *     caller and must be released with rt_free() (never free(): the library
 *     may use another allocator). Strings returned as `const char *` are
 *     static or thread-local and must not be freed. Strings passed in are
 *     borrowed for the duration of the call only, and must be NUL-terminated
 *     UTF-8.
 *
 *  4. NULL. A NULL tracker handle is RT_E_INVALID, except where a function
 *     says that NULL means the process-wide global tracker (rt_reset,
 *     rt_stats_json). Output pointers documented as optional may be NULL.
 *     rt_free(NULL) and rt_close(NULL) do nothing.
 *
 *  5. Threads. Every function is thread-safe: any thread may call any
 *     function on any handle at any time, except that rt_close() must not race
 *     with other calls on the same handle (the caller owns a private handle's
 *     lifetime). The global handle is never freed.
 *
 *  6. Booleans are `int` (1 true, 0 false). Counts and durations are
 *     `uint64_t`; durations are in milliseconds. No call throws: C++
 *     exceptions never cross this API.
 *
 *  7. fork(). A child forked while other threads are inside the library can
 *     use every tracker at once (no lock is left held). In the child, an
 *     in-process ("memory") tracker is a private copy of the parent's state
 *     at the moment of the fork: usage recorded before the fork is seen by
 *     both, usage recorded after it by only one of them.
 *
 *  8. Versions. The macros below are the version of this header; the
 *     functions rt_version_number() / rt_version_string() give the version of
 *     the library actually loaded. Until 1.0, the ABI may change with the
 *     minor version (the SONAME is libratetrack.so.0).
 *
 * Models are named "provider/model", e.g. "openai/gpt-4o-mini". A model
 * name is 1 to RT_MAX_MODEL_NAME bytes of valid UTF-8 without control
 * characters; any other name is RT_E_INVALID from every function that takes
 * one (and a key of "limits" in a configuration is RT_E_CONFIG). A tracker
 * holds at most RT_MAX_MODELS distinct models (about 9 KiB each): a new name
 * beyond that is RT_E_NOMEM, while the models it has keep working. Names
 * that another process or an older library stored in a shared backend are
 * shown, never trusted: in stats and metrics, a byte that is not UTF-8 or a
 * control character is written as the four characters \xHH.
 */
#ifndef RATETRACK_H_
#define RATETRACK_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define RT_EXPORT
#elif defined(__GNUC__) && __GNUC__ >= 4
#define RT_EXPORT __attribute__((visibility("default")))
#else
#define RT_EXPORT
#endif

/* ---------------------------------------------------------------- versions */

#define RT_VERSION_MAJOR 0
#define RT_VERSION_MINOR 1
#define RT_VERSION_PATCH 0
#define RT_VERSION_NUMBER \
  (RT_VERSION_MAJOR * 10000 + RT_VERSION_MINOR * 100 + RT_VERSION_PATCH)

/* The version of the loaded library, as RT_VERSION_NUMBER of its build. */
RT_EXPORT int rt_version_number(void);

/* The version of the loaded library as "MAJOR.MINOR.PATCH". Static; never
 * NULL; do not free. */
RT_EXPORT const char *rt_version_string(void);

/* The longest model name, in bytes. */
#define RT_MAX_MODEL_NAME 191
/* The most distinct models one tracker holds. */
#define RT_MAX_MODELS 4096

/* ------------------------------------------------------------- status codes */

enum {
  RT_OK = 0,           /* done / admitted */
  RT_LIMITED = 1,      /* not now: a limit would be exceeded; retry later */
  RT_E_INVALID = -1,   /* bad argument: NULL handle, a model name that is NULL,
                          empty, too long or not UTF-8... */
  RT_E_CONFIG = -2,    /* malformed or inconsistent configuration, unknown tier */
  RT_E_TOO_LARGE = -3, /* the cost exceeds a limit outright: never admissible */
  RT_E_BACKEND = -4,   /* the shared store (shared memory, Redis) failed */
  RT_E_NOMEM = -5,     /* out of memory, or RT_MAX_MODELS reached */
  RT_E_INTERNAL = -6   /* a bug in libratetrack; please report it */
};

/* A short static description of any status code (unknown codes included).
 * Never NULL; do not free. */
RT_EXPORT const char *rt_status_string(int status);

/* The calling thread's most recent failure, in words ("" if this thread has
 * had none). The text names the function and the offending argument or
 * configuration key. The pointer is thread-local: valid until this thread's
 * next call into the library; do not free. Successful calls do not clear it,
 * so read it only right after a call that returned a negative status (or
 * NULL). */
RT_EXPORT const char *rt_last_error(void);

/* Frees a string returned by the library (rt_stats_json, ...). NULL is
 * ignored. Never pass memory that the library did not return. */
RT_EXPORT void rt_free(void *p);

/* ----------------------------------------------------------------- trackers */

typedef struct rt_tracker rt_tracker;

/* The process-wide global tracker, shared by every caller in the process
 * (C, Go, Rust, Node.js, Python: one per loaded copy of the library).
 *
 * tier: a tier name for every provider that has it ("tier1", "free", ...),
 * or per provider ("openai=tier2,anthropic=tier1,gemini=free"), or NULL.
 *
 * The first call creates the global. Its tier is `tier` if not NULL, else the
 * environment variable RATETRACK_TIER, else the configuration's "tier" (from
 * rt_global_configure or the file named by RATETRACK_CONFIG, which is read
 * at creation), else "tier1". Later calls with NULL or the same tier return
 * the same handle and change nothing. A later call with another tier returns
 * the same handle and applies that tier's limits from then on; usage already
 * recorded is kept (the provider still counts it).
 *
 * Returns the handle, which stays valid for the life of the process (through
 * tier changes and rt_reset(NULL)); never free it (rt_close ignores it).
 * Returns NULL, changing nothing, on an unknown tier or a bad configuration
 * (rt_last_error says which). Race-free when many threads call it at once. */
RT_EXPORT rt_tracker *rt_global_get(const char *tier);

/* rt_global_get with a status code: RT_OK and *out set, or RT_E_CONFIG (an
 * unknown tier, a bad RATETRACK_CONFIG file), RT_E_INVALID (out is NULL),
 * RT_E_NOMEM, with *out set to NULL. Prefer it where the kind of failure
 * matters (language bindings). */
RT_EXPORT int rt_global_get_ex(const char *tier, rt_tracker **out);

/* Applies a JSON configuration (see rt_open) to the global tracker, before
 * or after it is created. Keys present replace the global's current values;
 * "limits" replaces the configured limits as a whole. Recorded usage is kept.
 * Returns RT_OK, or RT_E_CONFIG / RT_E_INVALID (NULL) and changes nothing. */
RT_EXPORT int rt_global_configure(const char *config_json);

// Creates a private tracker, independent of the global one (tests, one
// tracker per API key, ...). config_json may be NULL or "" for the defaults.
//
// Configuration (every key optional; unknown keys are errors):
//   {
//     "tier": "tier1",            built-in tier(s) to apply, as for rt_global_get
//     "backend": "memory",        where the counters live ("memory": in-process)
//     "builtin_tiers": true,      false: use only the "limits" below
//     "limits": {
//       "openai/gpt-4o-mini": {"rpm": 500, "tpm": 200000, "rpd": 10000, "tpd": null},
//       "openai/*": {"rpm": 100},   default for every model of a provider
//       "acme/model": {"windows": [{"unit": "requests", "limit": 10, "seconds": 2},
//                                  {"unit": "tokens", "limit": 5000, "seconds": 60}]}
//     }
//   }
// rpm/tpm/rpd/tpd are requests and tokens per minute and per day; "windows"
// adds windows of any whole number of seconds (1 to 31 days), at most 8 per
// model. A limit is a non-negative integer, or null for unlimited. A model's
// limits are looked up as: its entry in "limits", else its entry in the
// built-in tier, else its provider's "provider/*" entry, else unlimited.
// An entry replaces the built-in entry of that model as a whole.
//
// Returns a handle to free with rt_close(), or NULL with rt_last_error() set
// (RT_E_CONFIG: the message names the offending key).
//
// A Redis backend is connected to once here (within the URL's timeout_ms; a
// Redis Cluster, redis+cluster://: its slot map and each master): a
// server the URL cannot use (a replica, a sentinel's port, a cluster node
// behind redis://, a plain server behind redis+cluster://, credentials
// refused) is RT_E_CONFIG here and from
// every call until it is fixed, whatever on_error says; an outage is not an
// error here (on_error decides for the calls).
RT_EXPORT rt_tracker *rt_open(const char *config_json);

/* rt_open with a status code: RT_OK and *out set, or RT_E_CONFIG,
 * RT_E_INVALID (out is NULL), RT_E_NOMEM, with *out set to NULL. */
RT_EXPORT int rt_open_ex(const char *config_json, rt_tracker **out);

/* Applies a configuration to any tracker, as rt_global_configure does for the
 * global. Returns RT_OK, RT_E_INVALID or RT_E_CONFIG (nothing changed). */
RT_EXPORT int rt_configure(rt_tracker *t, const char *config_json);

/* Frees a tracker from rt_open(). NULL and the global handle are ignored. The
 * caller must ensure no other thread is using the handle. */
RT_EXPORT void rt_close(rt_tracker *t);

/* ------------------------------------------------------------------- usage */

/* Whether a request of `tokens` tokens to `model` would fit every window of
 * the model now. Records nothing. Returns 1 (yes), 0 (no), RT_E_TOO_LARGE if
 * `tokens` exceeds a token limit of the model outright (or a request limit is
 * 0), or RT_E_INVALID. */
RT_EXPORT int rt_can_make(rt_tracker *t, const char *model, uint64_t tokens);

/* Records that a request to `model` using `tokens` tokens happened now. It is
 * always recorded, even past a limit (it already happened). Returns RT_OK or
 * a negative status (nothing recorded). */
RT_EXPORT int rt_record(rt_tracker *t, const char *model, uint64_t tokens);

/* Checks and records in one atomic step: two callers can never both take the
 * last slot. Returns
 *   RT_OK           admitted and recorded (one request, `tokens` tokens);
 *   RT_LIMITED      nothing recorded; *retry_after_ms (optional) is how long
 *                   until the same request would fit as far as the tracker
 *                   knows now; never 0. It can exceed the window by the
 *                   window's resolution (about 1/60 of it: usage is counted
 *                   in buckets, see the README);
 *   RT_E_TOO_LARGE  `tokens` exceeds a token limit outright (never fits);
 *   RT_E_INVALID    NULL handle; model NULL or not a valid name.
 * *retry_after_ms is set to 0 on RT_OK and RT_WAIT_NEVER on RT_E_TOO_LARGE. */
RT_EXPORT int rt_try_acquire(rt_tracker *t, const char *model, uint64_t tokens,
                             uint64_t *retry_after_ms);

/* Wait answer meaning "never": the request can never be admitted. */
#define RT_WAIT_NEVER UINT64_MAX

/* rt_try_acquire that also returns a grant ticket for rt_settle(). *grant
 * (optional) is set to a non-zero opaque value on RT_OK, and to 0 otherwise.
 * A ticket is valid for the tracker that issued it, for as long as you like
 * (settling an old grant whose time has left every window changes nothing). */
RT_EXPORT int rt_try_acquire_grant(rt_tracker *t, const char *model,
                                   uint64_t tokens, uint64_t *retry_after_ms,
                                   uint64_t *grant);

/* Blocking acquire: waits (sleeping, not spinning) until the request fits and
 * then records it, for at most timeout_ms milliseconds (0: try once;
 * RT_WAIT_NEVER: no timeout). Returns RT_OK (grant, optional, set), RT_LIMITED
 * when the timeout passed first (nothing recorded), or a negative status
 * (RT_E_TOO_LARGE at once if it can never fit). */
RT_EXPORT int rt_acquire(rt_tracker *t, const char *model, uint64_t tokens,
                         uint64_t timeout_ms, uint64_t *grant);

/* Settles a grant to the real token count once it is known: callers acquire
 * with an estimate (prompt + max_tokens) and learn the real count afterwards.
 * `granted_tokens` must be exactly what the grant was acquired with (the
 * ticket carries a check of it), `actual_tokens` is what the request really
 * used. The difference (refund or top-up) is booked at the
 * moment of the grant, not now: a refund frees capacity only while the grant
 * is still inside a window, so it never lets more through later than the
 * limit allows, and a top-up counts against the same windows the grant did.
 * Where the grant has already left a window, that window is unchanged.
 * Settle each grant once: settling twice books the difference twice.
 * Returns RT_OK, or RT_E_INVALID with nothing changed: NULL handle or model,
 * ticket 0, a ticket from another tracker or for another model, or a
 * granted_tokens that is not the grant's own (the check is 23 bits wide: a
 * wrong combination slips through once in about 8 million tries). */
RT_EXPORT int rt_settle(rt_tracker *t, const char *model, uint64_t grant,
                        uint64_t granted_tokens, uint64_t actual_tokens);

/* Books tokens to a request that was already counted, without counting
 * another request: for callback-style frameworks whose limiter counts the
 * request before its tokens are known (LangChain's rate limiter, then a
 * callback with the response's usage), or a caller that has no grant to
 * settle. `input_tokens` and `output_tokens` are added to the model's token
 * windows now (request windows are unchanged) and count against what the
 * provider said remains. Always recorded, even past a limit (the tokens were
 * spent); both 0 changes nothing. To correct an estimate made with a grant,
 * use rt_settle instead: it books at the grant's time, and refunds.
 * Returns RT_OK or a negative status, like rt_record (RT_E_INVALID: NULL
 * handle, model NULL or not a valid name; nothing recorded). */
RT_EXPORT int rt_record_tokens(rt_tracker *t, const char *model,
                               uint64_t input_tokens, uint64_t output_tokens);

/* How long until a request of `tokens` tokens to `model` would fit, in
 * milliseconds (0: it fits now). Records nothing. Returns RT_OK with
 * *wait_ms set, RT_E_TOO_LARGE with *wait_ms = RT_WAIT_NEVER when it never
 * will, or RT_E_INVALID (wait_ms is required). */
RT_EXPORT int rt_wait_time(rt_tracker *t, const char *model, uint64_t tokens,
                           uint64_t *wait_ms);

/* Clears all recorded usage of `t`; keeps its limits, tier and handle.
 * rt_reset(NULL) returns the global tracker to "never created": its usage is
 * forgotten, rt_stats_json(NULL) returns "null" until the next
 * rt_global_get(), and that call chooses the tier again as at first creation
 * (until then the old tier's limits stay in force). Configuration from
 * rt_global_configure is kept. Global handles already handed out stay valid:
 * they act on the emptied global.
 * Returns RT_OK or a negative status. */
RT_EXPORT int rt_reset(rt_tracker *t);

/* The usage of `t` as a JSON object, caller-owned (free with rt_free):
 *   {"tier": "tier1", "backend": "memory",
 *    "models": {"openai/gpt-4o-mini": {
 *        "requests_per_minute": {"current": 1, "limit": 500, "remaining": 499,
 *                                "usage_percent": 0.2},
 *        "tokens_per_minute": {...}, "requests_per_day": {...},
 *        "tokens_per_day": {...}, "requests_per_2s": {...}}}}
 * Every model with limits in the current tier or configuration, and every
 * model that was used, is listed. A window with no limit has "limit": null,
 * "remaining": null and "usage_percent": null. usage_percent is rounded to
 * three decimals. Extra windows are named requests_per_<N>s and
 * tokens_per_<N>s (input_tokens_..., output_tokens_..., ..._per_calendar_day).
 * A window may carry "observed_limit" (the provider's own, where it differs)
 * and "resets_at_midnight" (a calendar day's zone). What the provider said
 * "remaining" is the room really in force: the least of the limit less
 * "current", a lower limit the provider reported, and what the provider
 * said remains until its reset (a window with no limit shows that last, or
 * null). What the provider said
 * is under a top-level "provider": {"model": {"blocked_for_ms": N,
 * "requests": {"remaining": R, "reset_in_ms": T, "limit": L}, ...}}.
 * Object keys come in a fixed order; models sorted by name.
 * rt_stats_json(NULL) gives the global's stats, or the JSON text "null" when
 * the global has not been created. Returns NULL on error (rt_last_error). */
RT_EXPORT char *rt_stats_json(rt_tracker *t);

/* rt_stats_json with a status code: RT_OK and *json_out set (free it with
 * rt_free), or a negative status (RT_E_INVALID: json_out is NULL or the
 * handle is not open; RT_E_NOMEM) with *json_out set to NULL. */
RT_EXPORT int rt_stats_json_ex(rt_tracker *t, char **json_out);

/* ------------------------------------------------ input and output tokens */

/* Windows can count requests, tokens (input and output together), or one
 * side: "unit": "input_tokens" / "output_tokens" in "windows", or the
 * shorthands "itpm", "otpm", "itpd", "otpd" (Anthropic's ITPM and OTPM;
 * Gemini counts input only). The functions above that take one `tokens`
 * count treat it as input tokens (output 0).
 *
 * Calendar days: {"unit": "requests", "limit": N, "calendar_day":
 * "America/Los_Angeles"} counts from local midnight to local midnight in
 * that IANA zone (the system's time zone database; daylight-saving days are
 * 23 or 25 hours long), for providers that reset at a fixed time (Gemini's
 * requests per day reset at midnight Pacific). It is named
 * "<unit>_per_calendar_day" in the stats, with "resets_at_midnight": zone. */

/* rt_try_acquire_grant with the two sides counted apart: reserve the
 * prompt's `input_tokens` and `output_tokens` = max_tokens, then settle to
 * the real counts with rt_settle_io. Same returns as rt_try_acquire_grant. */
RT_EXPORT int rt_try_acquire_io(rt_tracker *t, const char *model,
                                uint64_t input_tokens, uint64_t output_tokens,
                                uint64_t *retry_after_ms, uint64_t *grant);

/* rt_settle with the two sides: `granted_*` must be exactly what the grant
 * was acquired with; `actual_*` is what the response reported. Each window
 * is settled for its own unit. Same returns as rt_settle. */
RT_EXPORT int rt_settle_io(rt_tracker *t, const char *model, uint64_t grant,
                           uint64_t granted_input, uint64_t granted_output,
                           uint64_t actual_input, uint64_t actual_output);

/* -------------------------------------------------------- picking a model */

/* Acquires on the first of `models` (in order of preference, `count` of
 * them) that can take the request now, and says which: RT_OK with *picked
 * its index (and *grant, optional, its ticket). When none can, RT_LIMITED
 * with *picked the candidate that frees up first and *retry_after_ms its
 * wait; RT_E_TOO_LARGE when the request exceeds a limit of every candidate
 * outright. Each candidate is tried with one atomic acquire, so two callers
 * never both take the last slot of a model. RT_E_INVALID: NULL handle, no
 * candidates, a NULL or empty name, picked NULL. */
RT_EXPORT int rt_pick(rt_tracker *t, const char *const *models, size_t count,
                      uint64_t input_tokens, uint64_t output_tokens,
                      size_t *picked, uint64_t *retry_after_ms,
                      uint64_t *grant);

/* ------------------------------------------------------- provider truth */

/* Feeds a response's headers back: `count` name/value pairs, names
 * case-insensitive. Understood: OpenAI x-ratelimit-{limit,remaining,reset}-
 * {requests,tokens} (resets as Go durations, "6m0s") and Anthropic
 * anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
 * {limit,remaining,reset} (resets as RFC 3339 times). Afterwards the tracker
 * never believes in more capacity than the provider reported: if it said R
 * remain until a reset in T, at most R more are admitted before then,
 * whatever the windows say (a newer report replaces an older one). A
 * reported limit (x-ratelimit-limit-*, anthropic-ratelimit-*-limit: the
 * provider's per-minute limits) lower than the configured one is enforced
 * on the model's 60-second window of that unit from then on, until a newer
 * report or rt_reset; a higher one is only shown. Either is shown in the
 * stats as "observed_limit" on that window. Unknown or
 * malformed headers, and NULL names or values, are skipped one by one.
 * Works on every backend: through "shm:" and Redis, every process sees it.
 * Returns RT_OK, or RT_E_INVALID (NULL handle or model; names or values
 * NULL with count > 0), RT_E_BACKEND. */
RT_EXPORT int rt_observe_headers(rt_tracker *t, const char *model,
                                 const char *const *names,
                                 const char *const *values, size_t count);

/* Reports a 429 (rate limited) from the provider: the model is refused
 * (RT_LIMITED, with the remaining time as the retry) until the
 * `retry_after` header's time: delay seconds ("30", "1.5") or an HTTP date
 * ("Wed, 21 Oct 2026 07:28:00 GMT", read against the exact CLOCK_REALTIME,
 * so the wait never runs past the date). NULL, empty or unreadable: 1 second.
 * At most a day. Through "shm:" and Redis one process's 429 stops the others
 * too. Returns RT_OK, or RT_E_INVALID (NULL handle or model), RT_E_BACKEND. */
RT_EXPORT int rt_report_limited(rt_tracker *t, const char *model,
                                const char *retry_after);

/* ---------------------------------------------------------------- metrics */

/* The usage of `t` (NULL: the global) in the Prometheus text exposition
 * format (version 0.0.4), caller-owned (free with rt_free), so an agent can
 * serve it on its own HTTP server:
 *   ratetrack_info{version,tier,backend} 1
 *   ratetrack_window_usage{model,window}, ratetrack_window_limit{...},
 *   ratetrack_window_remaining{...}, ratetrack_window_observed_limit{...}
 *   ratetrack_admitted_total{model}, ratetrack_refused_total{model}
 *     (this process's try_acquire and pick decisions since the tracker
 *     was created; rt_reset does not clear them: counters only go up)
 *   ratetrack_blocked_seconds{model} (after a reported 429)
 *   ratetrack_backend_errors_total{backend}, ratetrack_backend_up{backend}
 * Windows without a limit have no _limit or _remaining sample. Returns
 * RT_OK, or RT_E_INVALID (text_out NULL, handle not open), RT_E_NOMEM. */
RT_EXPORT int rt_metrics_text(rt_tracker *t, char **text_out);

/* ------------------------------------------------------- shared memory */

/* The "shm:NAME" backend keeps the counters in a shared-memory segment,
 * /dev/shm/ratetrack.NAME, that every process on the host maps: all trackers
 * opened with the same NAME share one usage state, whatever language or
 * copy of the library they come from. RATETRACK_BACKEND=shm:NAME in the
 * environment does the same for the global tracker.
 *
 * Configuration keys of the backend (see rt_open):
 *   "backend": "shm:NAME"    NAME: 1 to 64 of [A-Za-z0-9_.-], no leading '.'
 *   "shm_models": 512        model slots, fixed when the segment is created
 *   "shm_mode": "0600"       permissions at creation: "0600" (this user),
 *                            "0640" or "0660" (this user's group too)
 *   "shm_limits": "segment"  a model's limits are stored in the segment by
 *                            the first process that uses it; a process whose
 *                            configuration differs gets RT_E_CONFIG (from
 *                            rt_open, rt_configure, rt_global_get, and from
 *                            decisions on that model; records still book).
 *                            "update": this configuration's limits replace
 *                            the segment's, for every process.
 * A segment of an incompatible layout, or a full one, is RT_E_BACKEND with a
 * message; so is one that is not a regular file owned by this effective
 * user (or, under a group shm_mode, its group) with no more permission than
 * shm_mode, and one whose header fails a check. Every field read from a
 * segment is checked: window state out of range is repaired, and a model
 * whose slot has a corrupt lock or unreadable limits gets RT_E_BACKEND
 * (naming the slot) while the other models carry on. A process killed at
 * any instant leaves no lock held: the next locker repairs the state. Stats list every model of the segment, and
 * "backend": "shm:NAME". rt_reset clears the usage of the whole segment. */

/* Removes the segment NAME (unlinks it: processes that have it mapped keep
 * using their mapping, so stop them first or the budget splits in two).
 * Returns RT_OK, RT_E_INVALID (bad or unknown NAME) or RT_E_BACKEND. */
RT_EXPORT int rt_shm_remove(const char *name);

/* The segments in /dev/shm as a JSON array, caller-owned (free with rt_free):
 *   [{"name": "agents", "path": "/dev/shm/ratetrack.agents", "bytes": 4096,
 *     "mode": "0600", "uid": 1000, "compatible": true, "layout_version": 2,
 *     "models": 3, "capacity": 512, "creator_pid": 4242,
 *     "created_unix_ms": 1764300000000}]
 * Returns RT_OK, or RT_E_INVALID (json_out NULL) / RT_E_NOMEM. */
RT_EXPORT int rt_shm_list(char **json_out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* RATETRACK_H_ */
