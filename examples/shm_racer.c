/* A racer for the "shm:NAME" backend: opens a private tracker on the shared
 * segment NAME with a limit of LIMIT requests per hour for MODEL, waits for
 * START_FILE (if given) so that racers in other processes start together,
 * then calls rt_try_acquire(MODEL, 1) ATTEMPTS times as fast as it can and
 * prints how many were admitted. Racers in any language that share NAME
 * share one budget: together they are admitted exactly LIMIT times.
 *
 *   shm_racer NAME MODEL LIMIT ATTEMPTS [START_FILE]
 *   cc shm_racer.c $(pkg-config --cflags --libs ratetrack)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ratetrack.h"

static int parse_u64(const char *s, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  if (s[0] < '0' || s[0] > '9') return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *out = (uint64_t)v;
  return 0;
}

/* Appends s to buf as a JSON string (quotes included). */
static void json_string(char *buf, size_t size, const char *s) {
  size_t n = strlen(buf);
  if (n + 1 < size) buf[n++] = '"';
  for (; *s && n + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[n++] = '\\';
      buf[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(buf + n, size - n, "\\u%04x", c);
    } else {
      buf[n++] = (char)c;
    }
  }
  if (n + 1 < size) buf[n++] = '"';
  buf[n] = '\0';
}

/* Waits until path exists: polls every millisecond, for at most 30 s. */
static int wait_for_file(const char *path) {
  const struct timespec ms = {0, 1000000};
  for (int i = 0; i < 30000; i++) {
    if (access(path, F_OK) == 0) return 0;
    nanosleep(&ms, NULL);
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s NAME MODEL LIMIT ATTEMPTS [START_FILE]\n", argv[0]);
    return 2;
  }
  const char *name = argv[1], *model = argv[2];
  uint64_t limit, attempts;
  if (parse_u64(argv[3], &limit) != 0 || parse_u64(argv[4], &attempts) != 0) {
    fprintf(stderr, "shm_racer: LIMIT and ATTEMPTS must be non-negative integers\n");
    return 2;
  }

  char config[1024] = "{\"backend\": ";
  char backend[128];
  snprintf(backend, sizeof backend, "shm:%s", name);
  json_string(config, sizeof config, backend);
  strcat(config, ", \"builtin_tiers\": false, \"limits\": {");
  json_string(config, sizeof config, model);
  size_t used = strlen(config);
  snprintf(config + used, sizeof config - used,
           ": {\"windows\": [{\"unit\": \"requests\", \"limit\": %llu, "
           "\"seconds\": 3600}]}}}",
           (unsigned long long)limit);

  rt_tracker *t = NULL;
  int rc = rt_open_ex(config, &t);
  if (rc != RT_OK) {
    fprintf(stderr, "shm_racer: rt_open: %s: %s\n", rt_status_string(rc), rt_last_error());
    return 1;
  }
  if (argc == 6 && wait_for_file(argv[5]) != 0) {
    fprintf(stderr, "shm_racer: %s did not appear within 30 s\n", argv[5]);
    rt_close(t);
    return 1;
  }

  uint64_t admitted = 0;
  for (uint64_t i = 0; i < attempts; i++) {
    rc = rt_try_acquire(t, model, 1, NULL);
    if (rc == RT_OK) {
      admitted++;
    } else if (rc != RT_LIMITED) {
      fprintf(stderr, "shm_racer: rt_try_acquire: %s: %s\n", rt_status_string(rc),
              rt_last_error());
      rt_close(t);
      return 1;
    }
  }
  rt_close(t);
  printf("admitted %llu\n", (unsigned long long)admitted);
  return 0;
}
