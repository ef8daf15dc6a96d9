/* metrics.c: ratetrack metrics: the Prometheus text exposition of a tracker
 * (rt_metrics_text), printed once or served over a tiny HTTP/1.1 server:
 * single-threaded, one connection at a time, closed after each response. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

#define REQUEST_MAX 8192
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static const char metrics_help[] =
    "usage: ratetrack metrics [--backend URI] [--listen [ADDR:]PORT [--listen-any]]\n"
    "                         [--tier T] [--config FILE]\n"
    "\n"
    "The tracker's usage in the Prometheus text exposition format (0.0.4):\n"
    "ratetrack_window_usage, _limit and _remaining per model and window,\n"
    "ratetrack_blocked_seconds, ratetrack_backend_up, ... (see rt_metrics_text in\n"
    "ratetrack.h). Without --listen: printed once on stdout.\n"
    "\n"
    "  --listen [ADDR:]PORT  serve GET /metrics over HTTP on ADDR (default\n"
    "                  127.0.0.1; [::1]:PORT for IPv6) until SIGINT or SIGTERM;\n"
    "                  any other path is 404. PORT 0 picks a free port. The address\n"
    "                  served is printed on stderr: \"listening on http://ADDR:PORT/metrics\"\n"
    "  --listen-any    allow an address that is not loopback (0.0.0.0, a LAN address):\n"
    "                  the metrics name your models and limits, and nothing here\n"
    "                  authenticates; prefer a loopback address behind a proxy\n"
    "  --backend, --tier, --config: as for ratetrack stats\n"
    "\n"
    "The counters ratetrack_admitted_total and ratetrack_refused_total count this\n"
    "process's decisions: served from here they stay 0. Have each agent serve its\n"
    "own (rt_metrics_text) for those; the windows, limits and blocks of a shared\n"
    "backend (shm:, redis://) are the same from any process.\n"
    "\n"
    "Exit: 0 done (or stopped by a signal), 1 failed (cannot open the backend,\n"
    "cannot listen), 64 usage error (also: a non-loopback address without\n"
    "--listen-any).\n";

/* Splits "ADDR:PORT", "[V6]:PORT" or "PORT" and resolves it numerically. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                        char *shown, size_t shown_size) {
  char host[256];
  const char *port;
  struct addrinfo hints, *res = NULL;
  uint64_t port_num;
  const char *colon = strrchr(spec, ':');
  if (colon == NULL) {
    snprintf(host, sizeof host, "127.0.0.1");
    port = spec;
  } else {
    size_t n = (size_t)(colon - spec);
    if (n >= sizeof host) return 0;
    if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') {
      memcpy(host, spec + 1, n - 2);
      host[n - 2] = '\0';
    } else {
      memcpy(host, spec, n);
      host[n] = '\0';
      if (strchr(host, ':') != NULL) return 0; /* IPv6 needs brackets */
    }
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    port = colon + 1;
  }
  if (!cli_parse_u64(port, &port_num) || port_num > 65535) return 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) return 0;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  snprintf(shown, shown_size, strchr(host, ':') ? "[%s]" : "%s", host);
  return 1;
}

static int is_loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return 0;
}

static void send_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* the client went away: nothing more to do */
    data += n;
    len -= (size_t)n;
  }
}

static void respond(int fd, const char *status, const char *type, const char *body, int head) {
  char header[256];
  size_t len = strlen(body);
  int n = snprintf(header, sizeof header,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   status, type, len);
  send_all(fd, header, (size_t)n);
  if (!head) send_all(fd, body, len);
}

/* Reads one request (up to its blank line) and answers it. */
static void serve_one(int fd, rt_tracker *t) {
  char req[REQUEST_MAX + 1], method[16], target[1024];
  size_t len = 0;
  struct timeval tv = {5, 0}; /* a silent client does not hold the server longer */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  while (len < REQUEST_MAX) {
    ssize_t n = recv(fd, req + len, REQUEST_MAX - len, 0);
    if (n < 0 && errno == EINTR && !cli_stop) continue;
    if (n <= 0) break;
    len += (size_t)n;
    req[len] = '\0';
    if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL) break;
  }
  req[len] = '\0';
  if (len == 0) return;
  if (sscanf(req, "%15s %1023s HTTP/1.%*c", method, target) != 2) {
    respond(fd, "400 Bad Request", "text/plain", "bad request\n", 0);
    return;
  }
  {
    char *query = strchr(target, '?');
    int head = strcmp(method, "HEAD") == 0;
    if (query != NULL) *query = '\0';
    if ((strcmp(method, "GET") == 0 || head) && strcmp(target, "/metrics") == 0) {
      char *text = NULL;
      int status = rt_metrics_text(t, &text);
      if (status == RT_OK) {
        respond(fd, "200 OK", CONTENT_TYPE, text, head);
      } else {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s\n", rt_status_string(status), rt_last_error());
        respond(fd, "500 Internal Server Error", "text/plain", msg, head);
      }
      rt_free(text);
    } else {
      respond(fd, "404 Not Found", "text/plain", "not found: the metrics are at /metrics\n", head);
    }
  }
}

static int serve(rt_tracker *t, const char *spec, struct sockaddr_storage ss, socklen_t len,
                 const char *shown) {
  int fd, one = 1, port;
  fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    fprintf(stderr, "ratetrack: cannot listen on %s: %s\n", spec, strerror(errno));
    if (fd >= 0) close(fd);
    rt_close(t);
    return EXIT_FAILED;
  }
  port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                       : ((struct sockaddr_in6 *)&ss)->sin6_port);
  fprintf(stderr, "ratetrack: listening on http://%s:%d/metrics\n", shown, port);
  fflush(stderr);
  while (!cli_stop) {
    struct pollfd p;
    int c;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 1000) <= 0) continue; /* timeout, or EINTR: check cli_stop */
    c = accept(fd, NULL, NULL);
    if (c < 0) continue;
    serve_one(c, t);
    close(c);
  }
  close(fd);
  rt_close(t);
  fprintf(stderr, "ratetrack: stopped\n");
  return EXIT_DONE;
}

static int run_metrics(int argc, char **argv) {
  cli_tracker_opts o = {0};
  const char *listen_spec = NULL;
  int any = 0, i, status;
  rt_tracker *t;
  char *text = NULL, shown[300];
  cli_open_info info;
  struct sockaddr_storage ss;
  socklen_t len = 0;

  for (i = 1; i < argc; i++) {
    int r = cli_tracker_option(argc, argv, &i, &o);
    if (r == 0) r = cli_option(argc, argv, &i, "--listen", &listen_spec);
    if (r < 0) return cli_usage_error(&cli_cmd_metrics, "%s needs a value", argv[i]);
    if (r > 0) continue;
    if (strcmp(argv[i], "--listen-any") == 0) any = 1;
    else return cli_usage_error(&cli_cmd_metrics, "unexpected argument '%s'", argv[i]);
  }
  if (any && listen_spec == NULL) return cli_usage_error(&cli_cmd_metrics, "--listen-any needs --listen");
  if (listen_spec != NULL) {
    if (!parse_listen(listen_spec, &ss, &len, shown, sizeof shown)) {
      return cli_usage_error(&cli_cmd_metrics,
                             "--listen: want [ADDR:]PORT with a numeric address, not '%s'",
                             listen_spec);
    }
    if (!any && !is_loopback(&ss)) {
      return cli_usage_error(&cli_cmd_metrics,
                             "--listen %s is not a loopback address: add --listen-any to serve it",
                             listen_spec);
    }
  }
  status = cli_open(&o, CLI_OPEN_VIEW, &t, &info);
  if (status != RT_OK) return EXIT_FAILED;
  if (info.memory) {
    fprintf(stderr, "ratetrack: note: the in-process backend: this process's usage only (none); "
                    "give --backend or RATETRACK_BACKEND\n");
  }
  if (listen_spec != NULL) {
    cli_catch_stop_signals();
    return serve(t, listen_spec, ss, len, shown);
  }
  status = rt_metrics_text(t, &text);
  if (status == RT_OK) fputs(text, stdout);
  else cli_report("metrics", status);
  rt_free(text);
  rt_close(t);
  return status == RT_OK ? EXIT_DONE : EXIT_FAILED;
}

const cli_command cli_cmd_metrics = {"metrics", "Prometheus metrics, printed or served over HTTP",
                                     metrics_help, run_metrics};
