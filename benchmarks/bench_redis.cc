// rt_try_acquire on the Redis backend under load: P processes x T threads
// against one Redis server (or a Redis Cluster: redis+cluster://), printing
// throughput and latency percentiles. With --raw-incr, the same harness
// makes one plain INCR per call through hiredis instead (one connection per
// thread; one server only): the in-program reference.
//
//   build/benchmarks/bench_redis --url redis://127.0.0.1:PORT[/DB][?...]
//       [--processes P] [--threads T] [--seconds S] [--models N] [--raw-incr] [--csv]
//   build/benchmarks/bench_redis --url redis+cluster://127.0.0.1:PORT[,...][?...] ...
//   scripts/bench-redis.sh   (runs it next to redis-benchmark INCR;
//                             RT_BENCH_CLUSTER=1: on clusters of 1 and 3 masters)
//
// Every process is forked from this one and opens its own tracker (or its
// own connections), warms up, then waits on a pipe; once every process is
// ready the parent closes the pipe and all threads of all processes start
// together. Each thread times every call (CLOCK_MONOTONIC) into a log-linear
// histogram of nanoseconds (under 1% relative error), runs S seconds, and its
// process sends counts and the merged histogram to the parent through a pipe.
// The parent prints total calls per second (all calls / (last end - first
// start)), p50, p99 and p99.9 in microseconds, and the errors: any status but
// RT_OK (or an INCR error reply). Every model has the same four huge limits,
// so nothing is refused. A URL without '?' gets "?prefix=rtbench&timeout_ms=
// 50&on_error=closed": a failing Redis shows as errors, not as local fallback.
//
// --models N (default 1: one model, "bench/m", every call of every thread):
// N models "bench-0" to "bench-<N-1>", and every thread goes round them, one
// model a call, starting at its global index (process x T + thread) so that
// the threads are spread over the models from the first call. That is "many
// models" as a gateway or a fleet of agents sees them: any thread may decide
// on any model, and all N models (so, in a cluster, every master serving one
// of their slots) are busy at once whatever the number of threads. Pinning a
// model to each thread instead would use only min(N, P x T) models (8 of 64
// at 1 x 8), spread over the masters by the luck of their slots. Consecutive
// calls of a thread are never on one model, so its decisions merge with
// another thread's only when two land on one model in one batch.
// Figures, not tests: the exit status is non-zero only if a process failed
// outright or there were errors.
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "ratetrack.h"

namespace {

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Log-linear histogram: exact below 256 ns, then 128 sub-buckets per power of
// two (HDR-style, < 0.8% relative error).
constexpr int kSub = 128;
constexpr int kBuckets = 57 * kSub;

int BucketOf(uint64_t v) {
  if (v < 2 * kSub) return static_cast<int>(v);
  const int msb = 63 - __builtin_clzll(v);
  const int shift = msb - 7;
  return (shift + 1) * kSub + static_cast<int>((v >> shift) - kSub);
}

double ValueOf(int b) {  // the middle of bucket b, in ns
  if (b < 2 * kSub) return b;
  const int shift = b / kSub - 1;
  const uint64_t m = static_cast<uint64_t>(b % kSub + kSub);
  return static_cast<double>(m << shift) + static_cast<double>(uint64_t{1} << shift) / 2;
}

struct Summary {
  uint64_t calls = 0, errors = 0;
  int64_t start_ns = 0, end_ns = 0;
};

struct Options {
  std::string url;
  std::string host = "127.0.0.1";
  int port = 6379;
  int processes = 1, threads = 1;
  int models = 1;
  double seconds = 3;
  bool raw_incr = false, csv = false;
};

bool WriteAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The model names: "bench/m" alone (--models 1), else "bench-0" to
// "bench-<N-1>".
std::vector<std::string> ModelNames(int n) {
  if (n == 1) return {"bench/m"};
  std::vector<std::string> names;
  for (int k = 0; k < n; ++k) names.push_back("bench-" + std::to_string(k));
  return names;
}

// One call of the measured kind. Returns true on success.
struct Caller {
  rt_tracker* t = nullptr;   // try_acquire mode
  redisContext* c = nullptr;  // --raw-incr mode
  const std::vector<std::string>* models = nullptr;
  size_t next = 0;  // the model of the next call (round-robin)
  bool Call() {
    if (t != nullptr) {
      const char* model = (*models)[next].c_str();
      if (++next == models->size()) next = 0;
      return rt_try_acquire(t, model, 100, nullptr) == RT_OK;
    }
    redisReply* r = static_cast<redisReply*>(redisCommand(c, "INCR rtbench:incr"));
    const bool ok = r != nullptr && r->type == REDIS_REPLY_INTEGER;
    if (r != nullptr) freeReplyObject(r);
    return ok;
  }
};

// A forked process (the index-th): T threads; reports a Summary and the
// histogram on out_fd.
int RunProcess(const Options& o, int index, int ready_fd, int start_fd, int out_fd) {
  rt_tracker* tracker = nullptr;
  const std::vector<std::string> models = ModelNames(o.models);
  if (!o.raw_incr) {
    // Every model with the same four huge limits.
    std::string limits;
    for (const std::string& m : models) {
      limits += std::string(limits.empty() ? "" : ", ") + "\"" + m +
                "\": {\"rpm\": 1000000000, \"tpm\": 1000000000000, \"rpd\": 1000000000000, "
                "\"tpd\": 1000000000000}";
    }
    std::string config = "{\"backend\": \"" + o.url +
                         "\", \"builtin_tiers\": false, \"limits\": {" + limits + "}}";
    tracker = rt_open(config.c_str());
    if (tracker == nullptr) {
      fprintf(stderr, "bench_redis: rt_open: %s\n", rt_last_error());
      return 1;
    }
  }
  const int T = o.threads;
  std::vector<std::vector<uint64_t>> hist(T, std::vector<uint64_t>(kBuckets, 0));
  std::vector<Summary> sums(T);
  std::atomic<int> ready{0}, failed{0};
  std::atomic<bool> go{false};
  std::atomic<int64_t> deadline{0};
  std::atomic<bool> reported{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < T; ++i) {
    threads.emplace_back([&, i] {
      Caller call;
      if (tracker != nullptr) {
        call.t = tracker;
        call.models = &models;
        call.next = static_cast<size_t>(index * T + i) % models.size();
      } else {
        struct timeval tv = {2, 0};
        call.c = redisConnectWithTimeout(o.host.c_str(), o.port, tv);
        if (call.c == nullptr || call.c->err) {
          fprintf(stderr, "bench_redis: connect: %s\n", call.c ? call.c->errstr : "no memory");
          failed.fetch_add(1);
          ready.fetch_add(1);
          return;
        }
      }
      // Warm-up: connections, script load, the models' state.
      const int64_t warm_end = NowNs() + 200000000;
      for (int k = 0; k < 50 || NowNs() < warm_end; ++k) call.Call();
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(20));
      const int64_t end = deadline.load();
      Summary& s = sums[i];
      uint64_t* h = hist[i].data();
      s.start_ns = NowNs();
      int64_t t0 = s.start_ns, t1 = t0;
      while (t1 < end) {
        const bool ok = call.Call();
        t1 = NowNs();
        ++h[BucketOf(static_cast<uint64_t>(t1 - t0))];
        ++s.calls;
        if (!ok) {
          ++s.errors;
          if (tracker != nullptr && !reported.exchange(true)) {
            fprintf(stderr, "bench_redis: first error: %s\n", rt_last_error());
          }
        }
        t0 = t1;
      }
      s.end_ns = t1;
      if (call.c != nullptr) redisFree(call.c);
    });
  }
  while (ready.load() < T) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  char byte = failed.load() ? 'x' : 'r';
  WriteAll(ready_fd, &byte, 1);
  close(ready_fd);
  char c;
  while (read(start_fd, &c, 1) > 0) {
  }  // EOF: every process is ready; go
  deadline.store(NowNs() + static_cast<int64_t>(o.seconds * 1e9));
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  Summary total;
  total.start_ns = INT64_MAX;
  std::vector<uint64_t> merged(kBuckets, 0);
  for (int i = 0; i < T; ++i) {
    total.calls += sums[i].calls;
    total.errors += sums[i].errors;
    if (sums[i].calls == 0) continue;
    total.start_ns = std::min(total.start_ns, sums[i].start_ns);
    total.end_ns = std::max(total.end_ns, sums[i].end_ns);
    for (int b = 0; b < kBuckets; ++b) merged[b] += hist[i][b];
  }
  bool ok = WriteAll(out_fd, &total, sizeof total) &&
            WriteAll(out_fd, merged.data(), merged.size() * sizeof(uint64_t));
  if (tracker != nullptr) rt_close(tracker);
  return ok && !failed.load() ? 0 : 1;
}

void Usage() {
  fprintf(stderr,
          "usage: bench_redis --url redis[s]://HOST:PORT[/DB][?...] [--processes P] [--threads T]"
          " [--seconds S] [--models N] [--raw-incr] [--csv]\n"
          "       bench_redis --url redis[s]+cluster://HOST:PORT[,HOST:PORT...][?...] ...\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) Usage();
      return argv[++i];
    };
    if (a == "--url") o.url = next();
    else if (a == "--processes" || a == "-p") o.processes = atoi(next());
    else if (a == "--threads" || a == "-t") o.threads = atoi(next());
    else if (a == "--seconds" || a == "-s") o.seconds = atof(next());
    else if (a == "--models" || a == "-m") o.models = atoi(next());
    else if (a == "--raw-incr") o.raw_incr = true;
    else if (a == "--csv") o.csv = true;
    else Usage();
  }
  const bool tls = o.url.rfind("rediss://", 0) == 0;
  const bool cluster =
      o.url.rfind("redis+cluster://", 0) == 0 || o.url.rfind("rediss+cluster://", 0) == 0;
  if ((o.url.rfind("redis://", 0) != 0 && !tls && !cluster) ||
      ((tls || cluster) && o.raw_incr) || o.processes < 1 || o.threads < 1 || o.seconds <= 0 ||
      o.models < 1 || o.models > RT_MAX_MODELS) {
    Usage();  // (--raw-incr is plain text to one server only)
  }
  if (!cluster) {  // host and port for --raw-incr (no credentials: a local server)
    std::string hp = o.url.substr(tls ? 9 : 8);
    hp = hp.substr(0, hp.find_first_of("/?"));
    if (size_t at = hp.rfind('@'); at != std::string::npos) hp = hp.substr(at + 1);
    if (size_t colon = hp.rfind(':'); colon != std::string::npos) {
      o.port = atoi(hp.c_str() + colon + 1);
      hp = hp.substr(0, colon);
    }
    o.host = hp;
  }
  if (o.url.find('?') == std::string::npos) o.url += "?prefix=rtbench&timeout_ms=50&on_error=closed";

  int start_pipe[2];
  if (pipe(start_pipe) != 0) return perror("pipe"), 1;
  struct Child {
    pid_t pid;
    int ready_fd, out_fd;
  };
  std::vector<Child> children;
  for (int p = 0; p < o.processes; ++p) {
    int ready[2], out[2];
    if (pipe(ready) != 0 || pipe(out) != 0) return perror("pipe"), 1;
    fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) return perror("fork"), 1;
    if (pid == 0) {
      close(start_pipe[1]);
      close(ready[0]);
      close(out[0]);
      for (const Child& c : children) {
        close(c.ready_fd);
        close(c.out_fd);
      }
      _exit(RunProcess(o, p, ready[1], start_pipe[0], out[1]));
    }
    close(ready[1]);
    close(out[1]);
    children.push_back({pid, ready[0], out[0]});
  }
  close(start_pipe[0]);
  bool ok = true;
  for (const Child& c : children) {
    char b = 0;
    if (!ReadAll(c.ready_fd, &b, 1) || b != 'r') ok = false;
    close(c.ready_fd);
  }
  close(start_pipe[1]);  // go
  Summary total;
  total.start_ns = INT64_MAX;
  std::vector<uint64_t> hist(kBuckets, 0), h(kBuckets);
  for (const Child& c : children) {
    Summary s;
    if (!ReadAll(c.out_fd, &s, sizeof s) || !ReadAll(c.out_fd, h.data(), h.size() * sizeof(uint64_t))) {
      ok = false;
    } else {
      total.calls += s.calls;
      total.errors += s.errors;
      if (s.calls > 0) {
        total.start_ns = std::min(total.start_ns, s.start_ns);
        total.end_ns = std::max(total.end_ns, s.end_ns);
      }
      for (int b = 0; b < kBuckets; ++b) hist[b] += h[b];
    }
    close(c.out_fd);
  }
  for (const Child& c : children) {
    int st = 0;
    waitpid(c.pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = false;
  }
  if (total.calls == 0) {
    fprintf(stderr, "bench_redis: no calls made\n");
    return 1;
  }
  auto pct = [&](double q) {
    const uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total.calls) + 0.999999);
    uint64_t cum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      cum += hist[b];
      if (cum >= rank && hist[b] > 0) return ValueOf(b) / 1000.0;
    }
    return 0.0;
  };
  const double secs = static_cast<double>(total.end_ns - total.start_ns) / 1e9;
  const double ops = static_cast<double>(total.calls) / secs;
  const char* what = o.raw_incr ? "raw-incr" : "try_acquire";
  if (o.csv) {
    printf("%s,%d,%d,%.0f,%.1f,%.1f,%.1f,%llu,%llu\n", what, o.processes, o.threads, ops, pct(0.5),
           pct(0.99), pct(0.999), static_cast<unsigned long long>(total.calls),
           static_cast<unsigned long long>(total.errors));
  } else {
    const std::string models = o.models > 1 ? ", " + std::to_string(o.models) + " models" : "";
    printf("%s: %d processes x %d threads%s, %.2f s: %llu calls, %llu errors\n", what,
           o.processes, o.threads, models.c_str(), secs,
           static_cast<unsigned long long>(total.calls),
           static_cast<unsigned long long>(total.errors));
    printf("  %.0f calls/s   p50 %.1f us   p99 %.1f us   p99.9 %.1f us\n", ops, pct(0.5), pct(0.99),
           pct(0.999));
  }
  return ok && total.errors == 0 ? 0 : 1;
}
