// The tracker's hot path, inline (included at the end of tracker.h): the
// model table's entries and the decisions on the memory and shared-memory
// backends, so that the C entry points compile them into themselves, with
// no call between the argument checks and the clock.
#ifndef RATETRACK_SRC_TRACKER_INL_H_
#define RATETRACK_SRC_TRACKER_INL_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ratetrack.h"

namespace ratetrack {

struct Tracker::ModelState {
  explicit ModelState(absl::string_view n)
      : name(n), key(NameKey::FromView(name)), hash(key.hash) {}
  const std::string name;
  // The hot path reads the key, `shared`, the lock and the counters: they
  // come first, ahead of the windows.
  const NameKey key;  // refers to `name`
  const size_t hash;
  ShmModel* shared = nullptr;           // "shm:" backend: the segment's slot,
  pthread_mutex_t* shared_mu = nullptr;  // its mutex
  WindowSet* shared_ws = nullptr;        // and its windows (mapped for good)
  SpinLock mu;
  // This process's decisions, for metrics. Bumped under the model's lock
  // (a plain load and store: no atomic read-modify-write on the hot path),
  // or with fetch_add where no lock is held (Redis).
  std::atomic<uint64_t> admitted{0};
  std::atomic<uint64_t> refused{0};
  WindowSet local ABSL_GUARDED_BY(mu);  // "memory" backend
  // "redis:" backend: the limits to send, replaced (never changed) when the
  // limits change, so a call copies a pointer, not the strings.
  std::shared_ptr<const RemoteSpec> spec ABSL_GUARDED_BY(mu);
  // This process's configuration disagrees with the segment's limits:
  // decisions fail with RT_E_CONFIG (records still book).
  std::atomic<bool> conflict{false};
  std::string problem;  // why, guarded by the tracker's mu_
};

struct Tracker::Table {
  explicit Table(size_t capacity)
      : mask(capacity - 1), slots(new std::atomic<ModelState*>[capacity]) {
    for (size_t i = 0; i < capacity; ++i) slots[i].store(nullptr);
  }
  const size_t mask;
  size_t count = 0;
  std::unique_ptr<std::atomic<ModelState*>[]> slots;
};

namespace tracker_internal {

// This process's decision counts (metrics): bumped under the model's lock
// (a plain load and store: no atomic read-modify-write on the hot path),
// or with fetch_add where no lock is held (Redis). Checks are not counted.
inline void BumpLocked(std::atomic<uint64_t>& c) {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
inline void Count(Tracker::ModelState* m, int code, bool check, bool locked) {
  if (check || (code != RT_OK && code != RT_LIMITED)) return;
  std::atomic<uint64_t>& c = code == RT_OK ? m->admitted : m->refused;
  if (locked) {
    BumpLocked(c);
  } else {
    c.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace tracker_internal

__attribute__((always_inline)) inline Tracker::ModelState* Tracker::Find(
    const NameKey& key) const {
  const Table* t = table_.load(std::memory_order_acquire);
  for (size_t i = key.hash & t->mask;; i = (i + 1) & t->mask) {
    ModelState* s = t->slots[i].load(std::memory_order_acquire);
    if (s == nullptr) return nullptr;
    if (key.Matches(s->key)) return s;
  }
}

// The memory backend inline, the others out of line: a hit on the memory
// backend is hash, probe, lock, clock, windows, unlock, with no call but the
// clock's.
__attribute__((always_inline)) inline Decision Tracker::Decide(ModelState* m, const Cost& cost,
                                                               Mode mode) {
  int64_t now;
  Verdict v;
  if (__builtin_expect(m->shared == nullptr, 1)) {
    if (__builtin_expect(redis_ != nullptr, 0)) return DecideRedis(m, cost, mode);
    SpinLockHolder l(&m->mu);
    // Read under the lock: the time booked is the time of the decision, so
    // buckets are filled in time order whatever the scheduler does.
    now = clock_.Now();
    v = m->local.Decide(now, m->local.has_calendar ? clock_.Wall() : 0, cost,
                        mode != Mode::kCheck);
    if (mode != Mode::kCheck) tracker_internal::Count(m, static_cast<int>(v.code), /*check=*/false, /*locked=*/true);
  } else {
    // Shared memory: the same under the slot's robust mutex (out of line
    // when it is busy, a bounded wait, or its last owner died holding it:
    // the windows are repaired). A trylock: a lock word someone overwrote
    // must not block for ever.
    if (__builtin_expect(m->conflict.load(std::memory_order_relaxed), 0)) {
      return {RT_E_CONFIG, 0, 0, 0};
    }
    const int rc = pthread_mutex_trylock(m->shared_mu);
    if (__builtin_expect(rc != 0, 0) && !RecoverShmLock(m, rc)) return {RT_E_BACKEND, 0, 0, 0};
    WindowSet& ws = *m->shared_ws;
    now = clock_.Now();
    const int64_t wall = ws.has_calendar ? clock_.Wall() : 0;
    // The fast path, or the full pass after the set is checked (another
    // process may have written it).
    // A remembered wait beyond any a refusal can give was not written by
    // this library: the checked pass decides (and forgets it).
    v = ws.DecideFast(now, cost, mode != Mode::kCheck);
    if (__builtin_expect(v.code == WindowSet::kUndecided ||
                             v.wait_ms > static_cast<uint64_t>(WindowSet::kMaxWaitMs), 0)) {
      v = ShmSegment::DecideSlow(ws, now, wall, cost, mode != Mode::kCheck);
    }
    // The segment lock serialises this process's callers too.
    if (mode != Mode::kCheck) tracker_internal::Count(m, static_cast<int>(v.code), /*check=*/false, /*locked=*/true);
    pthread_mutex_unlock(m->shared_mu);
  }
  // One named result, filled field by field (see Decision).
  Decision d;
  d.code = static_cast<int32_t>(v.code);
  d.degraded = 0;
  d.wait_ms = v.wait_ms;
  d.grant = 0;
  if (mode == Mode::kAcquireWithGrant && d.code == RT_OK) d.grant = MakeTicket(now, m->hash, cost);
  return d;
}

__attribute__((always_inline)) inline Decision Tracker::TryAcquire(const NameKey& model, const Cost& cost, bool want_grant) {
  const Mode mode = want_grant ? Mode::kAcquireWithGrant : Mode::kAcquire;
  ModelState* m = Find(model);
  if (__builtin_expect(m == nullptr, 0)) return CreateAndDecide(model, cost, mode);
  return Decide(m, cost, mode);
}

__attribute__((always_inline)) inline Decision Tracker::Check(const NameKey& model, const Cost& cost) {
  ModelState* m = Find(model);
  if (__builtin_expect(m == nullptr, 0)) return CreateAndDecide(model, cost, Mode::kCheck);
  return Decide(m, cost, Mode::kCheck);
}

__attribute__((always_inline)) inline absl::Status Tracker::Record(const NameKey& model, const Cost& cost) {
  ModelState* m = Find(model);
  if (__builtin_expect(m != nullptr && redis_ == nullptr && m->shared == nullptr, 1)) {
    SpinLockHolder l(&m->mu);
    const int64_t now = clock_.Now();
    m->local.Record(now, m->local.has_calendar ? clock_.Wall() : 0, cost);
    return absl::OkStatus();
  }
  return RecordShared(model, cost);
}

}  // namespace ratetrack

#endif  // RATETRACK_SRC_TRACKER_INL_H_
