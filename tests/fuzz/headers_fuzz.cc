// Fuzz target: the providers' rate-limit headers.
//
// Input: text lines. "@<number>" sets the wall clock (Unix ms) the headers
// are read against; "name: value" is a header (split at the first ':');
// any other line is a value given to a few well-known header names.
//
// Each value also goes through ParseGoDurationMs, ParseRfc3339Ms and
// ParseRetryAfterMs on its own, and the headers through
// ParseRateLimitHeaders at several clocks and through Tracker::Observe on a
// memory tracker (manual clock), followed by an acquire and the stats.
//
// Invariants: no crash or UB; no parser returns a wait or reset beyond a
// year, or a date outside years 1-9999; used_headers counts at most the
// headers given; after any headers an acquire is RT_OK or RT_LIMITED with
// a wait of at most a day (and the window's resolution); stats are valid.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "config.h"
#include "fuzz_common.h"
#include "provider_headers.h"
#include "tracker.h"

namespace {

using ratetrack::HeaderView;

constexpr uint64_t kYearMs = 366ULL * 86400 * 1000;
constexpr int64_t kFirstDateMs = -62135596800000;  // 0001-01-01T00:00:00Z
constexpr int64_t kEndDateMs = 253402300800000;    // 10000-01-01T00:00:00Z


void CheckReport(const ratetrack::ProviderReport& r, size_t given, const std::string& what) {
  RT_FUZZ_CHECK(r.used_headers >= 0 && static_cast<size_t>(r.used_headers) <= given, what);
  for (const ratetrack::UnitReport& u : r.units) {
    if (u.reset_ms) RT_FUZZ_CHECK(*u.reset_ms <= kYearMs, what + ": reset " + std::to_string(*u.reset_ms));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return -1;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  rtfuzz::ManualClock clk{1722513600000};  // 2024-08-01T12:00:00Z
  std::vector<std::string> names, values;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line[0] == '@') {
      int64_t v = 0;
      if (absl::SimpleAtoi(line.substr(1), &v)) clk.wall = v;
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      for (const char* n : {"x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset",
                            "x-ratelimit-remaining-requests"}) {
        names.emplace_back(n);
        values.emplace_back(line);
      }
    } else {
      names.emplace_back(line.substr(0, colon));
      values.emplace_back(line.substr(colon + 1));
    }
    if (names.size() > 64) break;
  }
  std::vector<HeaderView> headers;
  for (size_t i = 0; i < names.size(); ++i) headers.push_back({names[i], values[i]});

  for (const std::string& v : values) {
    if (auto d = ratetrack::ParseGoDurationMs(v)) {
      RT_FUZZ_CHECK(*d <= kYearMs, "Go duration '" + rtfuzz::Show(v) + "' = " + std::to_string(*d));
    }
    if (auto t = ratetrack::ParseRfc3339Ms(v)) {
      RT_FUZZ_CHECK(*t >= kFirstDateMs && *t < kEndDateMs,
                    "RFC 3339 '" + rtfuzz::Show(v) + "' = " + std::to_string(*t));
    }
    for (int64_t now : {clk.wall, int64_t{0}, INT64_MIN, INT64_MAX}) {
      if (auto r = ratetrack::ParseRetryAfterMs(v, now)) {
        RT_FUZZ_CHECK(*r <= kYearMs, "Retry-After '" + rtfuzz::Show(v) + "' = " + std::to_string(*r));
      }
    }
  }
  for (int64_t now : {clk.wall, int64_t{0}, int64_t{-1}, INT64_MIN, INT64_MAX}) {
    CheckReport(ratetrack::ParseRateLimitHeaders(headers, now), headers.size(),
                "at " + std::to_string(now));
  }

  // Through a tracker: the headers cap what the windows believe.
  static const ratetrack::Config* config = [] {
    auto c = ratetrack::ParseConfig(
        R"({"builtin_tiers": false, "limits": {"openai/m": {"rpm": 500, "tpm": 200000},
            "anthropic/m": {"rpm": 50, "itpm": 30000, "otpm": 8000}}})");
    if (!c.ok()) std::abort();
    return new ratetrack::Config(*c);
  }();
  auto made = ratetrack::Tracker::Create(*config, clk.clock());
  RT_FUZZ_CHECK(made.ok(), made.status().ToString());
  std::unique_ptr<ratetrack::Tracker> t = std::move(*made);
  for (const char* model : {"openai/m", "anthropic/m"}) {
    auto used = t->Observe(model, headers);
    RT_FUZZ_CHECK(used.ok(), used.status().ToString());
    RT_FUZZ_CHECK(*used >= 0 && static_cast<size_t>(*used) <= headers.size(), std::to_string(*used));
    for (uint64_t tokens : {uint64_t{0}, uint64_t{1}, uint64_t{1000}}) {
      const ratetrack::Decision d = t->TryAcquire(model, ratetrack::Cost{tokens, tokens});
      RT_FUZZ_CHECK(rtfuzz::OneOf(d.code, {RT_OK, RT_LIMITED, RT_E_TOO_LARGE}),
                    std::to_string(d.code));
      if (d.code == RT_E_TOO_LARGE) {
        // Only a limit the provider reported, lower than ours, makes a
        // request of these sizes never fit: the stats show it.
        RT_FUZZ_CHECK(d.wait_ms == RT_WAIT_NEVER, std::to_string(d.wait_ms));
        const std::string stats = t->StatsJson();
        RT_FUZZ_CHECK(stats.find("\"observed_limit\"") != std::string::npos, stats);
      } else if (d.code == RT_OK) {
        RT_FUZZ_CHECK(d.wait_ms == 0, std::to_string(d.wait_ms));
      } else {
        // A provider cap lasts at most a day; the windows take a minute.
        RT_FUZZ_CHECK(d.wait_ms > 0 && d.wait_ms <= 86400000 + 61000,
                      "wait " + std::to_string(d.wait_ms));
      }
    }
  }
  rtfuzz::CheckStatsJson(t->StatsJson().c_str(), "headers: stats");
  rtfuzz::CheckMetricsText(t->MetricsText().c_str(), "headers: metrics");
  clk.mono += 86400000 + 60000;
  for (const char* model : {"openai/m", "anthropic/m"}) {
    const ratetrack::Decision d = t->TryAcquire(model, ratetrack::Cost{1, 1});
    RT_FUZZ_CHECK(d.code == RT_OK, "a day and a minute later a request must fit again: " +
                                       std::to_string(d.code) + " wait " + std::to_string(d.wait_ms));
  }
  return 0;
}
