/* Two copies of libratetrack (the same file at two paths) loaded into one
 * process: each has its own global tracker in memory, but both share one
 * budget through the same shared-memory NAME. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct rt_tracker rt_tracker;
struct lib {
  rt_tracker *(*global_get)(const char *);
  rt_tracker *(*open)(const char *);
  int (*try_acquire)(rt_tracker *, const char *, uint64_t, uint64_t *);
  int (*shm_remove)(const char *);
  void (*close)(rt_tracker *);
  const char *(*last_error)(void);
};

static int load(const char *path, struct lib *l) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    return -1;
  }
  *(void **)&l->global_get = dlsym(h, "rt_global_get");
  *(void **)&l->open = dlsym(h, "rt_open");
  *(void **)&l->try_acquire = dlsym(h, "rt_try_acquire");
  *(void **)&l->shm_remove = dlsym(h, "rt_shm_remove");
  *(void **)&l->last_error = dlsym(h, "rt_last_error");
  *(void **)&l->close = dlsym(h, "rt_close");
  return l->global_get && l->open && l->try_acquire && l->shm_remove && l->close ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc != 3) return 64;
  struct lib a, b;
  if (load(argv[1], &a) || load(argv[2], &b)) return 1;
  if (a.global_get == b.global_get) {
    printf("FAILED: the two paths loaded one copy\n");
    return 1;
  }
  /* In memory: two copies, two globals, two budgets (the problem). */
  const char *mem = "{\"builtin_tiers\": false, \"limits\": {\"x/m\": {\"rpm\": 10}}}";
  rt_tracker *ma = a.open(mem), *mb = b.open(mem);
  int in_memory = 0;
  for (int i = 0; i < 20; i++) {
    in_memory += a.try_acquire(ma, "x/m", 1, NULL) == 0;
    in_memory += b.try_acquire(mb, "x/m", 1, NULL) == 0;
  }
  /* Through shm:NAME: one budget (the fix). */
  char cfg[256];
  snprintf(cfg, sizeof cfg,
           "{\"backend\": \"shm:two-copies-%d\", \"builtin_tiers\": false, "
           "\"limits\": {\"x/m\": {\"rpm\": 10}}}", (int)getpid());
  char name[64];
  snprintf(name, sizeof name, "two-copies-%d", (int)getpid());
  a.shm_remove(name);
  rt_tracker *sa = a.open(cfg), *sb = b.open(cfg);
  if (sa == NULL || sb == NULL) {
    fprintf(stderr, "open: %s %s\n", a.last_error(), b.last_error());
    return 1;
  }
  int shared = 0;
  for (int i = 0; i < 20; i++) {
    shared += a.try_acquire(sa, "x/m", 1, NULL) == 0;
    shared += b.try_acquire(sb, "x/m", 1, NULL) == 0;
  }
  b.shm_remove(name);
  a.close(ma);
  b.close(mb);
  a.close(sa);
  b.close(sb);
  printf("two copies in memory: %d admitted against 10 (two budgets)\n", in_memory);
  printf("two copies through shm: %d admitted against 10 (one budget)\n", shared);
  return in_memory == 20 && shared == 10 ? 0 : 1;
}
