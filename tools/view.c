/* view.c: ratetrack limits, stats and watch: the stats JSON of the library
 * (rt_stats_json, format in ratetrack.h) as tables. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define BAR_WIDTH 20
#define MAX_COLUMNS 64

/* ------------------------------------------------------------- helpers */

/* A window's short name: rpm, tpm, rpd, tpd, itpm, otpm, itpd, otpd for the
 * per-minute and per-day windows; r/2s, t/90s, ... for windows of N seconds;
 * rpd(cal) for calendar days (it, ot: input and output tokens). Unknown
 * names are kept whole. */
static const char *short_window(const char *name, char *buf, size_t n) {
  static const struct {
    const char *unit, *abbr;
  } units[] = {{"requests_per_", "r"},
               {"tokens_per_", "t"},
               {"input_tokens_per_", "it"},
               {"output_tokens_per_", "ot"}};
  size_t i;
  for (i = 0; i < sizeof units / sizeof units[0]; i++) {
    size_t len = strlen(units[i].unit);
    const char *span = name + len;
    if (strncmp(name, units[i].unit, len) != 0) continue;
    if (strcmp(span, "minute") == 0) snprintf(buf, n, "%spm", units[i].abbr);
    else if (strcmp(span, "day") == 0) snprintf(buf, n, "%spd", units[i].abbr);
    else if (strcmp(span, "calendar_day") == 0) snprintf(buf, n, "%spd(cal)", units[i].abbr);
    else snprintf(buf, n, "%s/%s", units[i].abbr, span);
    return buf;
  }
  snprintf(buf, n, "%s", name);
  return buf;
}

static int provider_matches(const char *model, const char *provider) {
  size_t n;
  if (provider == NULL) return 1;
  n = strlen(provider);
  return strncmp(model, provider, n) == 0 && model[n] == '/';
}

/* Removes the members of `obj` (models, provider) not of `provider`. */
static void filter_provider(json_value *obj, const char *provider) {
  size_t i = 0;
  if (obj == NULL || obj->type != JSON_OBJECT || provider == NULL) return;
  while (i < obj->count) {
    if (provider_matches(obj->keys[i], provider)) i++;
    else json_remove_at(obj, i);
  }
}

static void print_json(const json_value *v) {
  json_buf b = {0};
  json_write(&b, v);
  if (!b.failed) printf("%s\n", b.data);
  json_buf_free(&b);
}

static void format_count(const json_value *v, char *buf, size_t n) {
  uint64_t u;
  if (json_uint(v, &u)) snprintf(buf, n, "%llu", (unsigned long long)u);
  else if (v != NULL && v->type == JSON_NUMBER) snprintf(buf, n, "%s", v->str);
  else snprintf(buf, n, "-");
}

/* ---------------------------------------------------------------- limits */

static const char limits_help[] =
    "usage: ratetrack limits [--tier T] [--provider P] [--config FILE] [--json]\n"
    "\n"
    "The limits every model gets: the built-in tier tables and the configuration,\n"
    "as the library resolves them (one row per model, one column per window;\n"
    "\"-\" is unlimited).\n"
    "\n"
    "  --tier T        the tier: \"tier1\", \"free\", or per provider\n"
    "                  \"openai=tier2,anthropic=tier1\" (default: RATETRACK_TIER, else the\n"
    "                  configuration's, else tier1)\n"
    "  --provider P    only the models \"P/...\"\n"
    "  --config FILE   a JSON configuration as for rt_open (default: RATETRACK_CONFIG)\n"
    "  --json          {\"tier\": T, \"models\": {MODEL: {WINDOW: LIMIT or null}}}\n"
    "\n"
    "Columns: rpm tpm rpd tpd (requests and tokens per minute and per day), itpm otpm\n"
    "(input and output tokens per minute), then any other window of the listed models:\n"
    "itpd otpd, r/2s (requests per 2 s), rpd(cal) (requests per calendar day), ...\n"
    "The backend is always the in-process one: this shows what a configuration says,\n"
    "not what a shared store holds (ratetrack stats --all shows that).\n"
    "\n"
    "Exit: 0 done, 64 usage error, 78 bad configuration (unknown tier, bad file).\n";

static int run_limits(int argc, char **argv) {
  cli_tracker_opts o = {0};
  const char *provider = NULL;
  int json = 0, i, status;
  rt_tracker *t;
  json_value *stats, *models;
  const char *columns[MAX_COLUMNS];
  size_t ncol = 0, m, c, model_width = 5;
  static const char *fixed[] = {"requests_per_minute", "tokens_per_minute", "requests_per_day",
                                "tokens_per_day", "input_tokens_per_minute",
                                "output_tokens_per_minute"};
  size_t width[MAX_COLUMNS];

  for (i = 1; i < argc; i++) {
    int r = cli_tracker_option(argc, argv, &i, &o);
    if (r == 0) r = cli_option(argc, argv, &i, "--provider", &provider);
    if (r < 0) return cli_usage_error(&cli_cmd_limits, "%s needs a value", argv[i]);
    if (r > 0) continue;
    if (strcmp(argv[i], "--json") == 0) json = 1;
    else return cli_usage_error(&cli_cmd_limits, "unexpected argument '%s'", argv[i]);
  }
  if (o.backend != NULL) return cli_usage_error(&cli_cmd_limits, "--backend does not apply");
  status = cli_open(&o, CLI_OPEN_LIMITS, &t, NULL);
  if (status != RT_OK) return status == RT_E_CONFIG ? EXIT_CONFIG : EXIT_FAILED;
  stats = cli_stats(t);
  rt_close(t);
  if (stats == NULL) return EXIT_FAILED;
  models = json_get(stats, "models");
  filter_provider(models, provider);
  if (models == NULL || models->type != JSON_OBJECT) {
    json_free(stats);
    fprintf(stderr, "ratetrack: no \"models\" in the stats\n");
    return EXIT_FAILED;
  }

  if (json) {
    json_buf b = {0};
    const json_value *tier = json_get(stats, "tier");
    json_buf_puts(&b, "{\"tier\":");
    if (tier != NULL) json_write(&b, tier);
    else json_buf_puts(&b, "null");
    json_buf_puts(&b, ",\"models\":{");
    for (m = 0; m < models->count; m++) {
      const json_value *windows = &models->items[m];
      json_write_string(&b, models->keys[m], strlen(models->keys[m]));
      json_buf_puts(&b, ":{");
      for (c = 0; windows->type == JSON_OBJECT && c < windows->count; c++) {
        const json_value *limit = json_get(&windows->items[c], "limit");
        if (c > 0) json_buf_puts(&b, ",");
        json_write_string(&b, windows->keys[c], strlen(windows->keys[c]));
        json_buf_puts(&b, ":");
        if (limit != NULL) json_write(&b, limit);
        else json_buf_puts(&b, "null");
      }
      json_buf_puts(&b, m + 1 < models->count ? "}," : "}");
    }
    json_buf_puts(&b, "}}");
    if (!b.failed) printf("%s\n", b.data);
    json_buf_free(&b);
    json_free(stats);
    return b.failed ? EXIT_FAILED : EXIT_DONE;
  }

  /* The columns: the fixed six, then every other window in order of first
   * appearance; widths from the header and the values. */
  for (c = 0; c < sizeof fixed / sizeof fixed[0]; c++) columns[ncol++] = fixed[c];
  for (m = 0; m < models->count; m++) {
    const json_value *windows = &models->items[m];
    size_t len = strlen(models->keys[m]);
    if (len > model_width) model_width = len;
    for (i = 0; windows->type == JSON_OBJECT && (size_t)i < windows->count; i++) {
      for (c = 0; c < ncol && strcmp(columns[c], windows->keys[i]) != 0; c++) {
      }
      if (c == ncol && ncol < MAX_COLUMNS) columns[ncol++] = windows->keys[i];
    }
  }
  for (c = 0; c < ncol; c++) {
    char buf[64];
    width[c] = strlen(short_window(columns[c], buf, sizeof buf));
    for (m = 0; m < models->count; m++) {
      char num[32];
      format_count(json_get(json_get(&models->items[m], columns[c]), "limit"), num, sizeof num);
      if (strlen(num) > width[c]) width[c] = strlen(num);
    }
  }
  printf("%-*s", (int)model_width, "MODEL");
  for (c = 0; c < ncol; c++) {
    char buf[64];
    printf("  %*s", (int)width[c], short_window(columns[c], buf, sizeof buf));
  }
  printf("\n");
  for (m = 0; m < models->count; m++) {
    printf("%-*s", (int)model_width, models->keys[m]);
    for (c = 0; c < ncol; c++) {
      char num[32];
      format_count(json_get(json_get(&models->items[m], columns[c]), "limit"), num, sizeof num);
      printf("  %*s", (int)width[c], num);
    }
    printf("\n");
  }
  if (models->count == 0) printf("(no models%s%s)\n", provider ? " of provider " : "",
                                 provider ? provider : "");
  {
    const json_value *tier = json_get(stats, "tier");
    printf("tier %s; \"-\" is unlimited\n", tier && tier->type == JSON_STRING ? tier->str : "?");
  }
  json_free(stats);
  return EXIT_DONE;
}

const cli_command cli_cmd_limits = {"limits", "the limits of every model (tiers, configuration)",
                                    limits_help, run_limits};

/* ------------------------------------------------------------ the table */

typedef struct {
  int all;              /* every model and window, not only those with usage */
  int colour;           /* ANSI colours past 80% and 100% */
  const char *provider; /* only "P/" models */
  cli_open_info info;
} view_opts;

static int has_usage(const json_value *windows) {
  size_t i;
  for (i = 0; windows->type == JSON_OBJECT && i < windows->count; i++) {
    uint64_t cur;
    if (json_uint(json_get(&windows->items[i], "current"), &cur) && cur > 0) return 1;
  }
  return 0;
}

/* One window's row: bar, percentage, used, limit, remaining, notes. */
static void render_window(json_buf *b, const view_opts *vo, int model_width, const char *model,
                          const char *window, const json_value *w) {
  char name[64], used[32], limit[32], remaining[32];
  const json_value *lim = json_get(w, "limit"), *pct_v = json_get(w, "usage_percent");
  const json_value *observed = json_get(w, "observed_limit"), *zone = json_get(w, "resets_at_midnight");
  uint64_t cur = 0, lim_u;
  int limited = json_uint(lim, &lim_u);

  json_uint(json_get(w, "current"), &cur);
  format_count(json_get(w, "current"), used, sizeof used);
  format_count(lim, limit, sizeof limit);
  format_count(json_get(w, "remaining"), remaining, sizeof remaining);
  json_buf_printf(b, "%-*s  %-8s  ", model_width, model, short_window(window, name, sizeof name));
  if (limited) {
    double pct;
    char bar[BAR_WIDTH + 1];
    int filled, i;
    const char *on = "", *off = "";
    if (pct_v != NULL && pct_v->type == JSON_NUMBER) pct = pct_v->d;
    else pct = lim_u == 0 ? 100.0 : 100.0 * (double)cur / (double)lim_u;
    filled = (int)(pct * BAR_WIDTH / 100.0 + 0.5);
    if (filled < 1 && cur > 0) filled = 1;
    if (filled > BAR_WIDTH) filled = BAR_WIDTH;
    if (filled < 0) filled = 0;
    for (i = 0; i < BAR_WIDTH; i++) bar[i] = i < filled ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    if (vo->colour && pct >= 100.0) on = "\033[31m", off = "\033[0m";
    else if (vo->colour && pct >= 80.0) on = "\033[33m", off = "\033[0m";
    json_buf_printf(b, "%s[%s] %5.1f%%%s", on, bar, pct, off);
  } else {
    json_buf_printf(b, "%-*s", BAR_WIDTH + 9, "(no limit)");
  }
  json_buf_printf(b, "  %10s  %10s  %10s", used, limit, remaining);
  if (observed != NULL && observed->type == JSON_NUMBER) {
    json_buf_printf(b, "  provider's limit %s", observed->str);
  }
  if (zone != NULL && zone->type == JSON_STRING) {
    json_buf_printf(b, "  resets at midnight %s", zone->str);
  }
  json_buf_puts(b, "\n");
}

/* The provider's reports on one model: "blocked for 3.0 s (429);
 * requests: 10 remaining of 500, reset in 2.0 s". */
static void render_provider(json_buf *b, const char *model, const json_value *p) {
  size_t i;
  json_buf_printf(b, "  %s:", model);
  for (i = 0; p->type == JSON_OBJECT && i < p->count; i++) {
    const json_value *v = &p->items[i];
    json_buf_puts(b, i > 0 ? ";" : "");
    if (strcmp(p->keys[i], "blocked_for_ms") == 0 && v->type == JSON_NUMBER) {
      json_buf_printf(b, " blocked for %.1f s (reported 429)", v->d / 1000.0);
    } else if (v->type == JSON_OBJECT) {
      const json_value *rem = json_get(v, "remaining"), *lim = json_get(v, "limit");
      const json_value *reset = json_get(v, "reset_in_ms");
      size_t k;
      json_buf_printf(b, " %s:", p->keys[i]);
      if (rem != NULL && rem->type == JSON_NUMBER) json_buf_printf(b, " %s remaining", rem->str);
      if (lim != NULL && lim->type == JSON_NUMBER) json_buf_printf(b, " of %s", lim->str);
      if (reset != NULL && reset->type == JSON_NUMBER)
        json_buf_printf(b, ", reset in %.1f s", reset->d / 1000.0);
      for (k = 0; k < v->count; k++) {  /* anything else, as it comes */
        if (strcmp(v->keys[k], "remaining") == 0 || strcmp(v->keys[k], "limit") == 0 ||
            strcmp(v->keys[k], "reset_in_ms") == 0)
          continue;
        json_buf_printf(b, " %s=", v->keys[k]);
        json_write(b, &v->items[k]);
      }
    } else {
      json_buf_printf(b, " %s=", p->keys[i]);
      json_write(b, v);
    }
  }
  json_buf_puts(b, "\n");
}

/* Redis health: "backend_state": {"connected", "degraded_since_unix_ms",
 * "on_error", "errors", "last_error"}; other keys are shown as they come. */
static void render_backend_state(json_buf *b, const json_value *s) {
  size_t i;
  json_buf_puts(b, "backend state:");
  for (i = 0; s->type == JSON_OBJECT && i < s->count; i++) {
    const char *k = s->keys[i];
    const json_value *v = &s->items[i];
    if (strcmp(k, "connected") == 0 && v->type == JSON_BOOL) {
      json_buf_puts(b, v->boolean ? " connected" : " DISCONNECTED");
    } else if (strcmp(k, "degraded_since_unix_ms") == 0) {
      if (v->type == JSON_NUMBER) {
        time_t since = (time_t)(v->d / 1000.0);
        struct tm tm;
        char when[32];
        localtime_r(&since, &tm);
        strftime(when, sizeof when, "%H:%M:%S", &tm);
        json_buf_printf(b, ", degraded since %s", when);
      }
    } else if (strcmp(k, "on_error") == 0 && v->type == JSON_STRING) {
      json_buf_printf(b, ", on_error=%s", v->str);
    } else if (strcmp(k, "errors") == 0 && v->type == JSON_NUMBER) {
      json_buf_printf(b, ", %s errors", v->str);
    } else if (strcmp(k, "last_error") == 0 && v->type == JSON_STRING) {
      if (v->len > 0) json_buf_printf(b, ", last error: %s", v->str);
    } else {
      json_buf_printf(b, ", %s=", k);
      json_write(b, v);
    }
  }
  json_buf_puts(b, "\n");
}

/* The whole table of a stats object. */
static void render_stats(json_buf *b, const json_value *stats, const view_opts *vo) {
  const json_value *models = json_get(stats, "models"), *provider = json_get(stats, "provider");
  const json_value *backend = json_get(stats, "backend"), *tier = json_get(stats, "tier");
  const json_value *state = json_get(stats, "backend_state");
  size_t m, w, shown = 0, total = 0;
  int model_width = 5;

  json_buf_printf(b, "backend %s", backend && backend->type == JSON_STRING ? backend->str : "?");
  if (vo->info.memory) json_buf_puts(b, " (in-process backend: this process's usage only)");
  if (vo->info.store_limits) json_buf_puts(b, ", limits as stored in the backend\n");
  else json_buf_printf(b, ", tier %s\n", tier && tier->type == JSON_STRING ? tier->str : "?");
  if (state != NULL) render_backend_state(b, state);

  for (m = 0; models && models->type == JSON_OBJECT && m < models->count; m++) {
    int len = (int)strlen(models->keys[m]);
    if (!provider_matches(models->keys[m], vo->provider)) continue;
    total++;
    if (!vo->all && !has_usage(&models->items[m]) && !json_get(provider, models->keys[m])) continue;
    if (len > model_width) model_width = len;
  }
  json_buf_printf(b, "%-*s  %-8s  %-*s  %10s  %10s  %10s\n", model_width, "MODEL", "WINDOW",
                  BAR_WIDTH + 9, "USAGE", "USED", "LIMIT", "REMAINING");
  for (m = 0; models && models->type == JSON_OBJECT && m < models->count; m++) {
    const json_value *windows = &models->items[m];
    int first = 1;
    if (!provider_matches(models->keys[m], vo->provider)) continue;
    if (!vo->all && !has_usage(windows) && !json_get(provider, models->keys[m])) continue;
    shown++;
    for (w = 0; windows->type == JSON_OBJECT && w < windows->count; w++) {
      const json_value *win = &windows->items[w];
      uint64_t cur = 0, lim;
      json_uint(json_get(win, "current"), &cur);
      /* Unlimited windows only when they counted something (or --all). */
      if (!vo->all && !json_uint(json_get(win, "limit"), &lim) && cur == 0) continue;
      render_window(b, vo, model_width, first ? models->keys[m] : "", windows->keys[w], win);
      first = 0;
    }
    if (first) json_buf_printf(b, "%-*s  (no windows)\n", model_width, models->keys[m]);
  }
  if (shown == 0) {
    json_buf_printf(b, "(no usage in %zu model%s; --all lists every one)\n", total,
                    total == 1 ? "" : "s");
  } else if (!vo->all && shown < total) {
    json_buf_printf(b, "(%zu of %zu models have usage; --all lists every one)\n", shown, total);
  }
  if (provider != NULL && provider->type == JSON_OBJECT && provider->count > 0) {
    size_t shown_p = 0;
    for (m = 0; m < provider->count; m++) {
      if (!provider_matches(provider->keys[m], vo->provider)) continue;
      if (shown_p++ == 0) json_buf_puts(b, "provider reports:\n");
      render_provider(b, provider->keys[m], &provider->items[m]);
    }
  }
}

/* Options of stats and watch. */
static int parse_view_args(const cli_command *cmd, int argc, char **argv, cli_tracker_opts *o,
                           view_opts *vo, int *json, double *interval, uint64_t *count) {
  int i;
  for (i = 1; i < argc; i++) {
    const char *value = NULL;
    int r = cli_tracker_option(argc, argv, &i, o);
    if (r == 0) r = cli_option(argc, argv, &i, "--provider", &vo->provider);
    if (r == 0 && interval != NULL) {
      r = cli_option(argc, argv, &i, "--interval", &value);
      if (r > 0 && (!cli_parse_seconds(value, interval) || *interval < 0.05))
        return cli_usage_error(cmd, "--interval: want seconds, at least 0.05, not '%s'", value);
    }
    if (r == 0 && count != NULL) {
      r = cli_option(argc, argv, &i, "--count", &value);
      if (r > 0 && (!cli_parse_u64(value, count) || *count == 0))
        return cli_usage_error(cmd, "--count: want a positive integer, not '%s'", value);
    }
    if (r < 0) return cli_usage_error(cmd, "%s needs a value", argv[i]);
    if (r > 0) continue;
    if (strcmp(argv[i], "--all") == 0) vo->all = 1;
    else if (json != NULL && strcmp(argv[i], "--json") == 0) *json = 1;
    else if (interval != NULL && strcmp(argv[i], "--no-color") == 0) vo->colour = 0;
    else return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
  }
  return EXIT_DONE;
}

/* ----------------------------------------------------------------- stats */

static const char stats_help[] =
    "usage: ratetrack stats [--backend URI] [--all] [--provider P] [--json]\n"
    "                       [--tier T] [--config FILE]\n"
    "\n"
    "The usage of every model with usage, window by window: a bar of 20 (# used),\n"
    "the percentage, what is used, the limit and what remains (\"-\": unlimited);\n"
    "then what the provider reported (blocked models, its remaining counts) and,\n"
    "for Redis, the backend's health.\n"
    "\n"
    "  --backend URI   memory, shm:NAME or redis://... (default: RATETRACK_BACKEND,\n"
    "                  else the configuration's, else memory: this process alone,\n"
    "                  which is empty)\n"
    "  --all           every model and window, also those without usage\n"
    "  --provider P    only the models \"P/...\"\n"
    "  --json          the library's stats JSON (rt_stats_json; filtered by --provider)\n"
    "  --tier T, --config FILE   the agents' tier and configuration (default:\n"
    "                  RATETRACK_TIER, RATETRACK_CONFIG)\n"
    "\n"
    "A shared store (shm:, redis://) keeps the limits of the process that first used\n"
    "a model. With no tier or configuration given anywhere, this command asserts no\n"
    "limits of its own and shows the store's. Given one that disagrees with the\n"
    "store, it prints the library's message and exits 1.\n"
    "\n"
    "Exit: 0 done, 1 failed (cannot open the backend, limits disagree), 64 usage error.\n";

static int run_stats(int argc, char **argv) {
  cli_tracker_opts o = {0};
  view_opts vo;
  int json = 0, status, rc;
  rt_tracker *t;
  json_value *stats;

  memset(&vo, 0, sizeof vo);
  rc = parse_view_args(&cli_cmd_stats, argc, argv, &o, &vo, &json, NULL, NULL);
  if (rc != EXIT_DONE) return rc;
  status = cli_open(&o, CLI_OPEN_VIEW, &t, &vo.info);
  if (status != RT_OK) return EXIT_FAILED;
  stats = cli_stats(t);
  rt_close(t);
  if (stats == NULL) return EXIT_FAILED;
  if (json) {
    filter_provider(json_get(stats, "models"), vo.provider);
    filter_provider(json_get(stats, "provider"), vo.provider);
    print_json(stats);
  } else {
    json_buf b = {0};
    render_stats(&b, stats, &vo);
    if (!b.failed) fputs(b.data, stdout);
    json_buf_free(&b);
  }
  json_free(stats);
  return EXIT_DONE;
}

const cli_command cli_cmd_stats = {"stats", "usage per model and window, with bars",
                                   stats_help, run_stats};

/* ----------------------------------------------------------------- watch */

static const char watch_help[] =
    "usage: ratetrack watch [--backend URI] [--interval S] [--count N] [--all]\n"
    "                       [--provider P] [--no-color] [--tier T] [--config FILE]\n"
    "\n"
    "The table of ratetrack stats, refreshed every --interval seconds (default 1).\n"
    "On a terminal: a full-screen view (the alternate screen, cursor hidden), a\n"
    "window's bar yellow from 80% and red from 100%; Ctrl-C (or SIGTERM) quits and\n"
    "restores the terminal. Otherwise (a pipe, a file): plain text snapshots, one\n"
    "per interval, without escape codes.\n"
    "\n"
    "  --interval S    seconds between refreshes, at least 0.05 (default 1)\n"
    "  --count N       stop after N refreshes (default: until interrupted)\n"
    "  --no-color      no colours on a terminal either (so does NO_COLOR=1)\n"
    "  --backend, --all, --provider, --tier, --config: as for ratetrack stats\n"
    "\n"
    "Exit: 0 done (interrupted, or --count reached), 1 failed, 64 usage error.\n";

static int run_watch(int argc, char **argv) {
  cli_tracker_opts o = {0};
  view_opts vo;
  double interval = 1.0;
  uint64_t count = 0, frame;
  int status, rc, tty = isatty(STDOUT_FILENO);
  rt_tracker *t;

  memset(&vo, 0, sizeof vo);
  vo.colour = tty && getenv("NO_COLOR") == NULL;
  rc = parse_view_args(&cli_cmd_watch, argc, argv, &o, &vo, NULL, &interval, &count);
  if (rc != EXIT_DONE) return rc;
  status = cli_open(&o, CLI_OPEN_VIEW, &t, &vo.info);
  if (status != RT_OK) return EXIT_FAILED;

  cli_catch_stop_signals();
  if (tty) fputs("\033[?1049h\033[?25l", stdout); /* alternate screen, hide the cursor */
  for (frame = 1; !cli_stop; frame++) {
    json_buf b = {0};
    json_value *stats = cli_stats(t);
    time_t now = time(NULL);
    struct tm tm;
    char when[32];
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    if (tty) json_buf_printf(&b, "ratetrack watch: every %g s, Ctrl-C quits   %s\n\n", interval, when);
    else json_buf_printf(&b, "--- ratetrack watch %s (%llu)\n", when, (unsigned long long)frame);
    if (stats != NULL) render_stats(&b, stats, &vo);
    else json_buf_puts(&b, "(the stats are unavailable: see the error above)\n");
    json_free(stats);
    if (b.failed) {
      json_buf_free(&b);
      break;
    }
    if (tty) {
      /* Home, each line cleared to its end, the rest of the screen cleared:
       * no flicker. */
      char *line = b.data, *nl;
      fputs("\033[H", stdout);
      while ((nl = strchr(line, '\n')) != NULL) {
        fwrite(line, 1, (size_t)(nl - line), stdout);
        fputs("\033[K\n", stdout);
        line = nl + 1;
      }
      fputs("\033[J", stdout);
    } else {
      fputs(b.data, stdout);
      fputs("\n", stdout);
    }
    fflush(stdout);
    json_buf_free(&b);
    if (count != 0 && frame >= count) break;
    cli_sleep(interval);
  }
  if (tty) fputs("\033[?25h\033[?1049l", stdout); /* show the cursor, leave the alternate screen */
  fflush(stdout);
  rt_close(t);
  return EXIT_DONE;
}

const cli_command cli_cmd_watch = {"watch", "a live view of the stats (a terminal, or snapshots)",
                                   watch_help, run_watch};
