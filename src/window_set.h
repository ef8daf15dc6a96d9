// WindowSet: every window of one model and the decisions over them.
//
// Plain data with no pointers, so the same value works in process memory
// (the "memory" backend) and in a shared-memory segment mapped at different
// addresses by different processes (the "shm:" backend). The caller holds
// whatever lock guards the set, and passes the time.
#ifndef RATETRACK_SRC_WINDOW_SET_H_
#define RATETRACK_SRC_WINDOW_SET_H_

#include <cstdint>
#include <string>
#include <type_traits>

#include "config.h"
#include "sliding_window.h"

namespace ratetrack {

// Outcome of one decision on a model's windows.
struct Decision {
  int code;          // RT_OK, RT_LIMITED, RT_E_TOO_LARGE (or another status)
  uint64_t wait_ms;  // RT_LIMITED: > 0; RT_E_TOO_LARGE: RT_WAIT_NEVER
  uint64_t grant;    // RT_OK from an acquire that asked for one: the ticket
  bool degraded = false;  // decided by the on_error policy: Redis failed
};

// A window and its limit, together in the cache line the hot path touches.
struct alignas(64) WindowSlot {
  WindowLimit limit;
  SlidingWindow window;
};

struct WindowSet {
  int32_t nwin = 0;
  WindowSlot slots[ModelLimits::kMaxWindows];

  // Checks every window at `now`; with `book`, books the request when it
  // fits (one request, `tokens` tokens). Never partial: a request refused by
  // one window consumes nothing from the others.
  Decision Decide(int64_t now, uint64_t tokens, bool book);
  // Books a request that happened, whatever the limits say.
  void Record(int64_t now, uint64_t tokens);
  // Books the difference between granted and actual tokens at time `at`.
  void Settle(int64_t now, int64_t at, uint64_t granted, uint64_t actual);
  void Clear();

  // Installs new limits; windows whose (unit, length) stay keep their usage.
  void SetLimits(const ModelLimits& limits, int64_t guard_ms);
  bool HasLimits(const ModelLimits& limits) const;
  ModelLimits Limits() const;

  // Restores the invariants after a writer died in the middle of an update
  // (a robust mutex reported EOWNERDEAD).
  void Repair();
};

static_assert(std::is_trivially_copyable<WindowSet>::value,
              "WindowSet lives in shared memory");

// "rpm 500, tpm 200000, requests_per_2s 10" (for messages).
std::string DescribeLimits(const ModelLimits& limits);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_WINDOW_SET_H_
