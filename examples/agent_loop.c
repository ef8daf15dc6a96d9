/* A complete agent loop on libratetrack (no network: the LLM is simulated).
 *
 *   1. estimate the request: prompt tokens, and max_tokens of output;
 *   2. pick a model: the first of the preferred ones that can take it now,
 *      acquired in the same atomic step;
 *   3. call the API (here: pretend);
 *   4. settle the grant to the real input and output counts;
 *   5. feed the response's rate-limit headers back, or report a 429.
 */
#include <stdio.h>
#include <string.h>

#include "ratetrack.h"

static const char *const kModels[] = {"anthropic/claude-sonnet-4-20250514",
                                      "openai/gpt-4o-mini", "gemini/gemini-2.5-flash"};

/* A pretend API call: the tokens really used, a 429 now and then, and the
 * provider's rate-limit headers. */
struct response {
  int status;
  uint64_t input, output;
  const char *names[3], *values[3];
  size_t header_count;
};

static struct response call_llm(const char *model, uint64_t prompt, uint64_t max_tokens, int i) {
  struct response r = {200, prompt, max_tokens / 3, {0}, {0}, 0};
  if (i == 3 && strncmp(model, "anthropic/", 10) == 0) {
    r.status = 429; /* the provider says: not now */
    r.names[0] = "retry-after";
    r.values[0] = "2";
    r.header_count = 1;
  } else if (strncmp(model, "openai/", 7) == 0) {
    r.names[0] = "x-ratelimit-remaining-requests";
    r.values[0] = "40";
    r.names[1] = "x-ratelimit-reset-requests";
    r.values[1] = "1s";
    r.names[2] = "x-ratelimit-limit-requests";
    r.values[2] = "500";
    r.header_count = 3;
  }
  return r;
}

int main(void) {
  rt_tracker *t = rt_global_get("tier1");
  if (t == NULL) {
    fprintf(stderr, "rt_global_get: %s\n", rt_last_error());
    return 1;
  }
  int done = 0;
  for (int i = 0; i < 8; i++) {
    /* 1. estimate */
    const uint64_t prompt = 1200, max_tokens = 600;
    /* 2. pick and acquire */
    size_t k = 0;
    uint64_t retry_ms = 0, grant = 0;
    int rc = rt_pick(t, kModels, 3, prompt, max_tokens, &k, &retry_ms, &grant);
    if (rc == RT_LIMITED) {
      printf("call %d: every model is busy; %s frees first, in %llu ms\n", i, kModels[k],
             (unsigned long long)retry_ms);
      continue;
    }
    if (rc != RT_OK) {
      fprintf(stderr, "rt_pick: %s: %s\n", rt_status_string(rc), rt_last_error());
      return 1;
    }
    /* 3. call */
    struct response r = call_llm(kModels[k], prompt, max_tokens, i);
    if (r.status == 429) {
      /* 5b. the provider refused: every caller sharing the tracker holds back */
      rt_report_limited(t, kModels[k], r.values[0]);
      rt_settle_io(t, kModels[k], grant, prompt, max_tokens, prompt, 0);
      printf("call %d: %s answered 429, retry after %s s: reported\n", i, kModels[k], r.values[0]);
      continue;
    }
    /* 4. settle to what was really used */
    rt_settle_io(t, kModels[k], grant, prompt, max_tokens, r.input, r.output);
    /* 5. what the provider says about its limits */
    rt_observe_headers(t, kModels[k], r.names, r.values, r.header_count);
    printf("call %d: %s, %llu in + %llu out tokens\n", i, kModels[k],
           (unsigned long long)r.input, (unsigned long long)r.output);
    done++;
  }
  printf("%d calls made; the 429 moved the agent to the next model\n", done);
  return done >= 6 ? 0 : 1;
}
