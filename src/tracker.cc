#include "tracker.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "model_name.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"
#include "status.h"

namespace ratetrack {

using tracker_internal::Count;

namespace {

constexpr size_t kInitialSlots = 64;
// A hard bound on distinct models per tracker, so a caller that invents model
// names (a bug) cannot grow memory without limit: a model costs about 9 KiB
// (its windows) plus its name, so a tracker stays under about 40 MiB.
constexpr size_t kMaxModels = RT_MAX_MODELS;

std::string TooManyModelsMessage() {
  return absl::StrCat("the tracker already holds ", kMaxModels,
                      " distinct models, its bound (RT_MAX_MODELS); is a model name built "
                      "from request data?");
}
// A provider's "retry after" or reset beyond a day is taken as a day.
constexpr uint64_t kMaxBlockMs = 86400ULL * 1000;

SpinLock g_registry_mu;
Tracker* g_registry_head ABSL_GUARDED_BY(g_registry_mu) = nullptr;

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t NewSecret(const void* self) {
  static std::atomic<uint64_t> counter{0};
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Mix(reinterpret_cast<uintptr_t>(self) ^ Mix(counter.fetch_add(1) + 1) ^
             Mix(static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 30)) ^
             Mix(static_cast<uint64_t>(getpid())));
}

}  // namespace

int64_t Clock::RealtimeMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t Clock::PreciseRealtimeMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Clock Clock::Monotonic() {
  struct timespec res = {0, 1000000};
#ifdef CLOCK_MONOTONIC_COARSE
  clock_getres(CLOCK_MONOTONIC_COARSE, &res);
#else
  clock_getres(CLOCK_MONOTONIC, &res);
#endif
  // A reading lags real time by less than one tick, plus the ms truncation.
  int64_t res_ms = static_cast<int64_t>(res.tv_sec) * 1000 +
                   (res.tv_nsec + 999999) / 1000000 + 1;
  return Clock{nullptr, nullptr, res_ms};
}

absl::StatusOr<std::unique_ptr<Tracker>> Tracker::Create(const Config& config,
                                                         Clock clock) {
  auto eff = EffectiveConfig::From(config);
  if (!eff.ok()) return eff.status();
  std::unique_ptr<ShmSegment> shm;
  if (absl::StartsWith(eff->backend, "shm:")) {
    auto opened = ShmSegment::Open(absl::string_view(eff->backend).substr(4),
                                   ShmOptions{eff->shm_models, eff->shm_mode});
    if (!opened.ok()) return opened.status();
    shm = std::move(*opened);
  }
  std::unique_ptr<RedisClient> redis;
  if (IsRedisUrl(eff->backend)) {
    auto url = ParseRedisUrl(eff->backend);
    if (!url.ok()) return url.status();
    redis = std::make_unique<RedisClient>(std::move(*url));
    // The first connection, at once: a server the URL cannot use (a
    // replica, a sentinel, a cluster node, refused credentials) is said
    // here; an outage is not (on_error decides for the calls).
    if (absl::Status st = redis->Probe(); !st.ok()) return st;
  }
  std::unique_ptr<Tracker> t(
      new Tracker(*eff, config, clock, std::move(shm), std::move(redis)));
  if (t->shm_ != nullptr) {
    SpinLockHolder l(&t->mu_);
    absl::Status st = t->ReconcileShmLocked(*eff);
    if (!st.ok()) return st;
  }
  return t;
}

Tracker::Tracker(EffectiveConfig config, Config raw, Clock clock,
                 std::unique_ptr<ShmSegment> shm, std::unique_ptr<RedisClient> redis)
    : clock_(clock),
      shm_(std::move(shm)),
      redis_(std::move(redis)),
      secret_(shm_ != nullptr ? shm_->secret() : NewSecret(this)),
      config_(std::move(config)),
      raw_(std::move(raw)) {
  auto t = std::make_unique<Table>(kInitialSlots);
  table_.store(t.get(), std::memory_order_release);
  tables_.push_back(std::move(t));
  SpinLockHolder l(&g_registry_mu);
  next_ = g_registry_head;
  if (next_ != nullptr) next_->prev_ = this;
  g_registry_head = this;
}

Tracker::~Tracker() {
  SpinLockHolder l(&g_registry_mu);
  if (prev_ != nullptr) prev_->next_ = next_;
  else g_registry_head = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
}

uint64_t Tracker::MakeTicket(int64_t at_ms, size_t model_hash, const Cost& cost,
                             bool remote) const {
  const uint64_t t = static_cast<uint64_t>(at_ms) + 1;
  // Grants made in Redis are keyed by the Redis's shared key, so any tracker
  // on it can settle them; the others by this tracker's (or segment's).
  const uint64_t key = remote ? redis_->secret() : secret_;
  const uint64_t check =
      Mix(key ^ Mix(t) ^ Mix(cost.input ^ 0x5bd1e995ULL) ^
          Mix(cost.output ^ 0x1b873593ULL) ^ Mix(model_hash + 1) ^
          (remote ? 0x7f4a7c15ULL : 0)) &
      ((uint64_t{1} << kCheckBits) - 1);
  return t << kCheckBits | check;
}

absl::StatusOr<Tracker::ModelState*> Tracker::FindOrCreate(absl::string_view model) {
  return FindOrCreate(NameKey::FromView(model));
}

absl::StatusOr<Tracker::ModelState*> Tracker::FindOrCreate(const NameKey& key) {
  ModelState* s = Find(key);
  if (s != nullptr) return s;
  // A name is checked once, when it first reaches the tracker: a name found
  // in the table above passed this check.
  absl::Status valid = CheckModelName(key.view());
  if (!valid.ok()) return valid;
  SpinLockHolder l(&mu_);
  s = Find(key);
  if (s != nullptr) return s;
  if (models_.size() >= kMaxModels) return NoMemError(TooManyModelsMessage());
  return CreateLocked(key.view());
}

namespace {
std::string ConflictMessage(absl::string_view model, absl::string_view segment,
                            const ModelLimits& ours, const ModelLimits& theirs) {
  return absl::StrCat(
      "model '", model, "': this configuration says ", DescribeLimits(ours),
      ", but shared-memory segment '", segment, "' holds ", DescribeLimits(theirs),
      " (set by the process that first used the model). Give every process the "
      "same limits, set \"shm_limits\": \"update\" to replace the segment's, or "
      "remove the segment (rt_shm_remove)");
}

std::string RedisConflictMessage(absl::string_view model, absl::string_view ours,
                                 absl::string_view theirs) {
  return absl::StrCat(
      "model '", model, "': this configuration says ", ours, ", but Redis holds ", theirs,
      " (set by the first host that used the model). Give every host the same limits, "
      "add limits=update to the Redis URL to replace them, or delete the model's key");
}
}  // namespace

absl::StatusOr<Tracker::ModelState*> Tracker::CreateLocked(absl::string_view model) {
  auto owned = std::make_unique<ModelState>(model);
  ModelState* s = owned.get();
  const size_t hash = s->hash;
  const ModelLimits limits = config_.Resolve(model);
  if (shm_ != nullptr) {
    bool created = false;
    auto slot = shm_->FindOrCreate(model, hash, limits, clock_.resolution_ms, &created);
    if (!slot.ok()) return slot.status();
    s->shared = *slot;
    s->shared_mu = ShmSegment::Mutex(s->shared);
    s->shared_ws = &ShmSegment::Windows(s->shared);
    if (!created && config_.Knows(model)) {
      ShmModelLock sl(s->shared);
      if (!sl.status().ok()) return sl.status();
      WindowSet& ws = ShmSegment::Windows(s->shared);
      if (!ws.HasLimits(limits)) {
        if (config_.shm_update) {
          ws.SetLimits(limits, clock_.resolution_ms);
        } else {
          s->problem = ConflictMessage(model, shm_->name(), limits, ws.Limits());
          s->conflict.store(true, std::memory_order_release);
        }
      }
    }
  } else {
    SpinLockHolder ml(&s->mu);
    s->local.SetLimits(limits, clock_.resolution_ms);
    if (redis_ != nullptr) s->spec = std::make_shared<const RemoteSpec>(RemoteSpec::From(s->local));
  }
  Table* t = table_.load(std::memory_order_relaxed);
  if ((t->count + 1) * 2 > t->mask + 1) {
    // Grow: build a larger table, publish it, keep the old one for readers
    // still probing it.
    auto bigger = std::make_unique<Table>((t->mask + 1) * 2);
    for (const auto& m : models_) {
      for (size_t i = m->hash & bigger->mask;; i = (i + 1) & bigger->mask) {
        if (bigger->slots[i].load(std::memory_order_relaxed) == nullptr) {
          bigger->slots[i].store(m.get(), std::memory_order_relaxed);
          break;
        }
      }
    }
    bigger->count = t->count;
    t = bigger.get();
    tables_.push_back(std::move(bigger));
    table_.store(t, std::memory_order_release);
  }
  for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    if (t->slots[i].load(std::memory_order_relaxed) == nullptr) {
      t->slots[i].store(s, std::memory_order_release);
      break;
    }
  }
  ++t->count;
  models_.push_back(std::move(owned));
  return s;
}

std::shared_ptr<const RemoteSpec> Tracker::SpecOf(ModelState* m) {
  SpinLockHolder l(&m->mu);
  return m->spec;
}

Decision Tracker::DecideRemote(ModelState* m, const Cost& cost, Mode mode) {
  const std::shared_ptr<const RemoteSpec> shared_spec = SpecOf(m);
  const RemoteSpec& spec = *shared_spec;
  auto r = redis_->Run(mode == Mode::kCheck ? RedisClient::Op::kCheck : RedisClient::Op::kAcquire,
                       m->name, spec, cost);
  if (r.ok()) {
    if (r->code == RT_E_CONFIG) {
      SpinLockHolder l(&mu_);
      m->problem = RedisConflictMessage(m->name, spec.fingerprint, r->stored_limits);
      return {RT_E_CONFIG, 0, 0, 0};
    }
    Decision d{r->code, 0, r->code == RT_E_TOO_LARGE ? RT_WAIT_NEVER : r->wait_ms, 0};
    if (d.code == RT_OK && mode == Mode::kAcquireWithGrant) {
      d.grant = MakeTicket(r->now_ms, m->hash, cost, /*remote=*/true);
    }
    return d;
  }
  // The URL points at a server it cannot use (a replica, a sentinel, a
  // cluster node, refused credentials): an error whatever on_error says,
  // never silently a per-process limit.
  if (IsMisconfiguration(r.status())) {
    SpinLockHolder l(&mu_);
    m->problem = std::string(r.status().message());
    return {RT_E_CONFIG, 0, 0, 0};
  }
  // Redis could not be asked: the on_error policy decides.
  switch (redis_->url().on_error) {
    case RedisUrl::OnError::kClosed:
      return {RT_E_BACKEND, 1, 0, 0};
    case RedisUrl::OnError::kOpen: {
      Decision d{RT_OK, 1, 0, 0};
      if (mode == Mode::kAcquireWithGrant) d.grant = MakeTicket(clock_.Now(), m->hash, cost);
      return d;
    }
    case RedisUrl::OnError::kLocal:
      break;
  }
  SpinLockHolder l(&m->mu);
  const int64_t now = clock_.Now();
  const Verdict v = m->local.Decide(now, m->local.has_calendar ? clock_.Wall() : 0, cost,
                                    mode != Mode::kCheck);
  Decision d{static_cast<int32_t>(v.code), 1, v.wait_ms, 0};
  if (d.code == RT_OK && mode == Mode::kAcquireWithGrant) {
    d.grant = MakeTicket(now, m->hash, cost);
  }
  return d;
}

template <typename Fn>
absl::Status Tracker::WithWindows(ModelState* m, Fn fn) {
  if (m->shared != nullptr) {
    ShmModelLock l(m->shared);
    if (!l.status().ok()) return l.status();
    WindowSet& ws = ShmSegment::Windows(m->shared);
    fn(ws, clock_.Now(), ws.has_calendar ? clock_.Wall() : 0);
    return absl::OkStatus();
  }
  SpinLockHolder l(&m->mu);
  fn(m->local, clock_.Now(), m->local.has_calendar ? clock_.Wall() : 0);
  return absl::OkStatus();
}

Decision Tracker::DecideRedis(ModelState* m, const Cost& cost, Mode mode) {
  Decision d = DecideRemote(m, cost, mode);
  Count(m, d.code, mode == Mode::kCheck, /*locked=*/false);
  return d;
}

bool Tracker::RecoverShmLock(ModelState* m, int rc) {
  return ShmSegment::Locked(m->shared, rc).ok();
}

Decision Tracker::CreateAndDecide(const NameKey& model, const Cost& cost, Mode mode) {
  auto made = FindOrCreate(model);
  if (!made.ok()) return {StatusToCode(made.status()), 0, 0, 0};
  return Decide(*made, cost, mode);
}

Decision Tracker::Pick(const std::vector<absl::string_view>& models, const Cost& cost,
                       bool want_grant, size_t* index) {
  Decision best{RT_LIMITED, 0, RT_WAIT_NEVER, 0};
  size_t best_index = 0;
  bool any_limited = false;
  for (size_t i = 0; i < models.size(); ++i) {
    Decision d = TryAcquire(models[i], cost, want_grant);
    if (d.code == RT_OK) {
      *index = i;
      return d;
    }
    if (d.code == RT_LIMITED && (!any_limited || d.wait_ms < best.wait_ms)) {
      best = d;
      best_index = i;
      any_limited = true;
    }
    if (d.code != RT_LIMITED && d.code != RT_E_TOO_LARGE && !any_limited) {
      best = d;  // an error, reported if no candidate is merely limited
      best_index = i;
    }
  }
  *index = best_index;
  if (!any_limited && best.code == RT_LIMITED) best.code = RT_E_TOO_LARGE;  // every one too large
  return best;
}

std::string Tracker::Explain(absl::string_view model, int code) const {
  ModelState* m = Find(NameKey::FromView(model));
  if (code == RT_E_CONFIG && m != nullptr) {
    SpinLockHolder l(&mu_);
    return m->problem;
  }
  if (code == RT_E_BACKEND && redis_ != nullptr) {
    return absl::StrCat(redis_->health().last_error, " (on_error=closed)");
  }
  if (code == RT_E_BACKEND) {
    std::string why = ShmSegment::LastProblem(model);
    if (!why.empty()) return why;
    return absl::StrCat("the shared state of '", model, "' in segment '",
                        shm_ != nullptr ? shm_->name() : "",
                        "' cannot be used: its lock cannot be had, or its limits in the "
                        "segment cannot be read (the slot is corrupt)");
  }
  if (code == RT_E_NOMEM) return TooManyModelsMessage();
  if (code == RT_E_INVALID) {
    const absl::Status name = CheckModelName(model);
    return name.ok() ? "invalid argument" : std::string(name.message());
  }
  return "";
}

template <typename Fn>
absl::Status Tracker::KeepLocally(ModelState* m, const absl::Status& failed, Fn fn) {
  {
    SpinLockHolder l(&m->mu);
    fn(m->local, clock_.Now(), clock_.Wall());
  }
  return redis_->url().on_error == RedisUrl::OnError::kClosed || IsMisconfiguration(failed)
             ? failed
             : absl::OkStatus();
}

absl::Status Tracker::RecordShared(const NameKey& model, const Cost& cost) {
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  if (redis_ != nullptr) {
    auto r = redis_->Run(RedisClient::Op::kRecord, m->name, *SpecOf(m), cost);
    if (r.ok()) return absl::OkStatus();
    return KeepLocally(m, r.status(), [&](WindowSet& ws, int64_t now, int64_t wall) {
      ws.Record(now, wall, cost);
    });
  }
  return WithWindows(m, [&](WindowSet& ws, int64_t now, int64_t wall) {
    ws.Record(now, wall, cost);
  });
}

absl::Status Tracker::Settle(absl::string_view model, uint64_t grant, const Cost& granted,
                             const Cost& actual) {
  if (absl::Status name = CheckModelName(model); !name.ok()) return name;
  if (grant == 0) return InvalidError("grant ticket 0 is not a grant");
  const int64_t at = static_cast<int64_t>(grant >> kCheckBits) - 1;
  const size_t hash = NameKey::FromView(model).hash;
  if (redis_ != nullptr && redis_->secret() == 0) {
    // A fresh process settling another's grant: learn the shared ticket key
    // (one round trip; the answer itself does not matter).
    auto found = FindOrCreate(model);
    if (found.ok()) redis_->Run(RedisClient::Op::kStats, model, *SpecOf(*found), Cost{}).IgnoreError();
  }
  const bool remote = redis_ != nullptr && at >= 0 &&
                      MakeTicket(at, hash, granted, true) == grant;
  if (!remote && (at < 0 || MakeTicket(at, hash, granted) != grant)) {
    return InvalidError(
        "the grant ticket does not match this tracker, model and granted tokens "
        "(a ticket from another tracker or model, or not the tokens it was granted for)");
  }
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  if (remote) {
    auto r = redis_->Run(RedisClient::Op::kSettle, model, *SpecOf(m), actual, at, granted);
    if (!r.ok() && (redis_->url().on_error == RedisUrl::OnError::kClosed ||
                    IsMisconfiguration(r.status()))) {
      return r.status();
    }
    return absl::OkStatus();  // a grant made in Redis is settled there or not at all
  }
  absl::Status result = absl::OkStatus();
  absl::Status st = WithWindows(m, [&](WindowSet& ws, int64_t now, int64_t wall) {
    if (at > now) {
      result = InvalidError("the grant ticket is from the future");
      return;
    }
    ws.Settle(now, wall, at, wall - (now - at), granted, actual);
  });
  return st.ok() ? result : st;
}

absl::Status Tracker::RecordTokens(absl::string_view model, const Cost& tokens) {
  if (absl::Status name = CheckModelName(model); !name.ok()) return name;
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  if (tokens.input == 0 && tokens.output == 0) return absl::OkStatus();
  if (redis_ != nullptr) {
    // A settle of nothing granted, at the key's own time (-1).
    auto r = redis_->Run(RedisClient::Op::kSettle, model, *SpecOf(m), tokens, -1, Cost{0, 0});
    if (r.ok()) return absl::OkStatus();
    return KeepLocally(m, r.status(), [&](WindowSet& ws, int64_t now, int64_t wall) {
      ws.Settle(now, wall, now, wall, Cost{0, 0}, tokens);
    });
  }
  return WithWindows(m, [&](WindowSet& ws, int64_t now, int64_t wall) {
    ws.Settle(now, wall, now, wall, Cost{0, 0}, tokens);
  });
}

absl::StatusOr<int> Tracker::Observe(absl::string_view model,
                                     const std::vector<HeaderView>& headers) {
  // Checked even when no header is usable: a bad name is never a silent no-op.
  if (absl::Status name = CheckModelName(model); !name.ok()) return name;
  const ProviderReport report = ParseRateLimitHeaders(headers, clock_.PreciseWall());
  if (report.used_headers == 0) return 0;
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  for (int u = 0; u < WindowSet::kUnits; ++u) {
    const UnitReport& ur = report.units[u];
    if (!ur.limit && !ur.remaining) continue;
    // "remaining R until the reset": a cap. A limit alone is only reported.
    const bool cap = ur.remaining && ur.reset_ms;
    const uint64_t reset = cap ? std::min<uint64_t>(*ur.reset_ms, kMaxBlockMs) : 0;
    const uint64_t remaining = ur.remaining.value_or(0);
    const uint64_t limit = ur.limit.value_or(0);
    if (redis_ != nullptr) {
      auto r = redis_->Run(RedisClient::Op::kObserve, model, *SpecOf(m), Cost{0, 0},
                           cap ? static_cast<int64_t>(reset) : -1, Cost{0, 0},
                           RedisClient::Observation{static_cast<Unit>(u), remaining, limit});
      if (r.ok()) continue;
      // Redis away: this process at least holds back.
      absl::Status st = KeepLocally(m, r.status(), [&](WindowSet& ws, int64_t now, int64_t) {
        ws.Observe(static_cast<Unit>(u), remaining, cap ? now + static_cast<int64_t>(reset) : 0,
                   limit);
      });
      if (!st.ok()) return st;
      continue;
    }
    absl::Status st = WithWindows(m, [&](WindowSet& ws, int64_t now, int64_t) {
      ws.Observe(static_cast<Unit>(u), remaining, cap ? now + static_cast<int64_t>(reset) : 0,
                 limit);
    });
    if (!st.ok()) return st;
  }
  return report.used_headers;
}

absl::Status Tracker::ReportLimited(absl::string_view model, uint64_t retry_after_ms) {
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  if (redis_ != nullptr) {
    auto r = redis_->Run(RedisClient::Op::kBlock, model, *SpecOf(m), Cost{0, 0},
                         static_cast<int64_t>(std::min<uint64_t>(retry_after_ms, kMaxBlockMs)));
    if (r.ok()) return absl::OkStatus();
    // Redis is away: at least this process holds back.
    return KeepLocally(m, r.status(), [&](WindowSet& ws, int64_t now, int64_t) {
      ws.Block(now + static_cast<int64_t>(std::min<uint64_t>(retry_after_ms, kMaxBlockMs)));
    });
  }
  return WithWindows(m, [&](WindowSet& ws, int64_t now, int64_t) {
    ws.Block(now + static_cast<int64_t>(std::min<uint64_t>(retry_after_ms, kMaxBlockMs)));
  });
}

absl::Status Tracker::ReconcileShmLocked(const EffectiveConfig& config) {
  std::string conflict;
  // Slots whose identity does not hold are not listed; one whose lock or
  // limits are corrupt is skipped here (its model's own calls are refused
  // with the reason): a bad slot does not take the segment down.
  shm_->ForEachNamed([&](ShmModel* slot, absl::string_view name) {
    if (!config.Knows(name) || !conflict.empty()) return;
    const ModelLimits ours = config.Resolve(name);
    ShmModelLock l(slot);
    if (!l.status().ok()) return;
    WindowSet& ws = ShmSegment::Windows(slot);
    if (ws.HasLimits(ours)) return;
    if (config.shm_update) {
      ws.SetLimits(ours, clock_.resolution_ms);
    } else {
      conflict = ConflictMessage(name, shm_->name(), ours, ws.Limits());
    }
  });
  if (!conflict.empty()) return ConfigError(conflict);
  return absl::OkStatus();
}

absl::Status Tracker::ApplyLocked(EffectiveConfig config) {
  if (config.backend != config_.backend) {
    return ConfigError(absl::StrCat("config key 'backend': a tracker's backend cannot change (it is '",
                                    config_.backend, "', not '", config.backend, "')"));
  }
  if (shm_ != nullptr) {
    absl::Status st = ReconcileShmLocked(config);
    if (!st.ok()) return st;
  }
  config_ = std::move(config);
  for (const auto& m : models_) {
    if (m->shared != nullptr) {
      // Reconciled above: the segment now agrees with this configuration.
      m->problem.clear();
      m->conflict.store(false, std::memory_order_release);
      continue;
    }
    SpinLockHolder ml(&m->mu);
    m->local.SetLimits(config_.Resolve(m->name), clock_.resolution_ms);
    if (redis_ != nullptr) {
      m->spec = std::make_shared<const RemoteSpec>(RemoteSpec::From(m->local));
      m->problem.clear();
    }
  }
  return absl::OkStatus();
}

absl::Status Tracker::Configure(const Config& patch) {
  SpinLockHolder l(&mu_);
  Config merged = raw_;
  merged.Merge(patch);
  auto eff = EffectiveConfig::From(merged);
  if (!eff.ok()) return eff.status();
  absl::Status st = ApplyLocked(std::move(*eff));
  if (st.ok()) raw_ = std::move(merged);
  return st;
}

absl::Status Tracker::Reconfigure(const Config& config) {
  SpinLockHolder l(&mu_);
  auto eff = EffectiveConfig::From(config);
  if (!eff.ok()) return eff.status();
  absl::Status st = ApplyLocked(std::move(*eff));
  if (st.ok()) raw_ = config;
  return st;
}

absl::Status Tracker::SetTier(absl::string_view tier) {
  Config patch;
  patch.tier = std::string(tier);
  return Configure(patch);
}

std::string Tracker::tier() const {
  SpinLockHolder l(&mu_);
  return config_.tier.text;
}

std::string Tracker::backend() const {
  SpinLockHolder l(&mu_);
  return config_.backend;
}

bool Tracker::TakeBackendFailure(std::string* message) {
  if (redis_ == nullptr || !redis_->TakeFirstFailure()) return false;
  *message = redis_->health().last_error;
  return true;
}

absl::Status Tracker::Reset() {
  if (redis_ != nullptr) {
    std::vector<std::pair<std::string, RemoteSpec>> todo;
    {
      SpinLockHolder l(&mu_);
      for (const auto& m : models_) {
        SpinLockHolder ml(&m->mu);
        m->local.Clear();
        todo.push_back({m->name, *m->spec});
      }
    }
    absl::Status st = absl::OkStatus();
    for (const auto& [name, spec] : todo) {
      auto r = redis_->Run(RedisClient::Op::kReset, name, spec, Cost{0, 0});
      if (!r.ok() && st.ok()) st = r.status();
    }
    return st;
  }
  SpinLockHolder l(&mu_);
  if (shm_ != nullptr) {
    absl::Status st = absl::OkStatus();
    shm_->ForEach([&](ShmModel* slot) {
      ShmModelLock sl(slot);
      if (!sl.status().ok()) {
        st = sl.status();
        return;
      }
      ShmSegment::Windows(slot).Clear();
    });
    return st;
  }
  for (const auto& m : models_) {
    SpinLockHolder ml(&m->mu);
    m->local.Clear();
  }
  return absl::OkStatus();
}

std::string Tracker::StatsJson() const {
  using nlohmann::ordered_json;
  struct Row {
    WindowLimit limit;
    uint64_t current;
  };
  struct ModelRow {
    std::vector<Row> windows;
    uint64_t blocked_ms = 0;
    RedisClient::Reply::Cap caps[WindowSet::kUnits];
  };
  std::map<std::string, ModelRow> rows;
  std::vector<std::pair<std::string, RemoteSpec>> remote;  // Redis: ask outside mu_
  std::string tier_text, backend;
  // Rows are keyed by the name as shown: a name stored by another process is
  // never trusted to be printable (DisplayName).
  auto snapshot = [&](absl::string_view name, WindowSet& ws, int64_t now, int64_t wall) {
    ModelRow& r = rows[DisplayName(name)];
    r = ModelRow{};
    for (int i = 0; i < ws.nwin; ++i) r.windows.push_back({ws.slots[i].limit, ws.Used(i, now, wall)});
    r.blocked_ms = ws.blocked_until_ms > now ? static_cast<uint64_t>(ws.blocked_until_ms - now) : 0;
    for (int u = 0; u < WindowSet::kUnits; ++u) {
      const ProviderCap& p = ws.caps[u];
      if (p.until_ms > now) {
        r.caps[u].remaining = static_cast<int64_t>(p.used > p.remaining ? 0 : p.remaining - p.used);
        r.caps[u].reset_ms = static_cast<uint64_t>(p.until_ms - now);
      }
      r.caps[u].limit = p.observed_limit;
    }
  };
  {
    SpinLockHolder l(&mu_);
    tier_text = config_.tier.text;
    backend = config_.backend;
    const int64_t wall = clock_.Wall();
    if (shm_ != nullptr) {
      // Slots as checked: identity (ForEachNamed), windows (the lock).
      shm_->ForEachNamed([&](ShmModel* slot, absl::string_view name) {
        ShmModelLock sl(slot);
        if (sl.status().ok()) snapshot(name, ShmSegment::Windows(slot), clock_.Now(), wall);
      });
    } else {
      for (const auto& m : models_) {
        SpinLockHolder ml(&m->mu);
        snapshot(m->name, m->local, clock_.Now(), wall);  // Redis: replaced below if it answers
        if (redis_ != nullptr) remote.push_back({m->name, *m->spec});
      }
    }
    for (const std::string& name : config_.ListedModels()) {
      if (rows.count(name) != 0) continue;
      auto& r = rows[name];
      for (const WindowLimit& w : config_.Resolve(name).windows) r.windows.push_back({w, 0});
      if (redis_ != nullptr) {
        WindowSet ws;
        ws.SetLimits(config_.Resolve(name), clock_.resolution_ms);
        remote.push_back({name, RemoteSpec::From(ws)});
      }
    }
  }
  for (const auto& [name, spec] : remote) {
    auto r = redis_->Run(RedisClient::Op::kStats, name, spec, Cost{0, 0});
    if (!r.ok() || r->used.size() != static_cast<size_t>(spec.n)) continue;
    ModelRow& row = rows[DisplayName(name)];
    row = ModelRow{};
    for (int i = 0; i < spec.n; ++i) {
      WindowLimit w{spec.w[i].unit, spec.w[i].seconds,
                    spec.w[i].limit < 0 ? kUnlimited : static_cast<uint64_t>(spec.w[i].limit), {}};
      std::memcpy(w.calendar_tz, spec.w[i].calendar_tz, sizeof w.calendar_tz);
      row.windows.push_back({w, r->used[i]});
    }
    row.blocked_ms = r->blocked_ms;
    for (int u = 0; u < WindowSet::kUnits; ++u) row.caps[u] = r->caps[u];
  }
  ordered_json out;
  out["tier"] = tier_text;
  out["backend"] = redis_ != nullptr ? redis_->url().Redacted() : backend;
  if (redis_ != nullptr) {
    const RedisClient::Health h = redis_->health();
    ordered_json state;
    state["connected"] = h.connected;
    state["degraded_since_unix_ms"] =
        h.degraded_since_unix_ms != 0 ? ordered_json(h.degraded_since_unix_ms) : ordered_json();
    state["on_error"] = redis_->url().on_error == RedisUrl::OnError::kLocal   ? "local"
                        : redis_->url().on_error == RedisUrl::OnError::kOpen ? "open"
                                                                             : "closed";
    state["errors"] = h.errors;
    state["last_error"] = h.last_error;
    out["backend_state"] = std::move(state);
  }
  static const char* const kUnitNames[] = {"requests", "tokens", "input_tokens", "output_tokens"};
  // "models" and "provider" are written member by member: an ordered_json
  // object finds a key by linear search, so building them as objects would
  // cost the square of the number of models. `rows` is sorted and unique.
  // dump() is told to replace what is not UTF-8 rather than throw: the names
  // are shown names already, this only keeps a future slip from failing the
  // call.
  const auto dump = [](const ordered_json& j) {
    return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
  };
  std::string models, provider;
  for (const auto& [name, row] : rows) {
    ordered_json mj = ordered_json::object();
    for (const Row& r : row.windows) {
      ordered_json w;
      w["current"] = r.current;
      const auto& cap = row.caps[static_cast<int>(r.limit.unit)];
      // What the window really admits: the limit in force (a lower limit
      // the provider reported is adopted), and no more than the provider
      // said remain.
      uint64_t room = LimitInForce(r.limit.limit, r.limit.seconds, r.limit.calendar(), cap.limit);
      if (room != kUnlimited) room = room > r.current ? room - r.current : 0;
      if (cap.remaining >= 0) room = std::min(room, static_cast<uint64_t>(cap.remaining));
      if (r.limit.limit == kUnlimited) {
        w["limit"] = nullptr;
        w["remaining"] = room == kUnlimited ? ordered_json() : ordered_json(room);
        w["usage_percent"] = nullptr;
      } else {
        const uint64_t lim = r.limit.limit;
        w["limit"] = lim;
        w["remaining"] = room;
        double pct = lim == 0 ? 100.0 : 100.0 * static_cast<double>(r.current) /
                                             static_cast<double>(lim);
        w["usage_percent"] = std::round(pct * 1000.0) / 1000.0;
      }
      if (r.limit.calendar()) w["resets_at_midnight"] = r.limit.calendar_tz;
      // The provider's own limit for this unit, where it differs from ours
      // (on the per-minute window): in force when lower, else only shown.
      const uint64_t observed = cap.limit;
      if (r.limit.seconds == 60 && !r.limit.calendar() && observed != 0 &&
          observed != r.limit.limit) {
        w["observed_limit"] = observed;
      }
      mj[WindowName(r.limit)] = std::move(w);
    }
    const std::string key = dump(ordered_json(name));
    absl::StrAppend(&models, models.empty() ? "" : ",", key, ":", dump(mj));
    ordered_json pj = ordered_json::object();
    if (row.blocked_ms > 0) pj["blocked_for_ms"] = row.blocked_ms;
    for (int u = 0; u < WindowSet::kUnits; ++u) {
      const auto& c = row.caps[u];
      if (c.remaining < 0 && c.limit == 0) continue;
      ordered_json cj;
      cj["remaining"] = c.remaining < 0 ? ordered_json() : ordered_json(c.remaining);
      cj["reset_in_ms"] = c.remaining < 0 ? ordered_json() : ordered_json(c.reset_ms);
      cj["limit"] = c.limit == 0 ? ordered_json() : ordered_json(c.limit);
      pj[kUnitNames[u]] = std::move(cj);
    }
    if (!pj.empty()) absl::StrAppend(&provider, provider.empty() ? "" : ",", key, ":", dump(pj));
  }
  std::string text = dump(out);  // {"tier":...,"backend":...}
  text.pop_back();
  absl::StrAppend(&text, ",\"models\":{", models, "}");
  if (!provider.empty()) absl::StrAppend(&text, ",\"provider\":{", provider, "}");
  text += '}';
  return text;
}

namespace {
// Prometheus label values: backslash, double quote and newline escaped.
std::string Label(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}
}  // namespace

std::string Tracker::MetricsText() const {
  // Rendered from the stats, so the two never disagree.
  const nlohmann::json stats = nlohmann::json::parse(StatsJson());
  std::map<std::string, std::pair<uint64_t, uint64_t>> counts;
  {
    SpinLockHolder l(&mu_);
    for (const auto& m : models_) {
      counts[DisplayName(m->name)] = {m->admitted.load(std::memory_order_relaxed),
                         m->refused.load(std::memory_order_relaxed)};
    }
  }
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  const std::string backend = stats["backend"].get<std::string>();
  family("ratetrack_info", "gauge", "The tracker: library version, tier and backend.");
  absl::StrAppend(&out, "ratetrack_info{version=\"", RT_VERSION_MAJOR, ".", RT_VERSION_MINOR, ".",
                  RT_VERSION_PATCH, "\",tier=\"", Label(stats["tier"].get<std::string>()),
                  "\",backend=\"", Label(backend), "\"} 1\n");
  struct Gauge {
    const char* name;
    const char* help;
    const char* field;
  } gauges[] = {
      {"ratetrack_window_usage", "Units counted in the window now (requests or tokens).", "current"},
      {"ratetrack_window_limit", "The window's limit; absent when unlimited.", "limit"},
      {"ratetrack_window_remaining", "What the window still admits; absent when unlimited.",
       "remaining"},
      {"ratetrack_window_observed_limit",
       "The provider's own limit for the window, where it differs from the configured one.",
       "observed_limit"}};
  for (const Gauge& g : gauges) {
    family(g.name, "gauge", g.help);
    for (auto m = stats["models"].begin(); m != stats["models"].end(); ++m) {
      for (auto w = m.value().begin(); w != m.value().end(); ++w) {
        if (!w.value().contains(g.field) || !w.value()[g.field].is_number()) continue;
        absl::StrAppend(&out, g.name, "{model=\"", Label(m.key()), "\",window=\"",
                        Label(w.key()), "\"} ", w.value()[g.field].get<uint64_t>(), "\n");
      }
    }
  }
  family("ratetrack_admitted_total", "counter",
         "Requests admitted by this process (try_acquire, pick).");
  for (const auto& [name, c] : counts) {
    absl::StrAppend(&out, "ratetrack_admitted_total{model=\"", Label(name), "\"} ", c.first, "\n");
  }
  family("ratetrack_refused_total", "counter",
         "Requests refused (RT_LIMITED) by this process.");
  for (const auto& [name, c] : counts) {
    absl::StrAppend(&out, "ratetrack_refused_total{model=\"", Label(name), "\"} ", c.second, "\n");
  }
  family("ratetrack_blocked_seconds", "gauge",
         "How long the model stays refused after a 429 from the provider.");
  if (stats.contains("provider")) {
    for (auto p = stats["provider"].begin(); p != stats["provider"].end(); ++p) {
      if (!p.value().contains("blocked_for_ms")) continue;
      absl::StrAppend(&out, "ratetrack_blocked_seconds{model=\"", Label(p.key()), "\"} ",
                      static_cast<double>(p.value()["blocked_for_ms"].get<uint64_t>()) / 1000.0,
                      "\n");
    }
  }
  family("ratetrack_backend_errors_total", "counter",
         "Failures of the shared backend seen by this process.");
  const bool has_state = stats.contains("backend_state");
  absl::StrAppend(&out, "ratetrack_backend_errors_total{backend=\"", Label(backend), "\"} ",
                  has_state ? stats["backend_state"]["errors"].get<uint64_t>() : 0, "\n");
  family("ratetrack_backend_up", "gauge",
         "1 when the backend answers (always 1 for memory and shared memory).");
  absl::StrAppend(&out, "ratetrack_backend_up{backend=\"", Label(backend), "\"} ",
                  has_state ? (stats["backend_state"]["connected"].get<bool>() ? 1 : 0) : 1,
                  "\n");
  return out;
}

void Tracker::LockAllForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  g_registry_mu.Lock();
  for (Tracker* t = g_registry_head; t != nullptr; t = t->next_) {
    if (t->redis_ != nullptr) t->redis_->LockForFork();
    t->mu_.Lock();
    for (const auto& m : t->models_) m->mu.Lock();
  }
}

void Tracker::UnlockAllForFork(bool child) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (Tracker* t = g_registry_head; t != nullptr; t = t->next_) {
    for (const auto& m : t->models_) m->mu.Unlock();
    t->mu_.Unlock();
    if (t->redis_ != nullptr) t->redis_->UnlockForFork(child);
  }
  g_registry_mu.Unlock();
}

}  // namespace ratetrack
