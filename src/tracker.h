// Tracker: the rate-limit tracker behind rt_tracker.
//
// Models live in an insert-only open-addressing table that readers probe
// without a lock (slots are atomic pointers; the table is replaced, never
// rehashed in place, and old tables are kept until the tracker dies). Each
// model's windows (a WindowSet) live either in the model's own entry, behind
// a SpinLock ("memory" backend), or in a shared-memory segment slot behind a
// robust process-shared mutex ("shm:NAME" backend). Either way callers on
// different models never share a lock, and the hot path (tracker_inl.h,
// compiled into the C entry points) is: scan and hash the name, probe, lock,
// read the clock, compare the pending amounts with the room of the current
// window tick (WindowSet's fast path), unlock. Nothing on it allocates.
#ifndef RATETRACK_SRC_TRACKER_H_
#define RATETRACK_SRC_TRACKER_H_

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config.h"
#include "name_key.h"
#include "provider_headers.h"
#include "redis/client.h"
#include "shm_segment.h"
#include "spin_lock.h"
#include "window_set.h"

namespace ratetrack {

// Milliseconds of a monotonic clock shared by every process of the host.
// The default reads CLOCK_MONOTONIC_COARSE; tests pass a manual clock.
struct Clock {
  int64_t (*now_ms)(void* ctx);  // nullptr: the default clock, called inline
  void* ctx;
  int64_t resolution_ms;  // how far a reading may lag real time
  // Unix ms (calendar-day windows, header resets); nullptr: CLOCK_REALTIME_COARSE.
  int64_t (*wall_ms)(void* ctx) = nullptr;
  static Clock Monotonic();
  static int64_t MonotonicCoarseMs() {
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  }
  static int64_t RealtimeMs();  // CLOCK_REALTIME_COARSE: may lag by a tick
  // CLOCK_REALTIME, exact to the ms: for turning an HTTP date into a wait,
  // where a coarse reading would lengthen the wait by up to a tick.
  static int64_t PreciseRealtimeMs();
  int64_t Now() const { return now_ms == nullptr ? MonotonicCoarseMs() : now_ms(ctx); }
  int64_t Wall() const { return wall_ms == nullptr ? RealtimeMs() : wall_ms(ctx); }
  int64_t PreciseWall() const { return wall_ms == nullptr ? PreciseRealtimeMs() : wall_ms(ctx); }
};


class Tracker {
 public:
  static absl::StatusOr<std::unique_ptr<Tracker>> Create(const Config& config,
                                                         Clock clock);
  ~Tracker();
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  // The hot path. `model` must be non-empty (the C shim checks). The grant
  // ticket is computed only when `want_grant`. A code other than RT_OK,
  // RT_LIMITED and RT_E_TOO_LARGE is explained by Explain().
  Decision TryAcquire(const NameKey& model, const Cost& cost, bool want_grant = true);
  Decision TryAcquire(absl::string_view model, const Cost& cost, bool want_grant = true) {
    return TryAcquire(NameKey::FromView(model), cost, want_grant);
  }
  Decision Check(const NameKey& model, const Cost& cost);  // books nothing
  Decision Check(absl::string_view model, const Cost& cost) {
    return Check(NameKey::FromView(model), cost);
  }
  // Always books (it happened), even when the model's configuration
  // conflicts with a shared segment's.
  absl::Status Record(const NameKey& model, const Cost& cost);
  absl::Status Record(absl::string_view model, const Cost& cost) {
    return Record(NameKey::FromView(model), cost);
  }
  absl::Status Settle(absl::string_view model, uint64_t grant, const Cost& granted,
                      const Cost& actual);
  // Books tokens to a request already counted (rt_record_tokens): the
  // token windows and the provider's caps, now; request windows unchanged.
  absl::Status RecordTokens(absl::string_view model, const Cost& tokens);
  // The first of `models` that can take the request now, acquired; or, when
  // none can, RT_LIMITED with the shortest wait. *index: the model chosen
  // (or the one with the shortest wait).
  Decision Pick(const std::vector<absl::string_view>& models, const Cost& cost,
                bool want_grant, size_t* index);

  // What the provider answered: rate-limit headers (OpenAI x-ratelimit-*,
  // Anthropic anthropic-ratelimit-*). Unknown or malformed ones are
  // ignored one by one; returns how many were used.
  absl::StatusOr<int> Observe(absl::string_view model, const std::vector<HeaderView>& headers);
  // A 429: the model is refused for `retry_after_ms` from now.
  absl::Status ReportLimited(absl::string_view model, uint64_t retry_after_ms);
  // Why the last decision on `model` returned `code`.
  std::string Explain(absl::string_view model, int code) const;

  // Applies a configuration patch on top of the current one (validated
  // first; nothing changes on error). Recorded usage is kept. The backend
  // cannot change.
  absl::Status Configure(const Config& patch);
  // Replaces the configuration as a whole (usage kept).
  absl::Status Reconfigure(const Config& config);
  absl::Status SetTier(absl::string_view tier);
  std::string tier() const;
  std::string backend() const;
  // Redis: true once when the backend has just failed; *message says how.
  bool TakeBackendFailure(std::string* message);

  absl::Status Reset();           // forget all usage (of the whole segment)
  std::string StatsJson() const;  // see rt_stats_json
  std::string MetricsText() const;  // see rt_metrics_text

  struct ModelState;

  // fork(): every SpinLock of every live tracker is taken before and
  // released after (shared-memory mutexes are not: their owners live on).
  static void LockAllForFork();
  static void UnlockAllForFork(bool child);

 private:
  struct Table;

  Tracker(EffectiveConfig config, Config raw, Clock clock,
          std::unique_ptr<ShmSegment> shm, std::unique_ptr<RedisClient> redis);

  ModelState* Find(const NameKey& key) const;
  absl::StatusOr<ModelState*> FindOrCreate(const NameKey& key);
  absl::StatusOr<ModelState*> FindOrCreate(absl::string_view model);
  absl::StatusOr<ModelState*> CreateLocked(absl::string_view model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks `config` against the shared segment (every model in it); with
  // shm_update, writes its limits there instead.
  absl::Status ReconcileShmLocked(const EffectiveConfig& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyLocked(EffectiveConfig config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  enum class Mode { kCheck, kAcquire, kAcquireWithGrant };
  Decision Decide(ModelState* m, const Cost& cost, Mode mode);
  Decision DecideRedis(ModelState* m, const Cost& cost, Mode mode);  // Redis
  // After trylocking a shared-memory slot returned `rc` != 0: true when it
  // is now locked (EBUSY: after a bounded wait; EOWNERDEAD: the last owner
  // died holding it, the windows are repaired).
  bool RecoverShmLock(ModelState* m, int rc);
  Decision CreateAndDecide(const NameKey& model, const Cost& cost, Mode mode);
  // Record, when the model is new or its windows are not in this process.
  absl::Status RecordShared(const NameKey& model, const Cost& cost);
  Decision DecideRemote(ModelState* m, const Cost& cost, Mode mode);
  // Runs `fn(WindowSet&, now, wall)` under the model's lock, wherever its
  // windows live (memory or shared memory).
  template <typename Fn>
  absl::Status WithWindows(ModelState* m, Fn fn);
  // A write Redis could not take (`failed`): not lost, this process's own
  // windows keep it (fn(windows, now, wall) under the model's lock); the
  // caller is told (`failed`) only with on_error=closed or a
  // misconfiguration, else OK.
  template <typename Fn>
  absl::Status KeepLocally(ModelState* m, const absl::Status& failed, Fn fn);
  std::shared_ptr<const RemoteSpec> SpecOf(ModelState* m);

  // Grant tickets: (time + 1) << kCheckBits | a keyed check of the time, the
  // model and the granted tokens, so settling another tracker's ticket, or
  // with another model or the wrong token count, is refused (but for a
  // 1 in 2^23 chance). Trackers on one segment share the key.
  static constexpr int kCheckBits = 23;
  // `remote`: the time is the Redis server's (Unix ms), not this host's
  // monotonic clock.
  uint64_t MakeTicket(int64_t at_ms, size_t model_hash, const Cost& cost,
                      bool remote = false) const;

  const Clock clock_;
  const std::unique_ptr<ShmSegment> shm_;  // "shm:NAME", else null
  const std::unique_ptr<RedisClient> redis_;  // "redis://...", else null
  const uint64_t secret_;
  mutable SpinLock mu_;  // configuration, table growth, the model list
  EffectiveConfig config_ ABSL_GUARDED_BY(mu_);
  Config raw_ ABSL_GUARDED_BY(mu_);  // merged configuration documents
  std::atomic<Table*> table_;
  std::vector<std::unique_ptr<Table>> tables_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<ModelState>> models_ ABSL_GUARDED_BY(mu_);

  // Intrusive list of live trackers, for fork handling.
  Tracker* prev_ = nullptr;
  Tracker* next_ = nullptr;
};

}  // namespace ratetrack

#include "tracker_inl.h"  // IWYU pragma: export

#endif  // RATETRACK_SRC_TRACKER_H_
