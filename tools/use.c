/* use.c: ratetrack acquire, record and settle, for shell scripts: the
 * answer on stdout, the exit code saying what happened. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>

#include "cli.h"

#define EXIT_CODES_HELP                                                              \
  "Exit codes:\n"                                                                    \
  "   0  done (acquire: admitted)\n"                                                 \
  "   1  anything else (out of memory, a library bug)\n"                             \
  "  64  usage error (EX_USAGE): bad arguments\n"                                    \
  "  65  data error (EX_DATAERR): more tokens than a limit allows outright (never\n" \
  "      admissible), or (settle) a ticket that does not match the model or count\n" \
  "  69  backend unavailable (EX_UNAVAILABLE): shared memory or Redis failed\n"      \
  "  75  limited (EX_TEMPFAIL): not now; retry_after_ms says when to try again\n"    \
  "  78  configuration error (EX_CONFIG): a bad tier, backend or file, or limits\n"  \
  "      that disagree with the ones the shared store holds\n"

#define BACKEND_HELP                                                                  \
  "  --backend URI   memory, shm:NAME or redis://... (default: RATETRACK_BACKEND,\n" \
  "                  else the configuration's, else memory: this process alone)\n"   \
  "  --tier T        the tier (default: RATETRACK_TIER, else the configuration's)\n"  \
  "  --config FILE   a JSON configuration (default: RATETRACK_CONFIG)\n"              \
  "Use the agents' backend, tier and configuration: a shared store refuses limits\n"   \
  "that disagree with the ones it holds (exit 78).\n"

/* Options and operands of the three commands. */
typedef struct {
  cli_tracker_opts o;
  const char *operand[4];
  int operands;
  int wait;           /* acquire --wait */
  double wait_s;      /* acquire --wait=S; < 0: no timeout */
  const char *output; /* acquire --output-tokens */
  const char *granted_output, *actual_output; /* settle */
} use_args;

static int parse(const cli_command *cmd, int argc, char **argv, use_args *a, int max_operands) {
  int i, options = 1;
  memset(a, 0, sizeof *a);
  for (i = 1; i < argc; i++) {
    int r = 0;
    if (options && strcmp(argv[i], "--") == 0) { options = 0; continue; }
    if (options && argv[i][0] == '-' && argv[i][1] != '\0') {
      r = cli_tracker_option(argc, argv, &i, &a->o);
      if (r == 0 && cmd == &cli_cmd_acquire) {
        r = cli_option(argc, argv, &i, "--output-tokens", &a->output);
        if (r == 0 && strcmp(argv[i], "--wait") == 0) {
          a->wait = 1;
          a->wait_s = -1;
          r = 1;
        } else if (r == 0 && strncmp(argv[i], "--wait=", 7) == 0) {
          a->wait = 1;
          if (!cli_parse_seconds(argv[i] + 7, &a->wait_s))
            return cli_usage_error(cmd, "--wait=SECONDS: not a number of seconds: '%s'", argv[i] + 7);
          r = 1;
        }
      }
      if (r == 0 && cmd == &cli_cmd_settle) {
        r = cli_option(argc, argv, &i, "--granted-output", &a->granted_output);
        if (r == 0) r = cli_option(argc, argv, &i, "--actual-output", &a->actual_output);
      }
      if (r < 0) return cli_usage_error(cmd, "%s needs a value", argv[i]);
      if (r == 0) return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
      continue;
    }
    if (a->operands == max_operands) return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
    a->operand[a->operands++] = argv[i];
  }
  if (a->operands == 0 || a->operand[0][0] == '\0') return cli_usage_error(cmd, "MODEL is missing");
  return EXIT_DONE;
}

/* Parses operand or option `s` as a count, or reports a usage error. */
static int count_arg(const cli_command *cmd, const char *what, const char *s, uint64_t *out) {
  if (s == NULL) return 1;
  if (cli_parse_u64(s, out)) return 1;
  cli_usage_error(cmd, "%s: want a non-negative integer, not '%s'", what, s);
  return 0;
}

static int open_for_use(const use_args *a, rt_tracker **t) {
  cli_open_info info;
  int status = cli_open(&a->o, CLI_OPEN_USE, t, &info);
  if (status != RT_OK) return cli_exit_code(status);
  if (info.memory) {
    fprintf(stderr, "ratetrack: note: the in-process backend counts this command's own usage "
                    "only; give --backend or RATETRACK_BACKEND\n");
  }
  return EXIT_DONE;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- acquire */

static const char acquire_help[] =
    "usage: ratetrack acquire MODEL [TOKENS] [--wait[=SECONDS]] [--output-tokens N]\n"
    "                         [--backend URI] [--tier T] [--config FILE]\n"
    "\n"
    "Checks and books one request of TOKENS tokens (default 0) to MODEL in one\n"
    "atomic step, for shell scripts. Admitted: prints \"grant <ticket>\" on stdout,\n"
    "exit 0 (give the ticket to ratetrack settle once the real count is known).\n"
    "Limited: prints \"retry_after_ms <ms>\" on stdout (how long until the same\n"
    "request would fit; never 0), exit 75, nothing booked.\n"
    "\n"
    "  --wait          wait until the request fits (no timeout)\n"
    "  --wait=SECONDS  wait at most SECONDS (0: try once), then exit 75 as above\n"
    "  --output-tokens N   count TOKENS as input and reserve N output tokens\n"
    "                  (windows of input and output tokens; rt_try_acquire_io)\n"
    BACKEND_HELP
    "\n"
    "  if out=$(ratetrack acquire openai/gpt-4o-mini 1200 --wait=30); then\n"
    "    grant=${out#grant }; call_the_api; ratetrack settle openai/gpt-4o-mini \"$grant\" 1200 850\n"
    "  fi\n"
    "\n" EXIT_CODES_HELP;

static int run_acquire(int argc, char **argv) {
  use_args a;
  uint64_t tokens = 0, output = 0, grant = 0, retry = 0;
  int rc = parse(&cli_cmd_acquire, argc, argv, &a, 2), status;
  rt_tracker *t;
  if (rc != EXIT_DONE) return rc;
  if (!count_arg(&cli_cmd_acquire, "TOKENS", a.operand[1], &tokens) ||
      !count_arg(&cli_cmd_acquire, "--output-tokens", a.output, &output))
    return EXIT_USAGE;
  rc = open_for_use(&a, &t);
  if (rc != EXIT_DONE) return rc;

  if (!a.wait || a.wait_s == 0) {
    status = rt_try_acquire_io(t, a.operand[0], tokens, output, &retry, &grant);
  } else if (a.output == NULL) {
    uint64_t timeout = a.wait_s < 0 ? RT_WAIT_NEVER : (uint64_t)(a.wait_s * 1000.0 + 0.5);
    status = rt_acquire(t, a.operand[0], tokens, timeout, &grant);
    if (status == RT_LIMITED) {
      rt_wait_time(t, a.operand[0], tokens, &retry);
      if (retry == 0) retry = 1;
    }
  } else {
    /* No blocking form counts the two sides: try, sleep what the tracker
     * says (never past the deadline), try again. */
    uint64_t deadline = a.wait_s < 0 ? UINT64_MAX : now_ms() + (uint64_t)(a.wait_s * 1000.0 + 0.5);
    for (;;) {
      uint64_t now, nap;
      status = rt_try_acquire_io(t, a.operand[0], tokens, output, &retry, &grant);
      now = now_ms();
      if (status != RT_LIMITED || now >= deadline) break;
      nap = retry < deadline - now ? retry : deadline - now;
      cli_sleep((double)nap / 1000.0);
    }
  }

  if (status == RT_OK) {
    printf("grant %llu\n", (unsigned long long)grant);
  } else if (status == RT_LIMITED) {
    printf("retry_after_ms %llu\n", (unsigned long long)retry);
  } else {
    cli_report(a.operand[0], status);
  }
  rt_close(t);
  return cli_exit_code(status);
}

const cli_command cli_cmd_acquire = {"acquire", "admit one request or exit 75 (for scripts)",
                                     acquire_help, run_acquire};

/* ----------------------------------------------------------------- record */

static const char record_help[] =
    "usage: ratetrack record MODEL [TOKENS] [--backend URI] [--tier T] [--config FILE]\n"
    "\n"
    "Books a request to MODEL that already happened, using TOKENS tokens\n"
    "(default 0): always booked, even past a limit. Prints nothing.\n"
    "\n" BACKEND_HELP "\n" EXIT_CODES_HELP;

static int run_record(int argc, char **argv) {
  use_args a;
  uint64_t tokens = 0;
  int rc = parse(&cli_cmd_record, argc, argv, &a, 2), status;
  rt_tracker *t;
  if (rc != EXIT_DONE) return rc;
  if (!count_arg(&cli_cmd_record, "TOKENS", a.operand[1], &tokens)) return EXIT_USAGE;
  rc = open_for_use(&a, &t);
  if (rc != EXIT_DONE) return rc;
  status = rt_record(t, a.operand[0], tokens);
  if (status != RT_OK) cli_report(a.operand[0], status);
  rt_close(t);
  return cli_exit_code(status);
}

const cli_command cli_cmd_record = {"record", "book a request that already happened",
                                    record_help, run_record};

/* ----------------------------------------------------------------- settle */

static const char settle_help[] =
    "usage: ratetrack settle MODEL GRANT GRANTED ACTUAL\n"
    "                        [--granted-output N --actual-output N]\n"
    "                        [--backend URI] [--tier T] [--config FILE]\n"
    "\n"
    "Settles the grant ticket GRANT (from ratetrack acquire) to the real token\n"
    "count: GRANTED is exactly the TOKENS it was acquired with, ACTUAL what the\n"
    "request used. The difference is booked at the moment of the grant. Settle\n"
    "each grant once. Prints nothing.\n"
    "\n"
    "  --granted-output N, --actual-output N   the output side, for a grant\n"
    "                  acquired with --output-tokens N (rt_settle_io)\n"
    BACKEND_HELP "\n" EXIT_CODES_HELP;

static int run_settle(int argc, char **argv) {
  use_args a;
  uint64_t grant = 0, granted = 0, actual = 0, granted_out = 0, actual_out = 0;
  int rc = parse(&cli_cmd_settle, argc, argv, &a, 4), status;
  rt_tracker *t;
  if (rc != EXIT_DONE) return rc;
  if (a.operands != 4) return cli_usage_error(&cli_cmd_settle, "want MODEL GRANT GRANTED ACTUAL");
  if ((a.granted_output == NULL) != (a.actual_output == NULL))
    return cli_usage_error(&cli_cmd_settle, "give --granted-output and --actual-output together");
  if (!count_arg(&cli_cmd_settle, "GRANT", a.operand[1], &grant) ||
      !count_arg(&cli_cmd_settle, "GRANTED", a.operand[2], &granted) ||
      !count_arg(&cli_cmd_settle, "ACTUAL", a.operand[3], &actual) ||
      !count_arg(&cli_cmd_settle, "--granted-output", a.granted_output, &granted_out) ||
      !count_arg(&cli_cmd_settle, "--actual-output", a.actual_output, &actual_out))
    return EXIT_USAGE;
  if (grant == 0) return cli_usage_error(&cli_cmd_settle, "GRANT: a ticket is never 0");
  rc = open_for_use(&a, &t);
  if (rc != EXIT_DONE) return rc;
  status = rt_settle_io(t, a.operand[0], grant, granted, granted_out, actual, actual_out);
  if (status != RT_OK) cli_report(a.operand[0], status);
  rt_close(t);
  return cli_exit_code(status);
}

const cli_command cli_cmd_settle = {"settle", "settle a grant to the real token count",
                                    settle_help, run_settle};
