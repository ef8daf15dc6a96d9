#include "provider_headers.h"

#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace ratetrack {

namespace {
// The longest wait or reset any parser returns: a year (the tracker takes
// anything beyond a day as a day). Longer is taken as malformed.
constexpr int64_t kMaxMsInt = 366LL * 86400 * 1000;
constexpr double kMaxMs = static_cast<double>(kMaxMsInt);

std::optional<uint64_t> ParseCount(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  uint64_t v = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &v) || s[0] == '-' || s[0] == '+') return std::nullopt;
  return v;
}

// The dates a provider can mean: years 0001 to 9999 (RFC 3339 and HTTP dates
// have four-digit years). absl::ParseTime also accepts "infinite-past" and
// "infinite-future" whatever the format, and years far beyond int64
// milliseconds (ToUnixMillis then saturates); none of those is a date.
std::optional<int64_t> UnixMsOfDate(absl::Time t) {
  static const absl::Time kFirst = absl::FromCivil(absl::CivilSecond(1, 1, 1, 0, 0, 0),
                                                   absl::UTCTimeZone());
  static const absl::Time kEnd = absl::FromCivil(absl::CivilSecond(10000, 1, 1, 0, 0, 0),
                                                 absl::UTCTimeZone());
  if (!(t >= kFirst && t < kEnd)) return std::nullopt;  // infinities included
  return absl::ToUnixMillis(t);
}

// absl::ParseTime reads a C string: a NUL inside `s` would end it early
// ("infinite-past\0..."). Text with one is not a time.
bool HasNul(absl::string_view s) { return s.find('\0') != absl::string_view::npos; }

// Milliseconds from `now` until `at` (0 if it has passed), or nullopt beyond
// kMaxMsInt; any int64 pair, without overflow.
std::optional<uint64_t> MsUntil(int64_t at, int64_t now) {
  if (at <= now) return 0;
  // at > now: the difference fits in uint64 (two's complement).
  const uint64_t d = static_cast<uint64_t>(at) - static_cast<uint64_t>(now);
  if (d > static_cast<uint64_t>(kMaxMsInt)) return std::nullopt;
  return d;
}

// Go duration units; "µs" as Go writes it (U+00B5) and the Greek mu (U+03BC)
// that Go accepts too.
bool UnitScale(absl::string_view unit, double* scale) {
  if (unit == "h") *scale = 3600e3;
  else if (unit == "m") *scale = 60e3;
  else if (unit == "s") *scale = 1e3;
  else if (unit == "ms") *scale = 1;
  else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") *scale = 1e-3;
  else if (unit == "ns") *scale = 1e-6;
  else return false;
  return true;
}
}  // namespace

std::optional<uint64_t> ParseGoDurationMs(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  if (s.empty()) return std::nullopt;
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
      ++i;
    }
    if (i == start || i - start > 30) return std::nullopt;
    double number = 0;
    if (!absl::SimpleAtod(s.substr(start, i - start), &number) || !std::isfinite(number) ||
        number < 0) {
      return std::nullopt;
    }
    // A unit: ASCII letters, or the bytes of "µs" (not ASCII).
    size_t ustart = i;
    while (i < s.size() && (absl::ascii_isalpha(static_cast<unsigned char>(s[i])) ||
                            static_cast<unsigned char>(s[i]) >= 0x80)) {
      ++i;
    }
    double scale;
    if (!UnitScale(s.substr(ustart, i - ustart), &scale)) return std::nullopt;
    total += number * scale;
    if (!(total <= kMaxMs)) return std::nullopt;
  }
  return static_cast<uint64_t>(std::ceil(total));
}

std::optional<int64_t> ParseRfc3339Ms(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  if (s.size() < 20 || s.size() > 64 || HasNul(s)) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(s), &t, &err)) return std::nullopt;
  return UnixMsOfDate(t);
}

std::optional<uint64_t> ParseRetryAfterMs(absl::string_view s, int64_t wall_now_ms) {
  s = absl::StripAsciiWhitespace(s);
  if (s.empty() || s.size() > 64 || HasNul(s)) return std::nullopt;
  double seconds = 0;
  if (absl::ascii_isdigit(static_cast<unsigned char>(s[0])) && absl::SimpleAtod(s, &seconds)) {
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
  const std::optional<int64_t> at = UnixMsOfDate(t);
  if (!at) return std::nullopt;
  return MsUntil(*at, wall_now_ms);
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
      auto in = MsUntil(*at, wall_now_ms);
      if (!in) continue;
      ur.reset_ms = *in;
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
