// The C boundary: argument checks, conversion, and turning absl::Status and
// C++ exceptions into RT_* codes. No rate-limit logic lives here.
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "config.h"
#include "provider_headers.h"
#include "shm_segment.h"
#include "ratetrack.h"
#include "spin_lock.h"
#include "status.h"
#include "tracker.h"

using ratetrack::Config;
using ratetrack::Decision;
using ratetrack::SpinLock;
using ratetrack::SpinLockHolder;
using ratetrack::Tracker;

struct rt_tracker {
  std::atomic<Tracker*> impl{nullptr};
  bool global = false;
};

namespace {

thread_local std::string t_last_error;

// A 429 without a usable Retry-After holds the model back this long.
constexpr uint64_t kDefaultRetryAfterMs = 1000;

void SetError(const char* fn, absl::string_view msg) {
  t_last_error = absl::StrCat(fn, ": ", msg);
}

int Fail(const char* fn, const absl::Status& s) {
  SetError(fn, s.message());
  return ratetrack::StatusToCode(s);
}

// The first failure of a shared backend is told in rt_last_error even when
// the on_error policy let the call succeed.
void NoteBackendFailure(const char* fn, Tracker* impl) {
  std::string failure;
  if (impl->TakeBackendFailure(&failure)) SetError(fn, failure);
}

int Invalid(const char* fn, const char* what) {
  SetError(fn, what);
  return RT_E_INVALID;
}

// Turns the exception being handled into a status (call only in a catch
// block). Out of line and cold: the entry points' hot code stays small.
__attribute__((noinline, cold)) int CaughtToCode(const char* fn) noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    SetError(fn, "out of memory");
    return RT_E_NOMEM;
  } catch (const std::exception& e) {
    SetError(fn, absl::StrCat("internal error: ", e.what()));
    return RT_E_INTERNAL;
  } catch (...) {
    SetError(fn, "internal error: unknown exception");
    return RT_E_INTERNAL;
  }
}

// Runs `body` and turns any escaping exception into a status (XGBoost's
// API_BEGIN/API_END, as one helper). The hot entry points (acquire, check,
// record) spell the same try/catch out instead, so that nothing builds a
// closure per call.
template <typename Body>
__attribute__((always_inline)) inline int Guard(const char* fn, Body&& body) noexcept {
  try {
    return body();
  } catch (...) {
    return CaughtToCode(fn);
  }
}

// The process-wide global. `impl` is made once and never freed; `created`
// is what rt_reset(NULL) turns off.
struct Global {
  SpinLock mu;
  std::atomic<bool> created{false};
  Config configured ABSL_GUARDED_BY(mu);  // rt_global_configure documents
};
Global g_global;
rt_tracker g_handle{nullptr, true};

void ForkPrepare() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  g_global.mu.Lock();
  Tracker::LockAllForFork();
}
void ForkParent() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Tracker::UnlockAllForFork(/*child=*/false);
  g_global.mu.Unlock();
}
void ForkChild() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Tracker::UnlockAllForFork(/*child=*/true);
  g_global.mu.Unlock();
}
[[maybe_unused]] const int g_fork_registered =
    pthread_atfork(&ForkPrepare, &ForkParent, &ForkChild);

// Checks the common arguments; returns the tracker or nullptr (error set).
Tracker* Resolve(const char* fn, rt_tracker* t, const char* model, int* rc) {
  if (t == nullptr) {
    *rc = Invalid(fn, "tracker handle is NULL");
    return nullptr;
  }
  if (model == nullptr || model[0] == '\0') {
    *rc = Invalid(fn, model == nullptr ? "model is NULL" : "model is empty");
    return nullptr;
  }
  Tracker* impl = t->impl.load(std::memory_order_acquire);
  if (impl == nullptr) *rc = Invalid(fn, "tracker handle is not open");
  return impl;
}

// Tells why an acquire did not return RT_OK (cold: errors and refusals
// that need words).
__attribute__((noinline, cold)) void ExplainAcquire(const char* fn, Tracker* impl,
                                                    const char* model,
                                                    const ratetrack::Cost& cost,
                                                    const Decision& d) {
  if (d.code == RT_E_TOO_LARGE) {
    SetError(fn, absl::StrCat(cost.input, " input and ", cost.output,
                              " output tokens exceed a limit of '", model, "' outright"));
  } else if (d.code < 0) {
    SetError(fn, impl->Explain(model, d.code));
  }
  if (d.degraded) NoteBackendFailure(fn, impl);
}

__attribute__((always_inline)) inline int Acquire(const char* fn, rt_tracker* t,
                                                  const char* model,
                                                  const ratetrack::Cost& cost,
                                                  uint64_t* retry_after_ms,
                                                  uint64_t* grant) noexcept {
  if (retry_after_ms != nullptr) *retry_after_ms = 0;
  if (grant != nullptr) *grant = 0;
  int rc = RT_OK;
  Tracker* impl = Resolve(fn, t, model, &rc);
  if (impl == nullptr) return rc;
  try {
    const Decision d =
        impl->TryAcquire(ratetrack::NameKey::FromCString(model), cost, grant != nullptr);
    if (retry_after_ms != nullptr) *retry_after_ms = d.wait_ms;
    if (grant != nullptr) *grant = d.grant;
    if (__builtin_expect(d.code < 0 || d.degraded != 0, 0)) {
      ExplainAcquire(fn, impl, model, cost, d);
    }
    return d.code;
  } catch (...) {
    return CaughtToCode(fn);
  }
}

char* CopyOut(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

}  // namespace

extern "C" {

int rt_version_number(void) { return RT_VERSION_NUMBER; }

const char* rt_version_string(void) { return RATETRACK_VERSION_STRING; }

const char* rt_status_string(int status) {
  switch (status) {
    case RT_OK: return "RT_OK: done";
    case RT_LIMITED: return "RT_LIMITED: a limit would be exceeded; retry later";
    case RT_E_INVALID: return "RT_E_INVALID: invalid argument";
    case RT_E_CONFIG: return "RT_E_CONFIG: invalid configuration";
    case RT_E_TOO_LARGE: return "RT_E_TOO_LARGE: the cost exceeds a limit outright";
    case RT_E_BACKEND: return "RT_E_BACKEND: the shared store failed";
    case RT_E_NOMEM: return "RT_E_NOMEM: out of memory";
    case RT_E_INTERNAL: return "RT_E_INTERNAL: internal error";
    default: return "unknown status code";
  }
}

const char* rt_last_error(void) { return t_last_error.c_str(); }

void rt_free(void* p) { std::free(p); }

int rt_global_get_ex(const char* tier, rt_tracker** out) {
  if (out == nullptr) return Invalid("rt_global_get", "out is NULL");
  *out = nullptr;
  if (tier == nullptr && g_global.created.load(std::memory_order_acquire)) {
    *out = &g_handle;
    return RT_OK;
  }
  return Guard("rt_global_get", [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> int {
    SpinLockHolder l(&g_global.mu);
    Tracker* impl = g_handle.impl.load(std::memory_order_acquire);
    if (!g_global.created.load(std::memory_order_relaxed)) {
      auto env = ratetrack::ConfigFromEnvironment();
      if (!env.ok()) return Fail("rt_global_get", env.status());
      Config c = *env;
      const char* env_backend = std::getenv("RATETRACK_BACKEND");
      if (env_backend != nullptr && env_backend[0] != '\0') {
        absl::Status b = ratetrack::CheckBackend(env_backend);
        if (!b.ok()) {
          return Fail("rt_global_get",
                      ratetrack::ConfigError(absl::StrCat("RATETRACK_BACKEND: ", b.message())));
        }
        c.backend = env_backend;
      }
      c.Merge(g_global.configured);
      const char* env_tier = std::getenv("RATETRACK_TIER");
      if (tier != nullptr) {
        c.tier = tier;
      } else if (env_tier != nullptr && env_tier[0] != '\0') {
        c.tier = env_tier;
      }
      if (impl == nullptr || impl->backend() != c.backend.value_or("memory")) {
        // First creation, or re-creation (after rt_reset(NULL)) on another
        // backend. A replaced tracker is never freed: a thread may still be
        // using it through the handle.
        auto made = Tracker::Create(c, ratetrack::Clock::Monotonic());
        if (!made.ok()) return Fail("rt_global_get", made.status());
        g_handle.impl.store(made->release(), std::memory_order_release);
      } else {
        absl::Status s = impl->Reconfigure(c);
        if (!s.ok()) return Fail("rt_global_get", s);
      }
      g_global.created.store(true, std::memory_order_release);
    } else if (tier != nullptr && impl->tier() != tier) {
      absl::Status s = impl->SetTier(tier);
      if (!s.ok()) return Fail("rt_global_get", s);
    }
    *out = &g_handle;
    return RT_OK;
  });
}

rt_tracker* rt_global_get(const char* tier) {
  rt_tracker* out = nullptr;
  rt_global_get_ex(tier, &out);
  return out;
}

int rt_global_configure(const char* config_json) {
  if (config_json == nullptr) return Invalid("rt_global_configure", "config_json is NULL");
  return Guard("rt_global_configure", [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> int {
    auto patch = ratetrack::ParseConfig(config_json);
    if (!patch.ok()) return Fail("rt_global_configure", patch.status());
    SpinLockHolder l(&g_global.mu);
    Config merged = g_global.configured;
    merged.Merge(*patch);
    Tracker* impl = g_handle.impl.load(std::memory_order_acquire);
    if (g_global.created.load(std::memory_order_relaxed)) {
      absl::Status s = impl->Configure(*patch);
      if (!s.ok()) return Fail("rt_global_configure", s);
    } else {
      auto eff = ratetrack::EffectiveConfig::From(merged);  // validate only
      if (!eff.ok()) return Fail("rt_global_configure", eff.status());
    }
    g_global.configured = std::move(merged);
    return RT_OK;
  });
}

int rt_open_ex(const char* config_json, rt_tracker** out) {
  if (out == nullptr) return Invalid("rt_open", "out is NULL");
  *out = nullptr;
  return Guard("rt_open", [&]() -> int {
    auto config = ratetrack::ParseConfig(config_json);
    if (!config.ok()) return Fail("rt_open", config.status());
    auto made = Tracker::Create(*config, ratetrack::Clock::Monotonic());
    if (!made.ok()) return Fail("rt_open", made.status());
    auto handle = std::make_unique<rt_tracker>();
    handle->impl.store(made->release(), std::memory_order_release);
    *out = handle.release();
    return RT_OK;
  });
}

rt_tracker* rt_open(const char* config_json) {
  rt_tracker* out = nullptr;
  rt_open_ex(config_json, &out);
  return out;
}

int rt_configure(rt_tracker* t, const char* config_json) {
  if (t == nullptr) return Invalid("rt_configure", "tracker handle is NULL");
  if (t->global) return rt_global_configure(config_json);
  if (config_json == nullptr) return Invalid("rt_configure", "config_json is NULL");
  return Guard("rt_configure", [&]() -> int {
    auto patch = ratetrack::ParseConfig(config_json);
    if (!patch.ok()) return Fail("rt_configure", patch.status());
    absl::Status s = t->impl.load(std::memory_order_acquire)->Configure(*patch);
    return s.ok() ? RT_OK : Fail("rt_configure", s);
  });
}

void rt_close(rt_tracker* t) {
  if (t == nullptr || t->global) return;
  delete t->impl.load(std::memory_order_acquire);
  delete t;
}

namespace {
__attribute__((noinline, cold)) int CheckFailed(const char* fn, Tracker* impl,
                                                const char* model, uint64_t tokens,
                                                int code, const char* never) {
  SetError(fn, code == RT_E_TOO_LARGE
                   ? absl::StrCat(tokens, " tokens exceed a limit of '", model, "' outright",
                                  never)
                   : impl->Explain(model, code));
  return code;
}
}  // namespace

int rt_can_make(rt_tracker* t, const char* model, uint64_t tokens) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_can_make", t, model, &rc);
  if (impl == nullptr) return rc;
  try {
    const Decision d =
        impl->Check(ratetrack::NameKey::FromCString(model), ratetrack::Cost{tokens, 0});
    if (d.code == RT_OK) return 1;
    if (d.code == RT_LIMITED) return 0;
    return CheckFailed("rt_can_make", impl, model, tokens, d.code, "");
  } catch (...) {
    return CaughtToCode("rt_can_make");
  }
}

int rt_record(rt_tracker* t, const char* model, uint64_t tokens) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_record", t, model, &rc);
  if (impl == nullptr) return rc;
  try {
    const absl::Status s =
        impl->Record(ratetrack::NameKey::FromCString(model), ratetrack::Cost{tokens, 0});
    return s.ok() ? RT_OK : Fail("rt_record", s);
  } catch (...) {
    return CaughtToCode("rt_record");
  }
}

int rt_try_acquire(rt_tracker* t, const char* model, uint64_t tokens,
                   uint64_t* retry_after_ms) {
  return Acquire("rt_try_acquire", t, model, ratetrack::Cost{tokens, 0}, retry_after_ms,
                 nullptr);
}

int rt_try_acquire_grant(rt_tracker* t, const char* model, uint64_t tokens,
                         uint64_t* retry_after_ms, uint64_t* grant) {
  return Acquire("rt_try_acquire_grant", t, model, ratetrack::Cost{tokens, 0}, retry_after_ms,
                 grant);
}

int rt_acquire(rt_tracker* t, const char* model, uint64_t tokens,
               uint64_t timeout_ms, uint64_t* grant) {
  using std::chrono::milliseconds;
  using std::chrono::steady_clock;
  const auto start = steady_clock::now();
  for (;;) {
    uint64_t wait = 0;
    int rc = Acquire("rt_acquire", t, model, ratetrack::Cost{tokens, 0}, &wait, grant);
    if (rc != RT_LIMITED) return rc;
    const uint64_t elapsed = static_cast<uint64_t>(
        std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count());
    if (timeout_ms != RT_WAIT_NEVER && elapsed >= timeout_ms) return RT_LIMITED;
    // Sleep until the request should fit, but wake at least every second
    // (a refund or reset elsewhere may make room sooner).
    uint64_t nap = std::min<uint64_t>(wait, 1000);
    if (timeout_ms != RT_WAIT_NEVER) nap = std::min(nap, timeout_ms - elapsed);
    nap = std::max<uint64_t>(nap, 1);
    struct timespec ts = {static_cast<time_t>(nap / 1000),
                          static_cast<long>((nap % 1000) * 1000000)};
    nanosleep(&ts, nullptr);
  }
}

int rt_settle(rt_tracker* t, const char* model, uint64_t grant,
              uint64_t granted_tokens, uint64_t actual_tokens) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_settle", t, model, &rc);
  if (impl == nullptr) return rc;
  return Guard("rt_settle", [&]() -> int {
    absl::Status s = impl->Settle(model, grant, ratetrack::Cost{granted_tokens, 0},
                                  ratetrack::Cost{actual_tokens, 0});
    return s.ok() ? RT_OK : Fail("rt_settle", s);
  });
}

int rt_record_tokens(rt_tracker* t, const char* model, uint64_t input_tokens,
                     uint64_t output_tokens) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_record_tokens", t, model, &rc);
  if (impl == nullptr) return rc;
  return Guard("rt_record_tokens", [&]() -> int {
    absl::Status s = impl->RecordTokens(model, ratetrack::Cost{input_tokens, output_tokens});
    return s.ok() ? RT_OK : Fail("rt_record_tokens", s);
  });
}

int rt_wait_time(rt_tracker* t, const char* model, uint64_t tokens,
                 uint64_t* wait_ms) {
  if (wait_ms == nullptr) return Invalid("rt_wait_time", "wait_ms is NULL");
  *wait_ms = 0;
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_wait_time", t, model, &rc);
  if (impl == nullptr) return rc;
  return Guard("rt_wait_time", [&]() -> int {
    Decision d = impl->Check(ratetrack::NameKey::FromCString(model), ratetrack::Cost{tokens, 0});
    *wait_ms = d.wait_ms;
    if (d.code == RT_LIMITED || d.code == RT_OK) return RT_OK;
    return CheckFailed("rt_wait_time", impl, model, tokens, d.code, ": never");
  });
}

int rt_reset(rt_tracker* t) {
  return Guard("rt_reset", [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> int {
    if (t == nullptr) {
      SpinLockHolder l(&g_global.mu);
      Tracker* impl = g_handle.impl.load(std::memory_order_acquire);
      absl::Status s = impl != nullptr ? impl->Reset() : absl::OkStatus();
      g_global.created.store(false, std::memory_order_release);
      return s.ok() ? RT_OK : Fail("rt_reset", s);
    }
    Tracker* impl = t->impl.load(std::memory_order_acquire);
    if (impl == nullptr) return Invalid("rt_reset", "tracker handle is not open");
    absl::Status s = impl->Reset();
    return s.ok() ? RT_OK : Fail("rt_reset", s);
  });
}

int rt_stats_json_ex(rt_tracker* t, char** json_out) {
  if (json_out == nullptr) return Invalid("rt_stats_json", "json_out is NULL");
  *json_out = nullptr;
  return Guard("rt_stats_json", [&]() -> int {
    if (t == nullptr) {
      Tracker* impl = g_handle.impl.load(std::memory_order_acquire);
      if (!g_global.created.load(std::memory_order_acquire) || impl == nullptr) {
        *json_out = CopyOut("null");
        return RT_OK;
      }
      t = &g_handle;
    }
    Tracker* impl = t->impl.load(std::memory_order_acquire);
    if (impl == nullptr) return Invalid("rt_stats_json", "tracker handle is not open");
    *json_out = CopyOut(impl->StatsJson());
    return RT_OK;
  });
}

char* rt_stats_json(rt_tracker* t) {
  char* out = nullptr;
  rt_stats_json_ex(t, &out);
  return out;
}

int rt_try_acquire_io(rt_tracker* t, const char* model, uint64_t input_tokens,
                      uint64_t output_tokens, uint64_t* retry_after_ms, uint64_t* grant) {
  return Acquire("rt_try_acquire_io", t, model, ratetrack::Cost{input_tokens, output_tokens},
                 retry_after_ms, grant);
}

int rt_settle_io(rt_tracker* t, const char* model, uint64_t grant, uint64_t granted_input,
                 uint64_t granted_output, uint64_t actual_input, uint64_t actual_output) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_settle_io", t, model, &rc);
  if (impl == nullptr) return rc;
  return Guard("rt_settle_io", [&]() -> int {
    absl::Status s = impl->Settle(model, grant, ratetrack::Cost{granted_input, granted_output},
                                  ratetrack::Cost{actual_input, actual_output});
    return s.ok() ? RT_OK : Fail("rt_settle_io", s);
  });
}

int rt_pick(rt_tracker* t, const char* const* models, size_t count, uint64_t input_tokens,
            uint64_t output_tokens, size_t* picked, uint64_t* retry_after_ms, uint64_t* grant) {
  if (retry_after_ms != nullptr) *retry_after_ms = 0;
  if (grant != nullptr) *grant = 0;
  if (t == nullptr) return Invalid("rt_pick", "tracker handle is NULL");
  if (models == nullptr || count == 0) return Invalid("rt_pick", "no candidate models");
  if (picked == nullptr) return Invalid("rt_pick", "picked is NULL");
  std::vector<absl::string_view> names;
  for (size_t i = 0; i < count; ++i) {
    if (models[i] == nullptr || models[i][0] == '\0') {
      SetError("rt_pick", absl::StrCat("candidate ", i, " is NULL or empty"));
      return RT_E_INVALID;
    }
    names.push_back(models[i]);
  }
  Tracker* impl = t->impl.load(std::memory_order_acquire);
  if (impl == nullptr) return Invalid("rt_pick", "tracker handle is not open");
  return Guard("rt_pick", [&]() -> int {
    size_t index = 0;
    Decision d = impl->Pick(names, ratetrack::Cost{input_tokens, output_tokens},
                            grant != nullptr, &index);
    *picked = index;
    if (retry_after_ms != nullptr) *retry_after_ms = d.wait_ms;
    if (grant != nullptr) *grant = d.grant;
    if (d.code == RT_E_TOO_LARGE) {
      SetError("rt_pick", "the request exceeds a limit of every candidate outright");
    } else if (d.code < 0) {
      SetError("rt_pick", impl->Explain(names[index], d.code));
    }
    if (d.degraded) NoteBackendFailure("rt_pick", impl);
    return d.code;
  });
}

int rt_observe_headers(rt_tracker* t, const char* model, const char* const* names,
                       const char* const* values, size_t count) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_observe_headers", t, model, &rc);
  if (impl == nullptr) return rc;
  if (count > 0 && (names == nullptr || values == nullptr)) {
    return Invalid("rt_observe_headers", "names or values is NULL");
  }
  return Guard("rt_observe_headers", [&]() -> int {
    std::vector<ratetrack::HeaderView> headers;
    for (size_t i = 0; i < count; ++i) {
      if (names[i] == nullptr || values[i] == nullptr) continue;  // skipped, like a bad header
      headers.push_back({names[i], values[i]});
    }
    auto used = impl->Observe(model, headers);
    return used.ok() ? RT_OK : Fail("rt_observe_headers", used.status());
  });
}

int rt_report_limited(rt_tracker* t, const char* model, const char* retry_after) {
  int rc = RT_OK;
  Tracker* impl = Resolve("rt_report_limited", t, model, &rc);
  if (impl == nullptr) return rc;
  return Guard("rt_report_limited", [&]() -> int {
    uint64_t ms = kDefaultRetryAfterMs;
    if (retry_after != nullptr && retry_after[0] != '\0') {
      auto parsed = ratetrack::ParseRetryAfterMs(retry_after, ratetrack::Clock::PreciseRealtimeMs());
      if (parsed) ms = *parsed;
    }
    absl::Status s = impl->ReportLimited(model, ms);
    return s.ok() ? RT_OK : Fail("rt_report_limited", s);
  });
}

int rt_metrics_text(rt_tracker* t, char** text_out) {
  if (text_out == nullptr) return Invalid("rt_metrics_text", "text_out is NULL");
  *text_out = nullptr;
  return Guard("rt_metrics_text", [&]() -> int {
    if (t == nullptr) {
      if (!g_global.created.load(std::memory_order_acquire)) {
        *text_out = CopyOut("# libratetrack: the global tracker has not been created\n");
        return RT_OK;
      }
      t = &g_handle;
    }
    Tracker* impl = t->impl.load(std::memory_order_acquire);
    if (impl == nullptr) return Invalid("rt_metrics_text", "tracker handle is not open");
    *text_out = CopyOut(impl->MetricsText());
    return RT_OK;
  });
}

int rt_shm_remove(const char* name) {
  if (name == nullptr) return Invalid("rt_shm_remove", "name is NULL");
  return Guard("rt_shm_remove", [&]() -> int {
    absl::Status s = ratetrack::ShmSegment::Remove(name);
    return s.ok() ? RT_OK : Fail("rt_shm_remove", s);
  });
}

int rt_shm_list(char** json_out) {
  if (json_out == nullptr) return Invalid("rt_shm_list", "json_out is NULL");
  *json_out = nullptr;
  return Guard("rt_shm_list", [&]() -> int {
    *json_out = CopyOut(ratetrack::ShmSegment::ListJson());
    return RT_OK;
  });
}

}  // extern "C"
