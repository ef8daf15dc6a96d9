/* The seed's scenario: a main agent and two tools, in threads, share
 * openai/gpt-4o-mini (500 requests per minute at tier1) through the one
 * global tracker. The tools see the agent's usage, and together they never
 * pass the limit.
 *
 *   cc seed_scenario.c $(pkg-config --cflags --libs ratetrack) -lpthread
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ratetrack.h"

#define MODEL "openai/gpt-4o-mini"

struct caller {
  const char *name;
  int attempts;
  int admitted;
  int refused;
};

static void *run(void *arg) {
  struct caller *c = arg;
  /* Every caller asks for the global itself: no handle is passed around. */
  rt_tracker *t = rt_global_get(NULL);
  if (t == NULL) {
    fprintf(stderr, "%s: %s\n", c->name, rt_last_error());
    return NULL;
  }
  for (int i = 0; i < c->attempts; i++) {
    uint64_t retry_ms = 0;
    int rc = rt_try_acquire(t, MODEL, 100, &retry_ms); /* ~100 tokens each */
    if (rc == RT_OK) {
      c->admitted++;
    } else if (rc == RT_LIMITED) {
      if (c->refused++ == 0) {
        printf("  %s: first refusal after %d admitted; retry in %.1f s\n",
               c->name, c->admitted, (double)retry_ms / 1000.0);
      }
    } else {
      fprintf(stderr, "%s: %s\n", c->name, rt_last_error());
      return NULL;
    }
  }
  return NULL;
}

/* Prints the model's entry of the stats JSON (the text between its braces). */
static void print_model_stats(void) {
  char *json = rt_stats_json(NULL);
  if (json == NULL) return;
  const char *key = "\"" MODEL "\":{";
  const char *p = strstr(json, key);
  if (p != NULL) {
    int depth = 0;
    const char *q = p + strlen(key) - 1;
    do {
      if (*q == '{') depth++;
      if (*q == '}') depth--;
      q++;
    } while (depth > 0 && *q);
    printf("  %.*s\n", (int)(q - p), p);
  }
  rt_free(json);
}

int main(void) {
  rt_tracker *global = rt_global_get("tier1");
  if (global == NULL) {
    fprintf(stderr, "rt_global_get: %s\n", rt_last_error());
    return 1;
  }
  printf("libratetrack %s: one tracker for the whole process\n\n",
         rt_version_string());

  struct caller agent = {"main agent", 400, 0, 0};
  struct caller fast = {"fast tool", 200, 0, 0};
  struct caller budget = {"budget tool", 200, 0, 0};

  printf("The main agent makes 400 requests to " MODEL ":\n");
  pthread_t a;
  pthread_create(&a, NULL, run, &agent);
  pthread_join(a, NULL);
  printf("  admitted %d\n", agent.admitted);

  printf("\nTwo tools start, and see the agent's usage:\n");
  printf("  can_make -> %d (400 of 500 used)\n", rt_can_make(global, MODEL, 100));
  pthread_t f, b;
  pthread_create(&f, NULL, run, &fast);
  pthread_create(&b, NULL, run, &budget);
  pthread_join(f, NULL);
  pthread_join(b, NULL);
  printf("  fast tool admitted %d, budget tool admitted %d\n", fast.admitted,
         budget.admitted);

  int total = agent.admitted + fast.admitted + budget.admitted;
  printf("\nStats of " MODEL ":\n");
  print_model_stats();
  if (total != 500) {
    printf("\nFAILED: %d admitted against a limit of 500\n", total);
    return 1;
  }
  printf("\nThe combined limit held: %d admitted of 500 per minute, "
         "%d refused.\n", total, 800 - total);
  return 0;
}
