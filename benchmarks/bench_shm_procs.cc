// rt_try_acquire on the shared-memory backend with PROCESSES (fork), next to
// the same loop in-process and a mutex-guarded token bucket, in one run.
// Google Benchmark only runs threads, so this is a plain program.
//
//   build/benchmarks/bench_shm_procs [calls_per_worker]   (default 1000000)
//   scripts/bench.sh core   (runs it after the core table)
//
// Every worker (a thread, or a forked process that opens the segment by name
// itself, as an unrelated process would) makes N calls; the workers of a case
// are released together (an atomic flag, or EOF on a pipe) after a warm-up,
// and each reports its start and end (CLOCK_MONOTONIC, host-wide) and its
// CPU time back: a forked one through a pipe. A 1-thread case runs on the
// main thread (as Google Benchmark does). A case's figure is the median of 5
// rounds, the cases interleaved within each round. Columns:
//   ns/call  each worker's elapsed time / its N calls (mean over workers):
//            the cost of one call as a caller sees it;
//   cpu      the same with the worker's CPU time (CLOCK_THREAD_CPUTIME_ID):
//            leaves out time the worker was not running (a loaded host);
//   wall     (last end - first start) / all calls: the inverse of throughput.
// Ratios ("x") are to the in-process ("memory") tracker, 1 thread, in the
// same column. Figures, not tests: nothing here fails on a slow machine (only
// on a call that was not admitted, which would make the figures meaningless).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ratetrack.h"
#include "reference.h"

namespace {

using ratetrack_bench::MutexBucket;

using ratetrack_bench::kLimits;

constexpr int kRounds = 5;
constexpr const char* kModels[2] = {"bench/m0", "bench/m1"};

// This run's segment, ratetrack.bench-<pid>: removed at exit and on
// SIGINT/SIGTERM/SIGHUP. Forked workers leave with _exit (no atexit).
char g_shm_name[32];
char g_shm_path[64];
std::string g_shm_config;

void RemoveShmAtExit() { rt_shm_remove(g_shm_name); }

void RemoveShmOnSignal(int sig) {
  unlink(g_shm_path);
  signal(sig, SIG_DFL);
  raise(sig);
}

int64_t NowNs(clockid_t clock = CLOCK_MONOTONIC) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// What a worker reports (through a pipe when it is a process).
struct Report {
  int64_t start_ns = 0, end_ns = 0;
  int64_t cpu_ns = 0;     // CPU time of the timed loop
  uint64_t failures = 0;  // calls that did not return RT_OK / true
};

// A worker: sets itself up, calls wait_start(), then makes n timed calls.
using Worker = std::function<Report(int index, uint64_t n, const std::function<void()>& wait_start)>;

Report TimedTracker(rt_tracker* t, const char* model, uint64_t n,
                    const std::function<void()>& wait_start) {
  Report r;
  for (uint64_t i = 0; i < n / 20; ++i) rt_try_acquire(t, model, 100, nullptr);  // warm-up
  wait_start();
  const int64_t cpu0 = NowNs(CLOCK_THREAD_CPUTIME_ID);
  r.start_ns = NowNs();
  for (uint64_t i = 0; i < n; ++i) r.failures += rt_try_acquire(t, model, 100, nullptr) != RT_OK;
  r.end_ns = NowNs();
  r.cpu_ns = NowNs(CLOCK_THREAD_CPUTIME_ID) - cpu0;
  return r;
}

Report TimedBucket(MutexBucket* b, uint64_t n, const std::function<void()>& wait_start) {
  Report r;
  for (uint64_t i = 0; i < n / 20; ++i) b->TryTake(1);
  wait_start();
  const int64_t cpu0 = NowNs(CLOCK_THREAD_CPUTIME_ID);
  r.start_ns = NowNs();
  for (uint64_t i = 0; i < n; ++i) r.failures += !b->TryTake(1);
  r.end_ns = NowNs();
  r.cpu_ns = NowNs(CLOCK_THREAD_CPUTIME_ID) - cpu0;
  return r;
}

std::vector<Report> RunThreads(int workers, uint64_t n, const Worker& worker) {
  if (workers == 1) return {worker(0, n, [] {})};
  std::vector<Report> reports(workers);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  auto wait_start = [&] {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] { reports[i] = worker(i, n, wait_start); });
  }
  while (ready.load() < workers) std::this_thread::yield();
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  return reports;
}

bool ReadAll(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    const ssize_t k = read(fd, p, len);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    len -= static_cast<size_t>(k);
  }
  return true;
}

bool WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    const ssize_t k = write(fd, p, len);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    len -= static_cast<size_t>(k);
  }
  return true;
}

// Forks `workers` processes. Each writes a byte to `ready` once set up and
// blocks reading `go`; closing go's write end releases them all at once.
// Each sends its Report through `results` (one write, < PIPE_BUF: atomic).
std::vector<Report> RunProcesses(int workers, uint64_t n, const Worker& worker) {
  int ready[2], go[2], results[2];
  if (pipe(ready) != 0 || pipe(go) != 0 || pipe(results) != 0) {
    perror("pipe");
    exit(2);
  }
  std::vector<pid_t> pids;
  for (int i = 0; i < workers; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      exit(2);
    }
    if (pid == 0) {
      close(ready[0]);
      close(go[1]);
      close(results[0]);
      auto wait_start = [&] {
        const char c = 1;
        char x;
        WriteAll(ready[1], &c, 1);
        while (read(go[0], &x, 1) < 0 && errno == EINTR) {
        }  // returns 0 (EOF) when the parent closes go[1]
      };
      const Report r = worker(i, n, wait_start);
      _exit(WriteAll(results[1], &r, sizeof r) ? 0 : 3);
    }
    pids.push_back(pid);
  }
  close(ready[1]);
  close(go[0]);
  close(results[1]);
  std::vector<char> bytes(workers);
  bool ok = ReadAll(ready[0], bytes.data(), bytes.size());
  close(go[1]);  // start
  std::vector<Report> reports(workers);
  for (int i = 0; ok && i < workers; ++i) ok = ReadAll(results[0], &reports[i], sizeof(Report));
  for (pid_t pid : pids) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  close(ready[0]);
  close(results[0]);
  if (!ok) {
    fprintf(stderr, "bench_shm_procs: a worker process failed\n");
    exit(2);
  }
  return reports;
}

struct Case {
  std::string name;
  int workers;
  bool processes;
  Worker worker;
  std::vector<double> per_call, cpu, wall;  // one per round
  uint64_t failures = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t n = argc > 1 ? strtoull(argv[1], nullptr, 10) : 1000000;
  if (n == 0) {
    fprintf(stderr, "usage: %s [calls_per_worker > 0]\n", argv[0]);
    return 2;
  }

  rt_tracker* memory = rt_open(("{" + std::string(kLimits) + "}").c_str());
  if (memory == nullptr) {
    fprintf(stderr, "rt_open(memory): %s\n", rt_last_error());
    return 2;
  }
  snprintf(g_shm_name, sizeof g_shm_name, "bench-%ld", static_cast<long>(getpid()));
  snprintf(g_shm_path, sizeof g_shm_path, "/dev/shm/ratetrack.%s", g_shm_name);
  g_shm_config = std::string("{\"backend\": \"shm:") + g_shm_name + "\", " + kLimits + "}";
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, &RemoveShmOnSignal);
  // Created here, before any fork; the workers open it by name.
  rt_tracker* shm = rt_open(g_shm_config.c_str());
  atexit(&RemoveShmAtExit);  // even on failure: rt_open may have created it
  if (shm == nullptr) {
    fprintf(stderr, "rt_open(%s): %s\n", g_shm_config.c_str(), rt_last_error());
    return 2;
  }
  MutexBucket bucket(1e12, 1e12);

  auto on_tracker = [](rt_tracker* t, bool separate) -> Worker {
    return [t, separate](int i, uint64_t n, const std::function<void()>& wait_start) {
      return TimedTracker(t, kModels[separate ? i % 2 : 0], n, wait_start);
    };
  };
  // A process of its own: opens the segment by name, as an unrelated one would.
  auto on_own_shm = [](bool separate) -> Worker {
    return [separate](int i, uint64_t n, const std::function<void()>& wait_start) {
      rt_tracker* t = rt_open(g_shm_config.c_str());
      if (t == nullptr) {
        fprintf(stderr, "worker rt_open: %s\n", rt_last_error());
        wait_start();
        Report r;
        r.failures = n;
        return r;
      }
      Report r = TimedTracker(t, kModels[separate ? i % 2 : 0], n, wait_start);
      rt_close(t);
      return r;
    };
  };
  auto on_bucket = [&bucket](int, uint64_t n, const std::function<void()>& wait_start) {
    return TimedBucket(&bucket, n, wait_start);
  };

  std::vector<Case> cases = {
      {"reference mutex bucket, 1 thread", 1, false, on_bucket},
      {"reference mutex bucket, 2 threads, one bucket", 2, false, on_bucket},
      {"memory, 1 thread", 1, false, on_tracker(memory, false)},
      {"memory, 2 threads, one model", 2, false, on_tracker(memory, false)},
      {"memory, 2 threads, two models", 2, false, on_tracker(memory, true)},
      {"shm, 1 thread (this process's tracker)", 1, false, on_tracker(shm, false)},
      {"shm, 1 process", 1, true, on_own_shm(false)},
      {"shm, 2 processes, one model", 2, true, on_own_shm(false)},
      {"shm, 2 processes, two models", 2, true, on_own_shm(true)},
      {"shm, 1 process, 2 threads, one model", 2, false, on_tracker(shm, false)},
  };
  const size_t baseline = 2;  // memory, 1 thread

  for (int round = 0; round < kRounds; ++round) {
    for (Case& c : cases) {
      const std::vector<Report> reports = c.processes ? RunProcesses(c.workers, n, c.worker)
                                                      : RunThreads(c.workers, n, c.worker);
      double sum = 0, cpu = 0;
      int64_t first = INT64_MAX, last = INT64_MIN;
      for (const Report& r : reports) {
        sum += static_cast<double>(r.end_ns - r.start_ns) / static_cast<double>(n);
        cpu += static_cast<double>(r.cpu_ns) / static_cast<double>(n);
        first = std::min(first, r.start_ns);
        last = std::max(last, r.end_ns);
        c.failures += r.failures;
      }
      c.per_call.push_back(sum / c.workers);
      c.cpu.push_back(cpu / c.workers);
      c.wall.push_back(static_cast<double>(last - first) / static_cast<double>(n * c.workers));
    }
  }

  const double base = Median(cases[baseline].per_call);
  const double base_cpu = Median(cases[baseline].cpu);
  const double base_wall = Median(cases[baseline].wall);
  printf("\n%-46s %8s %6s %8s %6s %8s %6s\n", "rt_try_acquire, median of 5 rounds",
         "ns/call", "x", "cpu ns", "x", "wall ns", "x");
  bool failed = false;
  for (const Case& c : cases) {
    const double p = Median(c.per_call), u = Median(c.cpu), w = Median(c.wall);
    printf("%-46s %8.1f %6.2f %8.1f %6.2f %8.1f %6.2f%s\n", c.name.c_str(), p, p / base, u,
           u / base_cpu, w, w / base_wall, c.failures ? "  (calls not admitted!)" : "");
    failed = failed || c.failures != 0;
  }
  printf("(%llu calls per worker per round. ns/call: elapsed per call of one worker; cpu: its\n"
         " CPU time per call; wall: elapsed / all calls of the case. x: / \"memory, 1 thread\".)\n",
         static_cast<unsigned long long>(n));
  rt_close(shm);
  rt_close(memory);
  return failed ? 1 : 0;
}
