// Fuzz target: a sequence of calls on one memory tracker, on a manual clock.
//
// Input: one call a line, words separated by spaces (numbers that do not
// parse are 0; "max" is 2^64-1):
//   a M T          acquire T tokens (with a grant ticket)
//   ai M I O       acquire I input and O output tokens
//   c M T          check (books nothing)
//   r M T / ri M I O   record
//   rt M I O       book tokens to a counted request (rt_record_tokens)
//   s K I [O]      settle grant K (the K-th ticket so far) to I input, O output
//   sx K G I       settle grant K claiming G granted tokens (usually wrong)
//   p T M1 M2 ...  pick among models
//   o M NAME VALUE...  observe one response header
//   l M VALUE...   a 429 with this Retry-After (as rt_report_limited reads it)
//   b M MS         a 429 blocking MS milliseconds
//   reset | stats | metrics
//   cfg JSON...    configure (documents naming a backend are skipped)
//   tier X         set the tier
//   t MS           time passes (monotonic and wall clocks)
//   w MS           the wall clock alone steps by MS (may be negative)
//
// Invariants, after every call: the code is one documented for it; RT_OK
// has wait 0 (and a non-zero ticket where one was asked for); RT_LIMITED a
// wait > 0 and at most the model's longest window (plus its resolution,
// fuzz_common.h MaxWindowWaitMs),
// or a day (a 429, a provider's reset), or 25 hours (a calendar day);
// RT_E_TOO_LARGE the wait RT_WAIT_NEVER. Stats are valid JSON with
// consistent numbers (after each "stats" line and at the end). And the tracker's promise: "canary/m" (5 requests a
// minute, which no call here can raise) is never admitted more than 5
// times within any 60 s.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "config.h"
#include "fuzz_common.h"
#include "provider_headers.h"
#include "status.h"
#include "tracker.h"

namespace {

using ratetrack::Config;
using ratetrack::Cost;
using ratetrack::Decision;
using ratetrack::Tracker;

const char kConfig[] = R"({"builtin_tiers": false, "limits": {
  "canary/m": {"rpm": 5},
  "openai/gpt-4o-mini": {"rpm": 500, "tpm": 200000, "rpd": 10000},
  "acme/model": {"windows": [{"unit": "requests", "limit": 10, "seconds": 2},
                             {"unit": "tokens", "limit": 5000, "seconds": 60}]},
  "gemini/flash": {"rpm": 15, "windows": [{"unit": "requests", "limit": 1500,
                                           "calendar_day": "America/Los_Angeles"}]},
  "anthropic/claude": {"rpm": 50, "itpm": 30000, "otpm": 8000},
  "big/window": {"windows": [{"unit": "tokens", "limit": 100, "seconds": 2678400}]}}})";
const char kCanary[] = "canary/m";
constexpr uint64_t kCanaryRpm = 5;


uint64_t Num(absl::string_view s) {
  if (s == "max") return UINT64_MAX;
  uint64_t v = 0;
  return absl::SimpleAtoi(s, &v) ? v : 0;
}

struct Grant {
  std::string model;
  uint64_t ticket;
  Cost cost;
};

class Run {
 public:
  Run() {
    auto c = ratetrack::ParseConfig(kConfig);
    if (!c.ok()) std::abort();
    raw_ = *c;
    canary_ = raw_.limits->at(kCanary);
    auto t = Tracker::Create(raw_, clock_.clock());
    RT_FUZZ_CHECK(t.ok(), t.status().ToString());
    t_ = std::move(*t);
  }

  void Line(absl::string_view line) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (w.empty()) return;
    auto arg = [&](size_t i) { return i < w.size() ? w[i] : absl::string_view(); };
    auto rest = [&](size_t i) {
      return i < w.size() ? absl::StrJoin(w.begin() + i, w.end(), " ") : std::string();
    };
    const absl::string_view op = w[0];
    const std::string model(arg(1));
    if (op == "a" || op == "ai") {
      const Cost cost = op == "a" ? Cost{Num(arg(2)), 0} : Cost{Num(arg(2)), Num(arg(3))};
      const Decision d = t_->TryAcquire(model, cost, /*want_grant=*/true);
      CheckDecision(d, model, /*grant=*/true, "acquire");
      if (d.code == RT_OK) {
        grants_.push_back({model, d.grant, cost});
        if (model == kCanary) Admitted();
      }
    } else if (op == "c") {
      const Decision d = t_->Check(model, Cost{Num(arg(2)), 0});
      CheckDecision(d, model, /*grant=*/false, "check");
    } else if (op == "r" || op == "ri") {
      const Cost cost = op == "r" ? Cost{Num(arg(2)), 0} : Cost{Num(arg(2)), Num(arg(3))};
      CheckStatus(t_->Record(model, cost), {RT_OK, RT_E_INVALID, RT_E_NOMEM}, "record");
    } else if (op == "rt") {
      CheckStatus(t_->RecordTokens(model, Cost{Num(arg(2)), Num(arg(3))}),
                  {RT_OK, RT_E_INVALID, RT_E_NOMEM}, "record_tokens");
    } else if (op == "s" || op == "sx") {
      if (grants_.empty()) return;
      const Grant& g = grants_[Num(arg(1)) % grants_.size()];
      if (op == "s") {
        const absl::Status st = t_->Settle(g.model, g.ticket, g.cost, Cost{Num(arg(2)), Num(arg(3))});
        // The right ticket, model and granted tokens: always settled.
        RT_FUZZ_CHECK(st.ok(), "settling a grant of '" + g.model + "': " + st.ToString());
      } else {
        CheckStatus(t_->Settle(g.model, g.ticket, Cost{Num(arg(2)), 0}, Cost{Num(arg(3)), 0}),
                    {RT_OK, RT_E_INVALID}, "settle");
      }
    } else if (op == "p") {
      std::vector<std::string> names;
      for (size_t i = 2; i < w.size() && names.size() < 8; ++i) names.emplace_back(w[i]);
      if (names.empty()) return;
      std::vector<absl::string_view> views(names.begin(), names.end());
      size_t index = 99;
      const Cost cost{Num(arg(1)), 0};
      const Decision d = t_->Pick(views, cost, /*want_grant=*/true, &index);
      RT_FUZZ_CHECK(index < names.size(), std::to_string(index));
      CheckDecision(d, names[index], /*grant=*/true, "pick");
      if (d.code == RT_OK) {
        grants_.push_back({names[index], d.grant, cost});
        if (names[index] == kCanary) Admitted();
      }
    } else if (op == "o") {
      const std::string name(arg(2));
      const std::string value = rest(3);
      auto used = t_->Observe(model, {{name, value}});
      CheckStatus(used.status(), {RT_OK, RT_E_INVALID, RT_E_NOMEM}, "observe");
      if (used.ok()) RT_FUZZ_CHECK(*used == 0 || *used == 1, std::to_string(*used));
    } else if (op == "l") {
      const std::string value = rest(2);
      uint64_t ms = 1000;  // as rt_report_limited: unreadable or empty is a second
      if (!value.empty()) {
        auto parsed = ratetrack::ParseRetryAfterMs(value, clock_.wall);
        if (parsed) ms = *parsed;
      }
      CheckStatus(t_->ReportLimited(model, ms), {RT_OK, RT_E_INVALID, RT_E_NOMEM}, "report_limited");
    } else if (op == "b") {
      CheckStatus(t_->ReportLimited(model, Num(arg(2))), {RT_OK, RT_E_INVALID, RT_E_NOMEM},
                  "report_limited");
    } else if (op == "reset") {
      CheckStatus(t_->Reset(), {RT_OK}, "reset");
      canary_times_.clear();
    } else if (op == "cfg") {
      Configure(rest(1));
    } else if (op == "tier") {
      const absl::Status st = t_->SetTier(arg(1));
      CheckStatus(st, {RT_OK, RT_E_CONFIG}, "tier");
      if (st.ok()) raw_.tier = std::string(arg(1));
    } else if (op == "t") {
      clock_.mono += static_cast<int64_t>(Num(arg(1)) % (40ULL * 86400000));
      clock_.wall += static_cast<int64_t>(Num(arg(1)) % (40ULL * 86400000));
    } else if (op == "w") {
      int64_t v = 0;
      if (absl::SimpleAtoi(arg(1), &v) && v > -40LL * 86400000 && v < 40LL * 86400000) {
        clock_.wall += v;
      }
    } else if (op == "stats") {
      CheckStats();
    } else if (op == "metrics") {
      rtfuzz::CheckMetricsText(t_->MetricsText().c_str(), "metrics");
    }
  }

  // After "stats" lines and at the end (every call would be as thorough, a
  // "stats" line can go anywhere, and slower).
  void CheckStats() { rtfuzz::CheckStatsJson(t_->StatsJson().c_str(), "stats"); }

 private:
  void Configure(const std::string& json) {
    auto patch = ratetrack::ParseConfig(json.c_str());
    if (!patch.ok()) return;
    if (patch->backend && *patch->backend != "memory") return;
    // The canary's limit stays what it is, whatever the patch says.
    if (patch->limits) (*patch->limits)[kCanary] = canary_;
    Config merged = raw_;
    merged.Merge(*patch);
    const absl::Status st = t_->Configure(*patch);
    CheckStatus(st, {RT_OK, RT_E_CONFIG}, "configure");
    RT_FUZZ_CHECK(st.ok() == ratetrack::EffectiveConfig::From(merged).ok(), st.ToString());
    if (st.ok()) raw_ = merged;
  }

  // The longest wait a refusal of `model` may give.
  uint64_t MaxWait(const std::string& model) const {
    uint64_t most = 86400000 + 1000;  // a 429 or a provider's reset: a day
    auto eff = ratetrack::EffectiveConfig::From(raw_);
    if (!eff.ok()) return most;
    for (const auto& w : eff->Resolve(model).windows) {
      if (w.calendar()) {
        most = std::max<uint64_t>(most, 25ULL * 3600000 + 1000);
      } else {
        most = std::max<uint64_t>(
            most, rtfuzz::MaxWindowWaitMs(static_cast<uint64_t>(w.seconds) * 1000, 1));
      }
    }
    return most;
  }

  void CheckDecision(const Decision& d, const std::string& model, bool grant, const char* what) {
    const std::string where = std::string(what) + " '" + rtfuzz::Show(model) + "': code " +
                              std::to_string(d.code) + " wait " + std::to_string(d.wait_ms);
    RT_FUZZ_CHECK(rtfuzz::OneOf(d.code, {RT_OK, RT_LIMITED, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                  where);
    RT_FUZZ_CHECK(d.degraded == 0, where);
    switch (d.code) {
      case RT_OK:
        RT_FUZZ_CHECK(d.wait_ms == 0, where);
        RT_FUZZ_CHECK(!grant || d.grant != 0, where);
        break;
      case RT_LIMITED:
        RT_FUZZ_CHECK(d.wait_ms > 0 && d.wait_ms <= MaxWait(model),
                      where + " (at most " + std::to_string(MaxWait(model)) + ")");
        break;
      case RT_E_TOO_LARGE:
        RT_FUZZ_CHECK(d.wait_ms == RT_WAIT_NEVER, where);
        break;
      case RT_E_INVALID:
        RT_FUZZ_CHECK(!rtfuzz::IsValidModelName(model), where);
        break;
    }
  }

  void CheckStatus(const absl::Status& st, std::initializer_list<int> allowed, const char* what) {
    RT_FUZZ_CHECK(rtfuzz::OneOf(ratetrack::StatusToCode(st), allowed),
                  std::string(what) + ": " + st.ToString());
  }

  void Admitted() {
    canary_times_.push_back(clock_.mono);
    while (!canary_times_.empty() && canary_times_.front() <= clock_.mono - 60000) {
      canary_times_.pop_front();
    }
    RT_FUZZ_CHECK(canary_times_.size() <= kCanaryRpm,
                  std::to_string(canary_times_.size()) + " canary requests admitted within 60 s");
  }

  rtfuzz::ManualClock clock_{1764000000000};
  Config raw_;
  ratetrack::ModelLimits canary_;
  std::unique_ptr<Tracker> t_;
  std::vector<Grant> grants_;
  std::deque<int64_t> canary_times_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return -1;
  Run run;
  int lines = 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data), size), '\n')) {
    if (++lines > 256) break;
    run.Line(line);
  }
  run.CheckStats();
  return 0;
}
