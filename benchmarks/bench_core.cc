// The per-call cost of the C API next to a plain reference in the same run:
// a mutex-guarded single-limit token bucket that reads CLOCK_MONOTONIC per
// call (the simplest one-limit limiter). Compare ratios, not absolutes.
// BM_rt_try_acquire_refused is the same call refused (a model whose day's
// one request is used up), to set next to the admission of the same run.
// BM_rt_try_acquire_shm is the same call on a tracker of the shared-memory
// backend (segment ratetrack.bench-<pid>, removed at exit); with processes
// instead of threads, see bench_shm_procs.cc.
//
//   build/benchmarks/bench_core [--benchmark_filter=...]
//   scripts/bench.sh   (runs this and prints the ratios)
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include "benchmark/benchmark.h"
#include "ratetrack.h"
#include "reference.h"

namespace {

using ratetrack_bench::MutexBucket;

const std::string kConfig = std::string("{") + ratetrack_bench::kLimits + "}";

rt_tracker* Shared() {
  static rt_tracker* t = rt_open(kConfig.c_str());
  return t;
}

// The same limits on the shared-memory backend, in a segment of this run's
// own: ratetrack.bench-<pid>. It is removed at exit (atexit, registered after
// rt_open so it runs before the library's own exit-time teardown) and on
// SIGINT/SIGTERM/SIGHUP (unlink(2) of the path: async-signal-safe).
char g_shm_name[32];
char g_shm_path[64];
std::string g_shm_error;  // rt_last_error() of a failed rt_open

void RemoveShmAtExit() { rt_shm_remove(g_shm_name); }

void RemoveShmOnSignal(int sig) {
  unlink(g_shm_path);
  signal(sig, SIG_DFL);
  raise(sig);
}

rt_tracker* OpenShm() {
  snprintf(g_shm_name, sizeof g_shm_name, "bench-%ld", static_cast<long>(getpid()));
  snprintf(g_shm_path, sizeof g_shm_path, "/dev/shm/ratetrack.%s", g_shm_name);
  std::string config = kConfig;
  config.insert(1, std::string("\"backend\": \"shm:") + g_shm_name + "\", ");
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, &RemoveShmOnSignal);
  rt_tracker* t = rt_open(config.c_str());
  if (t == nullptr) g_shm_error = std::string("rt_open: ") + rt_last_error();
  atexit(&RemoveShmAtExit);  // even on failure: rt_open may have created it
  return t;
}

rt_tracker* SharedShm() {
  static rt_tracker* t = OpenShm();
  return t;
}

// With `separate`, thread i uses model i % 4 (and bucket i % 4); else all
// use the first.
int Index(const benchmark::State& state, bool separate) {
  return separate ? state.thread_index() % 4 : 0;
}
const char* ModelFor(const benchmark::State& state, bool separate) {
  static const char* const kModels[] = {"bench/m0", "bench/m1", "bench/m2", "bench/m3"};
  return kModels[Index(state, separate)];
}
// Models refused for a day once their one request is used.
const char* FullModelFor(const benchmark::State& state, bool separate) {
  static const char* const kModels[] = {"bench/full0", "bench/full1", "bench/full2",
                                        "bench/full3"};
  return kModels[Index(state, separate)];
}

void BM_Reference_MutexBucket(benchmark::State& state) {
  static MutexBucket buckets[4] = {{1e12, 1e12}, {1e12, 1e12}, {1e12, 1e12}, {1e12, 1e12}};
  MutexBucket& b = buckets[Index(state, state.range(0))];
  for (auto _ : state) benchmark::DoNotOptimize(b.TryTake(1));
}

// The refusal: the model's one request of the day is used (by whichever
// thread comes first), then every call is refused. A call answered
// otherwise would be timed as something else: checked first.
void Refusals(benchmark::State& state, rt_tracker* t) {
  const char* model = FullModelFor(state, state.range(0));
  rt_try_acquire(t, model, 100, nullptr);
  if (int rc = rt_try_acquire(t, model, 100, nullptr); rc != RT_LIMITED) {
    state.SkipWithError(rt_status_string(rc));
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(rt_try_acquire(t, model, 100, nullptr));
  }
}

void BM_rt_try_acquire_refused(benchmark::State& state) { Refusals(state, Shared()); }

void BM_rt_try_acquire_shm_refused(benchmark::State& state) {
  rt_tracker* t = SharedShm();
  if (t == nullptr) {
    state.SkipWithError(g_shm_error.c_str());
    return;
  }
  Refusals(state, t);
}

void BM_rt_try_acquire(benchmark::State& state) {
  rt_tracker* t = Shared();
  const char* model = ModelFor(state, state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(rt_try_acquire(t, model, 100, nullptr));
  }
}

void BM_rt_try_acquire_shm(benchmark::State& state) {
  rt_tracker* t = SharedShm();
  if (t == nullptr) {
    state.SkipWithError(g_shm_error.c_str());
    return;
  }
  const char* model = ModelFor(state, state.range(0));
  // A failing call would be timed as a fast one: check that it admits.
  if (int rc = rt_try_acquire(t, model, 100, nullptr); rc != RT_OK) {
    state.SkipWithError(rt_status_string(rc));
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(rt_try_acquire(t, model, 100, nullptr));
  }
}

void BM_rt_can_make(benchmark::State& state) {
  rt_tracker* t = Shared();
  const char* model = ModelFor(state, state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(rt_can_make(t, model, 100));
}

void BM_rt_record(benchmark::State& state) {
  rt_tracker* t = Shared();
  const char* model = ModelFor(state, state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(rt_record(t, model, 100));
}

void BM_clock_monotonic(benchmark::State& state) {
  struct timespec ts;
  for (auto _ : state) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    benchmark::DoNotOptimize(ts);
  }
}

void BM_clock_monotonic_coarse(benchmark::State& state) {
  struct timespec ts;
  for (auto _ : state) {
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    benchmark::DoNotOptimize(ts);
  }
}

// Arg 0: one model (or bucket) shared by all threads; 1: one per thread.
#define RT_BENCH(fn)                                                  \
  BENCHMARK(fn)->ArgName("separate")->Arg(0)->Threads(1)->UseRealTime(); \
  BENCHMARK(fn)->ArgName("separate")->Arg(0)->Threads(2)->UseRealTime(); \
  BENCHMARK(fn)->ArgName("separate")->Arg(1)->Threads(2)->UseRealTime()
// The same at 4 threads too (admission next to refusal).
#define RT_BENCH4(fn)                                                     \
  RT_BENCH(fn);                                                           \
  BENCHMARK(fn)->ArgName("separate")->Arg(0)->Threads(4)->UseRealTime(); \
  BENCHMARK(fn)->ArgName("separate")->Arg(1)->Threads(4)->UseRealTime()

RT_BENCH4(BM_Reference_MutexBucket);
RT_BENCH4(BM_rt_try_acquire);
RT_BENCH4(BM_rt_try_acquire_refused);
RT_BENCH4(BM_rt_try_acquire_shm);
RT_BENCH4(BM_rt_try_acquire_shm_refused);
RT_BENCH(BM_rt_can_make);
RT_BENCH(BM_rt_record);
BENCHMARK(BM_clock_monotonic);
BENCHMARK(BM_clock_monotonic_coarse);

}  // namespace

BENCHMARK_MAIN();
