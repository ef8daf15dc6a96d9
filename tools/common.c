/* common.c: options, opening trackers, exit codes, signals (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* ------------------------------------------------------------ arguments */

/* The usage lines of a command: its help text up to the first blank line. */
static void print_usage_lines(FILE *out, const cli_command *cmd) {
  const char *end = strstr(cmd->help, "\n\n");
  int n = end ? (int)(end - cmd->help) : (int)strlen(cmd->help);
  fprintf(out, "%.*s\n(ratetrack %s --help for more)\n", n, cmd->help, cmd->name);
}

int cli_usage_error(const cli_command *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "ratetrack %s: ", cmd->name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  print_usage_lines(stderr, cmd);
  return EXIT_USAGE;
}

int cli_is_help(const char *arg) {
  return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_option(int argc, char **argv, int *i, const char *name, const char **value) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  if (a[n] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

int cli_parse_u64(const char *s, uint64_t *out) {
  char *end;
  unsigned long long v;
  if (s == NULL || *s < '0' || *s > '9') return 0;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return 0;
  *out = (uint64_t)v;
  return 1;
}

int cli_parse_seconds(const char *s, double *out) {
  char *end;
  double v;
  if (s == NULL || *s == '\0' || *s == '-' || *s == '+') return 0;
  errno = 0;
  v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !(v >= 0) || v > 1e9) return 0;  /* !(v >= 0): NaN too */
  *out = v;
  return 1;
}

int cli_tracker_option(int argc, char **argv, int *i, cli_tracker_opts *o) {
  int r = cli_option(argc, argv, i, "--backend", &o->backend);
  if (r == 0) r = cli_option(argc, argv, i, "--tier", &o->tier);
  if (r == 0) r = cli_option(argc, argv, i, "--config", &o->config);
  return r;
}

/* -------------------------------------------------------------- trackers */

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Reads a whole file; NULL with errno set on failure. */
static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  char *data = NULL;
  size_t len = 0, cap = 0;
  if (f == NULL) return NULL;
  for (;;) {
    size_t n;
    if (cap - len < 4096) {
      char *d = realloc(data, cap = cap ? cap * 2 : 8192);
      if (d == NULL) { free(data); fclose(f); errno = ENOMEM; return NULL; }
      data = d;
    }
    n = fread(data + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
  }
  if (ferror(f)) { int e = errno; free(data); fclose(f); errno = e ? e : EIO; return NULL; }
  fclose(f);
  data[len] = '\0';
  return data;
}

/* Replaces (or adds) member `key` of object `obj` with a string or bool. */
static int set_member(json_value *obj, const char *key, const char *string, int boolean) {
  json_value *items;
  char **keys;
  json_value *v;
  json_remove(obj, key);
  items = realloc(obj->items, (obj->count + 1) * sizeof *items);
  if (items == NULL) return 0;
  obj->items = items;
  keys = realloc(obj->keys, (obj->count + 1) * sizeof *keys);
  if (keys == NULL) return 0;
  obj->keys = keys;
  v = &obj->items[obj->count];
  memset(v, 0, sizeof *v);
  keys[obj->count] = malloc(strlen(key) + 1);
  if (keys[obj->count] == NULL) return 0;
  strcpy(keys[obj->count], key);
  obj->count++;
  if (string != NULL) {
    v->type = JSON_STRING;
    v->len = strlen(string);
    v->str = malloc(v->len + 1);
    if (v->str == NULL) return 0;
    memcpy(v->str, string, v->len + 1);
  } else {
    v->type = JSON_BOOL;
    v->boolean = boolean;
  }
  return 1;
}

int cli_open(const cli_tracker_opts *o, cli_open_purpose purpose, rt_tracker **out,
             cli_open_info *info) {
  const char *config_path = o->config ? o->config : env("RATETRACK_CONFIG");
  const char *tier = o->tier ? o->tier : env("RATETRACK_TIER");
  const char *backend = o->backend ? o->backend : env("RATETRACK_BACKEND");
  json_value *config = NULL;
  json_buf text = {0};
  int status, memory, store_limits;
  *out = NULL;

  if (config_path != NULL) {
    char err[160];
    char *data = read_file(config_path);
    if (data == NULL) {
      fprintf(stderr, "ratetrack: cannot read the configuration '%s': %s\n", config_path,
              strerror(errno));
      return RT_E_CONFIG;
    }
    config = json_parse(data, err, sizeof err);
    free(data);
    if (config == NULL || config->type != JSON_OBJECT) {
      fprintf(stderr, "ratetrack: configuration '%s': %s\n", config_path,
              config ? "not a JSON object" : err);
      json_free(config);
      return RT_E_CONFIG;
    }
  } else {
    config = json_parse("{}", NULL, 0);
    if (config == NULL) return RT_E_NOMEM;
  }

  if (purpose == CLI_OPEN_LIMITS) backend = "memory";
  if (backend == NULL) {
    const json_value *b = json_get(config, "backend");
    backend = b && b->type == JSON_STRING ? b->str : "memory";
  }
  memory = strcmp(backend, "memory") == 0;
  /* A segment lists its models; Redis cannot (stats name the configured
   * ones), so only shm: views go without limits of their own. */
  store_limits = purpose == CLI_OPEN_VIEW && strncmp(backend, "shm:", 4) == 0 && tier == NULL &&
                 config_path == NULL;
  if (info != NULL) {
    info->memory = memory;
    info->store_limits = store_limits;
  }

  status = RT_E_NOMEM;
  if (!set_member(config, "backend", backend, 0)) goto done;
  if (tier != NULL && !set_member(config, "tier", tier, 0)) goto done;
  if (store_limits && !set_member(config, "builtin_tiers", NULL, 0)) goto done;
  json_write(&text, config);
  if (text.failed) goto done;

  status = rt_open_ex(text.data, out);
  if (status != RT_OK) {
    char shown[256];
    fprintf(stderr, "ratetrack: cannot open the tracker (backend %s): %s: %s\n",
            cli_redacted_backend(backend, shown, sizeof shown), rt_status_string(status),
            rt_last_error());
    /* The hint is for limits that differ from the store's, not for a
     * backend that could not be parsed. */
    if (status == RT_E_CONFIG && !memory &&
        strstr(rt_last_error(), "config key 'backend'") == NULL) {
      fprintf(stderr,
              "ratetrack: a shared store keeps the limits its first user set: give this command "
              "the agents' tier and configuration (--tier/--config, or "
              "RATETRACK_TIER/RATETRACK_CONFIG)\n");
    }
  }
done:
  if (status == RT_E_NOMEM && *out == NULL) fprintf(stderr, "ratetrack: out of memory\n");
  json_buf_free(&text);
  json_free(config);
  return status;
}

int cli_exit_code(int status) {
  switch (status) {
    case RT_OK: return EXIT_DONE;
    case RT_LIMITED: return EXIT_TEMPFAIL;
    case RT_E_INVALID:
    case RT_E_TOO_LARGE: return EXIT_DATAERR;
    case RT_E_BACKEND: return EXIT_UNAVAILABLE;
    case RT_E_CONFIG: return EXIT_CONFIG;
    default: return EXIT_FAILED;
  }
}

const char *cli_redacted_backend(const char *backend, char *buf, size_t n) {
  const char *scheme = strstr(backend, "://");
  const char *at = scheme != NULL ? strrchr(scheme + 3, '@') : NULL;
  size_t head;
  if (at == NULL) {
    snprintf(buf, n, "%s", backend);
  } else {
    head = (size_t)(scheme + 3 - backend);
    snprintf(buf, n, "%.*s***%s", (int)head, backend, at);
  }
  /* What is left came from the command line or the configuration: still
   * not printed raw. */
  {
    size_t i;
    for (i = 0; buf[i] != '\0'; i++) {
      if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) buf[i] = '?';
    }
  }
  return buf;
}

void cli_report(const char *what, int status) {
  /* `what` may hold a model name from the command line, the detail one from
   * the store: neither prints a control character. */
  char *shown_what = json_printable_copy(what);
  char *detail = json_printable_copy(rt_last_error());
  fprintf(stderr, "ratetrack: %s: %s%s%s\n", shown_what ? shown_what : "?",
          rt_status_string(status), detail && detail[0] ? ": " : "", detail ? detail : "");
  free(shown_what);
  free(detail);
}

json_value *cli_stats(rt_tracker *t) {
  char *text = NULL;
  char err[160];
  json_value *stats;
  int status = rt_stats_json_ex(t, &text);
  if (status != RT_OK) {
    cli_report("stats", status);
    return NULL;
  }
  stats = json_parse(text, err, sizeof err);
  rt_free(text);
  if (stats == NULL || stats->type != JSON_OBJECT) {
    fprintf(stderr, "ratetrack: unreadable stats from the library: %s\n",
            stats ? "not an object" : err);
    json_free(stats);
    return NULL;
  }
  /* Model names come from every process that shares the store: none of
   * them prints a control character on this terminal. */
  if (!json_make_printable(stats)) {
    fprintf(stderr, "ratetrack: out of memory\n");
    json_free(stats);
    return NULL;
  }
  return stats;
}

/* ------------------------------------------------------- signals, time */

volatile sig_atomic_t cli_stop = 0;

static void on_stop(int sig) {
  (void)sig;
  cli_stop = 1;
}

void cli_catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: nanosleep and poll return with EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

void cli_sleep(double seconds) {
  struct timespec left;
  if (seconds <= 0) return;
  left.tv_sec = (time_t)seconds;
  left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
  while (!cli_stop && nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}
