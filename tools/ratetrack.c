/* ratetrack: the command-line companion of libratetrack, built on its public
 * C API only. `ratetrack --help` lists the commands, `ratetrack CMD --help`
 * documents each one; tools/README.md is the manual. The commands live in
 * view.c (limits, stats, watch), use.c (acquire, record, settle), metrics.c
 * and here (shm, version); common.c holds what they share (cli.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_command *const commands[] = {
    &cli_cmd_limits, &cli_cmd_stats,   &cli_cmd_watch, &cli_cmd_acquire, &cli_cmd_record,
    &cli_cmd_settle, &cli_cmd_metrics, &cli_cmd_shm,   &cli_cmd_version};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static int top_usage(FILE *out, int code) {
  size_t i;
  fprintf(out, "usage: ratetrack COMMAND [ARGS...]   (ratetrack COMMAND --help for each)\n\n");
  for (i = 0; i < NCOMMANDS; i++) {
    fprintf(out, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
  }
  fprintf(out,
          "\n"
          "Environment, as for the library: RATETRACK_BACKEND (memory, shm:NAME,\n"
          "redis://...), RATETRACK_TIER, RATETRACK_CONFIG (a JSON configuration file).\n"
          "Options --backend, --tier and --config override them.\n"
          "\n"
          "Exit codes: 0 done, 1 failed, 64 usage error; acquire, record and settle\n"
          "also 65 too large / bad ticket, 69 backend unavailable, 75 limited (retry\n"
          "later), 78 configuration error.\n");
  return code;
}

/* ------------------------------------------------------------------- shm */

static const char shm_help[] =
    "usage: ratetrack shm list [--json]\n"
    "       ratetrack shm remove NAME\n"
    "\n"
    "The shared-memory segments (/dev/shm/ratetrack.NAME) of the shm:NAME backend.\n"
    "  list            a table: NAME MODE BYTES MODELS CAPACITY STATE\n"
    "  list --json     the library's JSON (rt_shm_list)\n"
    "  remove NAME     unlink the segment; processes that have it mapped keep\n"
    "                  using their mapping, so stop them first (or the budget splits)\n"
    "\n"
    "Exit: 0 done, 1 failed, 64 usage error (also: a bad or unknown NAME).\n";

static int shm_list(int json) {
  char *text = NULL, err[160];
  json_value *list;
  size_t i;
  int status = rt_shm_list(&text);
  if (status != RT_OK) {
    cli_report("shm list", status);
    return EXIT_FAILED;
  }
  if (json) {
    printf("%s\n", text);
    rt_free(text);
    return EXIT_DONE;
  }
  list = json_parse(text, err, sizeof err);
  rt_free(text);
  if (list == NULL || list->type != JSON_ARRAY || !json_make_printable(list)) {
    fprintf(stderr, "ratetrack: unreadable segment list: %s\n",
            list ? "not an array (or out of memory)" : err);
    json_free(list);
    return EXIT_FAILED;
  }
  printf("%-24s %6s %10s %6s %9s %s\n", "NAME", "MODE", "BYTES", "MODELS", "CAPACITY", "STATE");
  for (i = 0; i < list->count; i++) {
    const json_value *s = &list->items[i];
    const json_value *name = json_get(s, "name"), *mode = json_get(s, "mode");
    const json_value *compatible = json_get(s, "compatible");
    const char *fields[] = {"bytes", "models", "capacity"};
    char num[3][32];
    size_t f;
    for (f = 0; f < 3; f++) {
      const json_value *v = json_get(s, fields[f]);
      snprintf(num[f], sizeof num[f], "%s", v && v->type == JSON_NUMBER ? v->str : "-");
    }
    printf("%-24s %6s %10s %6s %9s %s\n", name && name->type == JSON_STRING ? name->str : "?",
           mode && mode->type == JSON_STRING ? mode->str : "-", num[0], num[1], num[2],
           compatible && compatible->type == JSON_BOOL && compatible->boolean ? "ok"
                                                                            : "incompatible");
  }
  if (list->count == 0) printf("(no segments)\n");
  json_free(list);
  return EXIT_DONE;
}

static int run_shm(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "list") == 0 && argc <= 3) {
    if (argc == 3 && strcmp(argv[2], "--json") != 0)
      return cli_usage_error(&cli_cmd_shm, "unexpected argument '%s'", argv[2]);
    return shm_list(argc == 3);
  }
  if (argc == 3 && strcmp(argv[1], "remove") == 0) {
    int status = rt_shm_remove(argv[2]);
    if (status != RT_OK) {
      cli_report("shm remove", status);
      return status == RT_E_INVALID ? EXIT_USAGE : EXIT_FAILED;
    }
    printf("removed %s\n", argv[2]);
    return EXIT_DONE;
  }
  return cli_usage_error(&cli_cmd_shm, "want 'list [--json]' or 'remove NAME'");
}

const cli_command cli_cmd_shm = {"shm", "list or remove shared-memory segments", shm_help,
                                 run_shm};

/* --------------------------------------------------------------- version */

static const char version_help[] =
    "usage: ratetrack version\n"
    "\n"
    "Prints the version of the library loaded: \"ratetrack MAJOR.MINOR.PATCH\".\n";

static int run_version(int argc, char **argv) {
  if (argc > 1) return cli_usage_error(&cli_cmd_version, "unexpected argument '%s'", argv[1]);
  printf("ratetrack %s\n", rt_version_string());
  return EXIT_DONE;
}

const cli_command cli_cmd_version = {"version", "the library's version", version_help,
                                     run_version};

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  size_t i;
  int a;
  if (argc < 2) return top_usage(stderr, EXIT_USAGE);
  if (cli_is_help(argv[1])) return top_usage(stdout, EXIT_DONE);
  if (strcmp(argv[1], "--version") == 0) return run_version(1, argv + 1);
  for (i = 0; i < NCOMMANDS; i++) {
    if (strcmp(argv[1], commands[i]->name) != 0) continue;
    for (a = 2; a < argc; a++) {  /* --help anywhere before a "--" */
      if (strcmp(argv[a], "--") == 0) break;
      if (cli_is_help(argv[a])) {
        fputs(commands[i]->help, stdout);
        return EXIT_DONE;
      }
    }
    return commands[i]->run(argc - 1, argv + 1);
  }
  fprintf(stderr, "ratetrack: unknown command '%s'\n", argv[1]);
  return top_usage(stderr, EXIT_USAGE);
}
