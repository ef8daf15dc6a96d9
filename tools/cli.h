/* cli.h: what the ratetrack command's source files share.
 *
 *   ratetrack.c   main: the command table, top-level help, version, shm
 *   common.c      options, opening trackers, exit codes, signals, files
 *   view.c        limits, stats and watch (tables, bars, colour)
 *   use.c         acquire, record, settle (for shell scripts)
 *   metrics.c     metrics, and its tiny HTTP server
 *   json.c        the JSON reader and writer (json.h)
 *
 * Everything goes through the public C API of libratetrack (ratetrack.h),
 * the C standard library and POSIX. */
#ifndef RATETRACK_TOOLS_CLI_H_
#define RATETRACK_TOOLS_CLI_H_

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "json.h"
#include "ratetrack.h"

/* Exit codes (sysexits.h values, defined here so that nothing depends on
 * that BSD header). */
enum {
  EXIT_DONE = 0,         /* done, admitted */
  EXIT_FAILED = 1,       /* anything else */
  EXIT_USAGE = 64,       /* EX_USAGE: bad arguments */
  EXIT_DATAERR = 65,     /* EX_DATAERR: too large for a limit, a ticket that does not match */
  EXIT_UNAVAILABLE = 69, /* EX_UNAVAILABLE: the backend (shared memory, Redis) failed */
  EXIT_TEMPFAIL = 75,    /* EX_TEMPFAIL: limited, retry later */
  EXIT_CONFIG = 78       /* EX_CONFIG: bad configuration, limits disagreeing with the store */
};

/* One subcommand: its name, a one-line summary, its help text (printed by
 * `ratetrack CMD --help`) and its entry point (argv[0] is the command name). */
typedef struct {
  const char *name;
  const char *summary;
  const char *help;
  int (*run)(int argc, char **argv);
} cli_command;

extern const cli_command cli_cmd_limits, cli_cmd_stats, cli_cmd_watch, cli_cmd_acquire,
    cli_cmd_record, cli_cmd_settle, cli_cmd_metrics, cli_cmd_shm, cli_cmd_version;

/* ------------------------------------------------------------ arguments */

/* Prints "ratetrack CMD: message" and the command's usage lines to stderr;
 * returns EXIT_USAGE. */
int cli_usage_error(const cli_command *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Whether arg is -h or --help. */
int cli_is_help(const char *arg);

/* Matches option `name` ("--tier") at argv[*i], as "--tier VALUE" or
 * "--tier=VALUE". Returns 1 with *value set (advancing *i past a separate
 * value), 0 when argv[*i] is another argument, -1 when the value is missing
 * (a usage error). */
int cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Parses a whole decimal uint64_t. Returns 1 on success. */
int cli_parse_u64(const char *s, uint64_t *out);

/* Parses a non-negative number of seconds ("1", "0.25"). Returns 1 on success. */
int cli_parse_seconds(const char *s, double *out);

/* -------------------------------------------------------------- trackers */

/* The options of every command that opens a tracker. */
typedef struct {
  const char *backend; /* --backend, else RATETRACK_BACKEND, else the config's, else memory */
  const char *tier;    /* --tier, else RATETRACK_TIER, else the config's */
  const char *config;  /* --config, else RATETRACK_CONFIG: a JSON file as for rt_open */
} cli_tracker_opts;

/* Consumes --backend, --tier and --config at argv[*i] (see cli_option). */
int cli_tracker_option(int argc, char **argv, int *i, cli_tracker_opts *o);

typedef enum {
  CLI_OPEN_LIMITS, /* the memory backend, whatever the options say: just the limits */
  CLI_OPEN_VIEW,   /* read-only (stats, watch, metrics) */
  CLI_OPEN_USE     /* acquire, record, settle: exactly the agents' configuration */
} cli_open_purpose;

/* What cli_open chose. */
typedef struct {
  int memory;       /* the in-process backend: this process's usage only */
  int store_limits; /* opened without limits of its own: shows the store's */
} cli_open_info;

/* Opens a private tracker configured as the agents' global would be: the
 * configuration file (--config or RATETRACK_CONFIG), with the backend and
 * tier of the options or environment put over it. For CLI_OPEN_VIEW of a
 * shm: backend with no tier and no configuration given anywhere, the
 * tracker is opened with "builtin_tiers": false: it then asserts no limits
 * and shows the ones the store holds, so it can never disagree with them.
 * On failure prints "ratetrack: ..." to stderr and returns the status
 * (negative); *out is set on RT_OK. info (optional) says what was chosen. */
int cli_open(const cli_tracker_opts *o, cli_open_purpose purpose, rt_tracker **out,
             cli_open_info *info);

/* The exit code for a library status (RT_OK 0, RT_LIMITED 75, ...). */
int cli_exit_code(int status);

/* Prints "ratetrack: <what>: <status name>: <rt_last_error()>" to stderr. */
void cli_report(const char *what, int status);

/* The tracker's stats, parsed. NULL (message printed) on failure. */
json_value *cli_stats(rt_tracker *t);

/* `backend` as it may be shown: the credentials of a URL
 * ("redis://user:password@host") replaced by "***", control characters by
 * '?'. Returns buf (n bytes). */
const char *cli_redacted_backend(const char *backend, char *buf, size_t n);

/* ------------------------------------------------------- signals, time */

/* Set by SIGINT / SIGTERM once cli_catch_stop_signals() ran. */
extern volatile sig_atomic_t cli_stop;

/* Installs SIGINT and SIGTERM handlers that only set cli_stop (without
 * SA_RESTART, so that sleeps and poll return early). */
void cli_catch_stop_signals(void);

/* Sleeps `seconds`, returning early once cli_stop is set. */
void cli_sleep(double seconds);

#endif /* RATETRACK_TOOLS_CLI_H_ */
