/* A plugin host: loads two plugins with dlopen; both spend from the one
 * global tracker, so together they stay within the model's limit. */
#include <dlfcn.h>
#include <stdio.h>

#include "ratetrack.h"

typedef void *(*tracker_fn)(void);
typedef int (*spend_fn)(int);

static int load(const char *path, const char *name, tracker_fn *tracker,
                spend_fn *spend) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    return -1;
  }
  char sym[64];
  snprintf(sym, sizeof sym, "%s_tracker", name);
  *(void **)tracker = dlsym(h, sym);
  snprintf(sym, sizeof sym, "%s_spend", name);
  *(void **)spend = dlsym(h, sym);
  return (*tracker && *spend) ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PLUGIN_A.so PLUGIN_B.so\n", argv[0]);
    return 64;
  }
  tracker_fn ta, tb;
  spend_fn sa, sb;
  if (load(argv[1], "plugin_a", &ta, &sa) || load(argv[2], "plugin_b", &tb, &sb)) {
    return 1;
  }
  if (rt_global_get("tier1") == NULL) return 1;
  void *a = ta(), *b = tb();
  printf("plugin a sees tracker %p, plugin b sees tracker %p\n", a, b);
  int na = sa(300), nb = sb(300);
  printf("plugin a admitted %d of 300, plugin b admitted %d of 300\n", na, nb);
  if (a != b || a == NULL || na + nb != 500) {
    printf("FAILED: the plugins do not share one budget of 500\n");
    return 1;
  }
  printf("one global tracker, one budget: %d of 500 per minute\n", na + nb);
  return 0;
}
