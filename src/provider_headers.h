// Parsing what LLM providers answer: rate-limit headers and Retry-After.
// Pure functions over strings, no clock (the caller passes the time), so
// tests feed them the providers' documented samples and a fuzzer feeds them
// anything. Every parser returns nullopt for input it does not understand,
// and never throws.
#ifndef RATETRACK_SRC_PROVIDER_HEADERS_H_
#define RATETRACK_SRC_PROVIDER_HEADERS_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/string_view.h"
#include "config.h"

namespace ratetrack {

// A Go duration as OpenAI sends resets: "12ms", "1s", "6m0s", "1h2m3.5s",
// "250us", "0s". Milliseconds, rounded up; nullopt if malformed or over a
// year.
std::optional<uint64_t> ParseGoDurationMs(absl::string_view s);

// An RFC 3339 timestamp as Anthropic sends resets
// ("2024-08-01T12:00:30Z", fractions and offsets allowed): Unix ms; nullopt
// outside the years 0001 to 9999 ("infinite-future" included).
std::optional<int64_t> ParseRfc3339Ms(absl::string_view s);

// Retry-After: delay seconds ("30", "1.5") or an HTTP date ("Wed, 21 Oct
// 2015 07:28:00 GMT"), as milliseconds from `wall_now_ms` (0 if the date
// has passed); nullopt if malformed or over a year, whatever `wall_now_ms`.
std::optional<uint64_t> ParseRetryAfterMs(absl::string_view s, int64_t wall_now_ms);

// What one response said about one unit.
struct UnitReport {
  std::optional<uint64_t> limit;
  std::optional<uint64_t> remaining;
  std::optional<uint64_t> reset_ms;  // from now
};

struct ProviderReport {
  UnitReport units[4];  // by Unit
  int used_headers = 0;
};

// Reads the rate-limit headers of a response (names case-insensitive):
// OpenAI x-ratelimit-{limit,remaining,reset}-{requests,tokens}, Anthropic
// anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
// {limit,remaining,reset}. Others, and malformed values, are skipped one by
// one.
struct HeaderView {
  absl::string_view name;
  absl::string_view value;
};
ProviderReport ParseRateLimitHeaders(const std::vector<HeaderView>& headers,
                                     int64_t wall_now_ms);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_PROVIDER_HEADERS_H_
