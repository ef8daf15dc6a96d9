/* A plugin that spends from the process's one global tracker. Built twice,
 * as plugin_a.so and plugin_b.so; plugin_host.c loads both with dlopen. */
#include <stddef.h>

#include "ratetrack.h"

#ifndef PLUGIN_NAME
#error "define PLUGIN_NAME"
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

__attribute__((visibility("default"))) void *CAT(PLUGIN_NAME, _tracker)(void) {
  return rt_global_get(NULL);
}

/* Tries `n` requests; returns how many were admitted, or -1 on error. */
__attribute__((visibility("default"))) int CAT(PLUGIN_NAME, _spend)(int n) {
  rt_tracker *t = rt_global_get(NULL);
  if (t == NULL) return -1;
  int admitted = 0;
  for (int i = 0; i < n; i++) {
    int rc = rt_try_acquire(t, "openai/gpt-4o-mini", 50, NULL);
    if (rc == RT_OK) admitted++;
    else if (rc != RT_LIMITED) return -1;
  }
  return admitted;
}
