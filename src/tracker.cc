#include "tracker.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"
#include "status.h"

namespace ratetrack {

namespace {

constexpr size_t kInitialSlots = 64;
// A hard bound on distinct models per tracker, so a caller that invents model
// names (a bug) cannot grow memory without limit.
constexpr size_t kMaxModels = 1 << 16;

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

int64_t Clock::MonotonicCoarseMs() {
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
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

// A window and its limit, together in the cache line the hot path touches.
struct alignas(64) WindowSlot {
  WindowLimit limit;
  SlidingWindow window;
};

struct Tracker::ModelState {
  ModelState(absl::string_view n, size_t h) : name(n), hash(h) {}
  const std::string name;
  const size_t hash;
  SpinLock mu;
  int nwin ABSL_GUARDED_BY(mu) = 0;
  WindowSlot slots[ModelLimits::kMaxWindows] ABSL_GUARDED_BY(mu);

  // Installs new limits, keeping the usage of windows whose (unit, length)
  // stays the same; new windows start empty.
  void SetLimits(const ModelLimits& l, int64_t guard_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<WindowSlot> next(l.windows.size());
    for (size_t i = 0; i < next.size(); ++i) {
      next[i].limit = l.windows[i];
      next[i].window = SlidingWindow(l.windows[i].seconds * 1000, guard_ms);
      for (int j = 0; j < nwin; ++j) {
        if (slots[j].limit.unit == l.windows[i].unit &&
            slots[j].limit.seconds == l.windows[i].seconds) {
          next[i].window = slots[j].window;
        }
      }
    }
    for (size_t i = 0; i < next.size(); ++i) slots[i] = next[i];
    nwin = static_cast<int>(next.size());
  }
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

absl::StatusOr<std::unique_ptr<Tracker>> Tracker::Create(const Config& config,
                                                         Clock clock) {
  auto eff = EffectiveConfig::From(config);
  if (!eff.ok()) return eff.status();
  return std::unique_ptr<Tracker>(new Tracker(std::move(*eff), config, clock));
}

Tracker::Tracker(EffectiveConfig config, Config raw, Clock clock)
    : clock_(clock),
      secret_(NewSecret(this)),
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

uint64_t Tracker::MakeTicket(int64_t at_ms, size_t model_hash,
                             uint64_t tokens) const {
  const uint64_t t = static_cast<uint64_t>(at_ms) + 1;
  const uint64_t check =
      Mix(secret_ ^ Mix(t) ^ Mix(tokens ^ 0x5bd1e995ULL) ^ Mix(model_hash + 1)) &
      ((uint64_t{1} << kCheckBits) - 1);
  return t << kCheckBits | check;
}

// Model names are short; an inlined multiply-mix hash over 8-byte words
// costs a few cycles, where a call into a hashing library costs dozens. The
// table only needs spread, not resistance to chosen collisions (a caller can
// always slow itself down by inventing names; kMaxModels bounds the harm).
size_t Tracker::HashName(absl::string_view name) {
  const char* p = name.data();
  size_t n = name.size();
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0x94d049bb133111ebULL;
  return static_cast<size_t>(h ^ (h >> 31));
}

Tracker::ModelState* Tracker::Find(absl::string_view model, size_t hash) const {
  const Table* t = table_.load(std::memory_order_acquire);
  for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    ModelState* s = t->slots[i].load(std::memory_order_acquire);
    if (s == nullptr) return nullptr;
    if (s->hash == hash && s->name.size() == model.size() &&
        std::memcmp(s->name.data(), model.data(), model.size()) == 0) {
      return s;
    }
  }
}

absl::StatusOr<Tracker::ModelState*> Tracker::FindOrCreate(
    absl::string_view model) {
  const size_t hash = HashName(model);
  ModelState* s = Find(model, hash);
  if (s != nullptr) return s;
  SpinLockHolder l(&mu_);
  s = Find(model, hash);
  if (s != nullptr) return s;
  if (models_.size() >= kMaxModels) {
    return NoMemError(absl::StrCat("too many distinct models (", kMaxModels,
                                   "); is a model name built from request data?"));
  }
  return CreateLocked(model, hash);
}

Tracker::ModelState* Tracker::CreateLocked(absl::string_view model,
                                           size_t hash) {
  auto owned = std::make_unique<ModelState>(model, hash);
  ModelState* s = owned.get();
  {
    SpinLockHolder ml(&s->mu);
    s->SetLimits(config_.Resolve(model), clock_.resolution_ms);
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

Decision Tracker::Decide(ModelState* m, uint64_t tokens, Mode mode) {
  SpinLockHolder l(&m->mu);
  // Read under the lock: the time booked is the time of the decision, so
  // buckets are filled in time order whatever the scheduler does.
  const int64_t now = clock_.Now();
  bool fits = true;
  const int n = m->nwin;
  for (int i = 0; i < n; ++i) {
    SlidingWindow& w = m->slots[i].window;
    w.Advance(now);
    const uint64_t limit = m->slots[i].limit.limit;
    if (limit == kUnlimited) continue;
    const uint64_t cost = m->slots[i].limit.unit == Unit::kRequests ? 1 : tokens;
    if (cost > limit) return {RT_E_TOO_LARGE, RT_WAIT_NEVER, 0};
    fits &= w.Fits(cost, limit);
  }
  if (!fits) {
    int64_t wait = 1;
    for (int i = 0; i < n; ++i) {
      const uint64_t limit = m->slots[i].limit.limit;
      if (limit == kUnlimited) continue;
      const uint64_t cost = m->slots[i].limit.unit == Unit::kRequests ? 1 : tokens;
      wait = std::max(wait, m->slots[i].window.WaitMs(now, cost, limit));
    }
    return {RT_LIMITED, static_cast<uint64_t>(wait), 0};
  }
  if (mode == Mode::kCheck) return {RT_OK, 0, 0};
  for (int i = 0; i < n; ++i) {
    m->slots[i].window.Add(m->slots[i].limit.unit == Unit::kRequests ? 1 : tokens);
  }
  return {RT_OK, 0, mode == Mode::kAcquireWithGrant ? MakeTicket(now, m->hash, tokens) : 0};
}

Decision Tracker::TryAcquire(absl::string_view model, uint64_t tokens,
                             bool want_grant) {
  const Mode mode = want_grant ? Mode::kAcquireWithGrant : Mode::kAcquire;
  ModelState* m = Find(model, HashName(model));
  if (m != nullptr) return Decide(m, tokens, mode);
  auto made = FindOrCreate(model);
  if (!made.ok()) return {RT_E_NOMEM, 0, 0};
  return Decide(*made, tokens, mode);
}

Decision Tracker::Check(absl::string_view model, uint64_t tokens) {
  ModelState* m = Find(model, HashName(model));
  if (m != nullptr) return Decide(m, tokens, Mode::kCheck);
  auto made = FindOrCreate(model);
  if (!made.ok()) return {RT_E_NOMEM, 0, 0};
  return Decide(*made, tokens, Mode::kCheck);
}

absl::Status Tracker::Record(absl::string_view model, uint64_t tokens) {
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  SpinLockHolder l(&m->mu);
  const int64_t now = clock_.Now();
  for (int i = 0; i < m->nwin; ++i) {
    m->slots[i].window.Advance(now);
    m->slots[i].window.Add(m->slots[i].limit.unit == Unit::kRequests ? 1 : tokens);
  }
  return absl::OkStatus();
}

absl::Status Tracker::Settle(absl::string_view model, uint64_t grant,
                             uint64_t granted_tokens, uint64_t actual_tokens) {
  if (grant == 0) return InvalidError("grant ticket 0 is not a grant");
  const int64_t at = static_cast<int64_t>(grant >> kCheckBits) - 1;
  if (at < 0 || MakeTicket(at, HashName(model), granted_tokens) != grant) {
    return InvalidError(
        "the grant ticket does not match this tracker, model and granted_tokens "
        "(a ticket from another tracker or model, or not the tokens it was granted for)");
  }
  auto found = FindOrCreate(model);
  if (!found.ok()) return found.status();
  ModelState* m = *found;
  SpinLockHolder l(&m->mu);
  const int64_t now = clock_.Now();
  if (at > now) return InvalidError("the grant ticket is from the future");
  if (granted_tokens == actual_tokens) return absl::OkStatus();
  const bool top_up = actual_tokens > granted_tokens;
  const uint64_t delta =
      top_up ? actual_tokens - granted_tokens : granted_tokens - actual_tokens;
  for (int i = 0; i < m->nwin; ++i) {
    if (m->slots[i].limit.unit != Unit::kTokens) continue;
    m->slots[i].window.Advance(now);
    m->slots[i].window.Adjust(at, delta, top_up);
  }
  return absl::OkStatus();
}

void Tracker::ApplyLocked(EffectiveConfig config) {
  config_ = std::move(config);
  for (const auto& m : models_) {
    SpinLockHolder ml(&m->mu);
    m->SetLimits(config_.Resolve(m->name), clock_.resolution_ms);
  }
}

absl::Status Tracker::Configure(const Config& patch) {
  SpinLockHolder l(&mu_);
  Config merged = raw_;
  merged.Merge(patch);
  auto eff = EffectiveConfig::From(merged);
  if (!eff.ok()) return eff.status();
  raw_ = std::move(merged);
  ApplyLocked(std::move(*eff));
  return absl::OkStatus();
}

absl::Status Tracker::Reconfigure(const Config& config) {
  SpinLockHolder l(&mu_);
  auto eff = EffectiveConfig::From(config);
  if (!eff.ok()) return eff.status();
  raw_ = config;
  ApplyLocked(std::move(*eff));
  return absl::OkStatus();
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

void Tracker::Reset() {
  SpinLockHolder l(&mu_);
  for (const auto& m : models_) {
    SpinLockHolder ml(&m->mu);
    for (int i = 0; i < m->nwin; ++i) m->slots[i].window.Clear();
  }
}

std::string Tracker::StatsJson() const {
  using nlohmann::ordered_json;
  struct Row {
    WindowLimit limit;
    uint64_t current;
  };
  std::map<std::string, std::vector<Row>> rows;
  std::string tier_text, backend;
  {
    SpinLockHolder l(&mu_);
    tier_text = config_.tier.text;
    backend = config_.backend;
    const int64_t now = clock_.Now();
    for (const auto& m : models_) {
      SpinLockHolder ml(&m->mu);
      auto& r = rows[m->name];
      for (int i = 0; i < m->nwin; ++i) {
        m->slots[i].window.Advance(now);
        r.push_back({m->slots[i].limit, m->slots[i].window.used()});
      }
    }
    for (const std::string& name : config_.ListedModels()) {
      if (rows.count(name) != 0) continue;
      auto& r = rows[name];
      for (const WindowLimit& w : config_.Resolve(name).windows) r.push_back({w, 0});
    }
  }
  ordered_json out;
  out["tier"] = tier_text;
  out["backend"] = backend;
  ordered_json models = ordered_json::object();
  for (const auto& [name, windows] : rows) {
    ordered_json mj = ordered_json::object();
    for (const Row& r : windows) {
      ordered_json w;
      w["current"] = r.current;
      if (r.limit.limit == kUnlimited) {
        w["limit"] = nullptr;
        w["remaining"] = nullptr;
        w["usage_percent"] = nullptr;
      } else {
        const uint64_t lim = r.limit.limit;
        w["limit"] = lim;
        w["remaining"] = lim > r.current ? lim - r.current : 0;
        double pct = lim == 0 ? 100.0 : 100.0 * static_cast<double>(r.current) /
                                             static_cast<double>(lim);
        w["usage_percent"] = std::round(pct * 1000.0) / 1000.0;
      }
      mj[WindowName(r.limit.unit, r.limit.seconds)] = std::move(w);
    }
    models[name] = std::move(mj);
  }
  out["models"] = std::move(models);
  return out.dump();
}

void Tracker::LockAllForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  g_registry_mu.Lock();
  for (Tracker* t = g_registry_head; t != nullptr; t = t->next_) {
    t->mu_.Lock();
    for (const auto& m : t->models_) m->mu.Lock();
  }
}

void Tracker::UnlockAllForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (Tracker* t = g_registry_head; t != nullptr; t = t->next_) {
    for (const auto& m : t->models_) m->mu.Unlock();
    t->mu_.Unlock();
  }
  g_registry_mu.Unlock();
}

}  // namespace ratetrack
