/* ratetrack: the command-line companion of libratetrack, built on its public
 * C API only.
 *
 *   ratetrack shm list [--json]     the shared-memory segments on this host
 *   ratetrack shm remove NAME       remove a segment
 *   ratetrack version
 *
 * Exit codes: 0 done, 1 failed, 64 usage error (EX_USAGE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratetrack.h"

#define EX_USAGE 64

static int usage(FILE *out, int code) {
  fprintf(out,
          "usage: ratetrack shm list [--json]   list the shared-memory segments\n"
          "       ratetrack shm remove NAME     remove the segment NAME\n"
          "       ratetrack version             print the library version\n"
          "       ratetrack --help\n");
  return code;
}

/* Prints the list as a table, reading the JSON array field by field (the
 * format is documented in ratetrack.h; no JSON library needed). */
static const char *field(const char *obj, const char *key, char *buf, size_t n) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(obj, pat);
  buf[0] = '\0';
  if (p == NULL) return "-";
  p += strlen(pat);
  size_t i = 0;
  if (*p == '"') {
    for (p++; *p && *p != '"' && i + 1 < n; p++) buf[i++] = *p;
  } else {
    for (; *p && *p != ',' && *p != '}' && i + 1 < n; p++) buf[i++] = *p;
  }
  buf[i] = '\0';
  return buf;
}

static int shm_list(int json) {
  char *list = NULL;
  int rc = rt_shm_list(&list);
  if (rc != RT_OK) {
    fprintf(stderr, "ratetrack: %s\n", rt_last_error());
    return 1;
  }
  if (json) {
    printf("%s\n", list);
    rt_free(list);
    return 0;
  }
  printf("%-24s %6s %10s %6s %9s %s\n", "NAME", "MODE", "BYTES", "MODELS", "CAPACITY", "STATE");
  int count = 0;
  for (const char *p = strchr(list, '{'); p != NULL; p = strchr(p + 1, '{')) {
    const char *end = strchr(p, '}');
    char obj[1024];
    size_t len = end ? (size_t)(end - p + 1) : strlen(p);
    if (len >= sizeof obj) len = sizeof obj - 1;
    memcpy(obj, p, len);
    obj[len] = '\0';
    char name[128], mode[16], bytes[32], models[32], cap[32], compat[16];
    field(obj, "name", name, sizeof name);
    field(obj, "compatible", compat, sizeof compat);
    printf("%-24s %6s %10s %6s %9s %s\n", name, field(obj, "mode", mode, sizeof mode),
           field(obj, "bytes", bytes, sizeof bytes), field(obj, "models", models, sizeof models),
           field(obj, "capacity", cap, sizeof cap),
           strcmp(compat, "true") == 0 ? "ok" : "incompatible");
    count++;
  }
  if (count == 0) printf("(no segments)\n");
  rt_free(list);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(stderr, EX_USAGE);
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) return usage(stdout, 0);
  if (strcmp(argv[1], "version") == 0 && argc == 2) {
    printf("ratetrack %s\n", rt_version_string());
    return 0;
  }
  if (strcmp(argv[1], "shm") == 0 && argc >= 3) {
    if (strcmp(argv[2], "list") == 0 && argc <= 4) {
      if (argc == 4 && strcmp(argv[3], "--json") != 0) return usage(stderr, EX_USAGE);
      return shm_list(argc == 4);
    }
    if (strcmp(argv[2], "remove") == 0 && argc == 4) {
      int rc = rt_shm_remove(argv[3]);
      if (rc != RT_OK) {
        fprintf(stderr, "ratetrack: %s\n", rt_last_error());
        return rc == RT_E_INVALID ? EX_USAGE : 1;
      }
      printf("removed %s\n", argv[3]);
      return 0;
    }
  }
  fprintf(stderr, "ratetrack: unknown command\n");
  return usage(stderr, EX_USAGE);
}
