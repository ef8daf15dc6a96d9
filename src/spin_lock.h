// A tiny test-and-test-and-set lock with yield backoff.
//
// Why not absl::Mutex: the tracker must survive fork() while other threads
// are inside it. absl::Mutex keeps queues of waiting threads in the mutex
// word; in a forked child those threads do not exist. A SpinLock has no
// waiter state at all, and every SpinLock the library owns is taken by the
// pthread_atfork prepare handler (see fork_guard.cc), so a child never
// inherits a held lock. Critical sections are a few dozen nanoseconds and
// never block, which is what spinning is good for.
#ifndef RATETRACK_SRC_SPIN_LOCK_H_
#define RATETRACK_SRC_SPIN_LOCK_H_

#include <sched.h>

#include <atomic>

#include "absl/base/thread_annotations.h"

namespace ratetrack {

class ABSL_LOCKABLE SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  __attribute__((always_inline)) void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    SlowLock();
  }
  __attribute__((always_inline)) void Unlock() ABSL_UNLOCK_FUNCTION() {
    locked_.store(false, std::memory_order_release);
  }

 private:
  __attribute__((noinline)) void SlowLock() {
    for (int spins = 0;; ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
          ++spins;
        } else {
          sched_yield();
        }
      }
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
    }
  }

  std::atomic<bool> locked_{false};
};

class ABSL_SCOPED_LOCKABLE SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    mu_->Lock();
  }
  ~SpinLockHolder() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* mu_;
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_SPIN_LOCK_H_
