#include "provider_headers.h"

#include <cctype>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"

namespace ratetrack {

namespace {
constexpr double kMaxMs = 366.0 * 86400 * 1000;

std::optional<uint64_t> ParseCount(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  uint64_t v = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &v) || s[0] == '-' || s[0] == '+') return std::nullopt;
  return v;
}
}  // namespace

std::optional<uint64_t> ParseGoDurationMs(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  if (s.empty()) return std::nullopt;
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == start || i - start > 30) return std::nullopt;
    double number = 0;
    if (!absl::SimpleAtod(s.substr(start, i - start), &number) || !std::isfinite(number)) {
      return std::nullopt;
    }
    size_t ustart = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    absl::string_view unit = s.substr(ustart, i - ustart);
    double scale;
    if (unit == "h") scale = 3600e3;
    else if (unit == "m") scale = 60e3;
    else if (unit == "s") scale = 1e3;
    else if (unit == "ms") scale = 1;
    else if (unit == "us" || unit == "µs") scale = 1e-3;
    else if (unit == "ns") scale = 1e-6;
    else return std::nullopt;
    total += number * scale;
    if (total > kMaxMs) return std::nullopt;
  }
  return static_cast<uint64_t>(std::ceil(total));
}

std::optional<int64_t> ParseRfc3339Ms(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  if (s.size() < 20 || s.size() > 64) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(s), &t, &err)) return std::nullopt;
  return absl::ToUnixMillis(t);
}

std::optional<uint64_t> ParseRetryAfterMs(absl::string_view s, int64_t wall_now_ms) {
  s = absl::StripAsciiWhitespace(s);
  if (s.empty() || s.size() > 64) return std::nullopt;
  double seconds = 0;
  if (std::isdigit(static_cast<unsigned char>(s[0])) && absl::SimpleAtod(s, &seconds)) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds * 1000 > kMaxMs) return std::nullopt;
    return static_cast<uint64_t>(std::ceil(seconds * 1000));
  }
  absl::Time t;
  std::string err;
  // IMF-fixdate, the form RFC 9110 requires senders to use.
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(s), absl::UTCTimeZone(), &t,
                       &err)) {
    return std::nullopt;
  }
  const int64_t at = absl::ToUnixMillis(t);
  if (at - wall_now_ms > kMaxMs) return std::nullopt;
  return at > wall_now_ms ? static_cast<uint64_t>(at - wall_now_ms) : 0;
}

ProviderReport ParseRateLimitHeaders(const std::vector<HeaderView>& headers,
                                     int64_t wall_now_ms) {
  ProviderReport r;
  for (const HeaderView& h : headers) {
    if (h.name.size() > 64) continue;
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(h.name));
    absl::string_view rest;
    bool anthropic = false;
    if (absl::StartsWith(name, "x-ratelimit-")) {
      rest = absl::string_view(name).substr(12);
    } else if (absl::StartsWith(name, "anthropic-ratelimit-")) {
      rest = absl::string_view(name).substr(20);
      anthropic = true;
    } else {
      continue;
    }
    // OpenAI: <field>-<unit>; Anthropic: <unit>-<field>.
    static const struct {
      const char* text;
      Unit unit;
    } kUnits[] = {{"requests", Unit::kRequests},
                  {"tokens", Unit::kTokens},
                  {"input-tokens", Unit::kInputTokens},
                  {"output-tokens", Unit::kOutputTokens}};
    static const char* const kFields[] = {"limit", "remaining", "reset"};
    int field = -1;
    int unit = -1;
    for (int f = 0; f < 3 && field < 0; ++f) {
      for (const auto& u : kUnits) {
        const std::string expect = anthropic ? std::string(u.text) + "-" + kFields[f]
                                             : std::string(kFields[f]) + "-" + u.text;
        if (rest == expect) {
          field = f;
          unit = static_cast<int>(u.unit);
          break;
        }
      }
    }
    if (field < 0) continue;
    UnitReport& ur = r.units[unit];
    if (field == 0 || field == 1) {
      auto v = ParseCount(h.value);
      if (!v) continue;
      (field == 0 ? ur.limit : ur.remaining) = *v;
    } else if (anthropic) {
      auto at = ParseRfc3339Ms(h.value);
      if (!at) continue;
      ur.reset_ms = *at > wall_now_ms ? static_cast<uint64_t>(*at - wall_now_ms) : 0;
    } else {
      auto ms = ParseGoDurationMs(h.value);
      if (!ms) continue;
      ur.reset_ms = *ms;
    }
    ++r.used_headers;
  }
  return r;
}

}  // namespace ratetrack
