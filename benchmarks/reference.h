// What the benchmarks measure against, shared by every benchmark program.
#ifndef RATETRACK_BENCHMARKS_REFERENCE_H_
#define RATETRACK_BENCHMARKS_REFERENCE_H_

#include <time.h>

#include <cstdint>
#include <mutex>

namespace ratetrack_bench {

// The reference: the simplest one-limit limiter, a token bucket behind one
// mutex that reads CLOCK_MONOTONIC per call.
class MutexBucket {
 public:
  MutexBucket(double rate_per_s, double burst) : rate_(rate_per_s), burst_(burst) {}
  bool TryTake(double n) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
    std::lock_guard<std::mutex> l(mu_);
    tokens_ += static_cast<double>(now - last_) * rate_ * 1e-9;
    if (tokens_ > burst_) tokens_ = burst_;
    last_ = now;
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

 private:
  std::mutex mu_;
  const double rate_, burst_;
  double tokens_ = 0;
  int64_t last_ = 0;
};

// The inside of a configuration object, with "builtin_tiers": false.
// bench/m0 to bench/m3: all four windows finite and far from their limits
// (admissions). bench/full0 to bench/full3: the same, but one request a
// day: after the first one, every call is refused for a day (refusals).
inline constexpr char kLimits[] = R"("builtin_tiers": false, "limits": {
  "bench/m0": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1000000000000, "tpd": 1000000000000000},
  "bench/m1": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1000000000000, "tpd": 1000000000000000},
  "bench/m2": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1000000000000, "tpd": 1000000000000000},
  "bench/m3": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1000000000000, "tpd": 1000000000000000},
  "bench/full0": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1, "tpd": 1000000000000000},
  "bench/full1": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1, "tpd": 1000000000000000},
  "bench/full2": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1, "tpd": 1000000000000000},
  "bench/full3": {"rpm": 1000000000000, "tpm": 1000000000000000, "rpd": 1, "tpd": 1000000000000000}})";

}  // namespace ratetrack_bench

#endif  // RATETRACK_BENCHMARKS_REFERENCE_H_
