/* An agent process for the "shm:NAME" demo (scripts/demo-shm.sh): it spends
 * openai/gpt-4o-mini through the process-wide GLOBAL tracker, which
 * RATETRACK_BACKEND=shm:NAME puts in shared memory, so agents in other
 * processes (and other languages) spend the same budget. Calls are simulated
 * (no network): each acquires with an estimate without waiting, "calls" the
 * model, then settles the grant with the tokens really used.
 *
 *   RATETRACK_BACKEND=shm:agents shm_agent [CALLS [START_FILE]]
 *
 * Waits for START_FILE (if given, at most 10 s), makes CALLS (default 40)
 * attempts and prints "c: admitted A of CALLS calls, T tokens used".
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ratetrack.h"

#define MODEL "openai/gpt-4o-mini"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  int calls = argc > 1 ? atoi(argv[1]) : 40;
  rt_tracker *t = NULL;
  int rc = rt_global_get_ex(NULL, &t); /* tier, limits, backend: from the environment */
  if (rc != RT_OK) {
    fprintf(stderr, "c agent: rt_global_get: %s: %s\n", rt_status_string(rc), rt_last_error());
    return 1;
  }
  if (argc > 2) {
    for (int i = 0; access(argv[2], F_OK) != 0; i++) {
      if (i == 10000) {
        fprintf(stderr, "c agent: %s did not appear within 10 s\n", argv[2]);
        return 1;
      }
      sleep_ms(1);
    }
  }

  srand((unsigned)getpid());
  int admitted = 0;
  uint64_t tokens_used = 0, first_retry_ms = 0;
  for (int i = 0; i < calls; i++) {
    uint64_t prompt = 100 + (uint64_t)(rand() % 200), max_tokens = 256;
    uint64_t estimate = prompt + max_tokens, retry_ms = 0, grant = 0;
    rc = rt_try_acquire_grant(t, MODEL, estimate, &retry_ms, &grant);
    if (rc == RT_LIMITED) { /* a real agent would queue the step; this one skips it */
      if (first_retry_ms == 0) first_retry_ms = retry_ms;
      sleep_ms(1);
      continue;
    }
    if (rc != RT_OK) {
      fprintf(stderr, "c agent: rt_try_acquire_grant: %s: %s\n", rt_status_string(rc),
              rt_last_error());
      return 1;
    }
    sleep_ms(1 + rand() % 3); /* the "request" */
    uint64_t actual = prompt + 50 + (uint64_t)(rand() % 200);
    rc = rt_settle(t, MODEL, grant, estimate, actual);
    if (rc != RT_OK) {
      fprintf(stderr, "c agent: rt_settle: %s: %s\n", rt_status_string(rc), rt_last_error());
      return 1;
    }
    admitted++;
    tokens_used += actual;
  }
  printf("c: admitted %d of %d calls, %llu tokens used", admitted, calls,
         (unsigned long long)tokens_used);
  if (first_retry_ms != 0) printf(" (refused after that: retry in %.1f s)", first_retry_ms / 1000.0);
  printf("\n");
  return 0;
}
