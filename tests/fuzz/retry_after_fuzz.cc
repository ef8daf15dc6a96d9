// Fuzz target: Retry-After values (delay seconds or an HTTP date).
//
// Input: the header's value (up to the first NUL, as the C API sees it).
// It goes through ParseRetryAfterMs against several clocks, and through
// rt_report_limited on a memory tracker, followed by rt_try_acquire.
//
// Invariants: no crash or UB (the old signed overflow on "infinite-past");
// a parsed wait is at most a year; for an HTTP date the wait shrinks as the
// clock moves on; after rt_report_limited the model is refused for at most
// a day (unreadable values: about a second), and RT_OK only for a wait that
// has (nearly) passed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "provider_headers.h"
#include "ratetrack.h"
#include "tracker.h"

namespace {
constexpr uint64_t kYearMs = 366ULL * 86400 * 1000;
constexpr uint64_t kDayMs = 86400ULL * 1000;
// A coarse clock tick and the rounding, with room to spare.
constexpr uint64_t kSlackMs = 50;
// How much shorter than parsed a wait may look when the machine stalls
// between the report and the acquire.
constexpr uint64_t kStallMs = 2000;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256) return -1;
  const std::string raw(reinterpret_cast<const char*>(data), size);
  const std::string value = raw.substr(0, raw.find('\0'));

  const int64_t nows[] = {INT64_MIN, -1, 0, 1445412470000, 1764000000000, INT64_MAX};
  std::optional<uint64_t> prev;
  bool prev_set = false;
  for (int64_t now : nows) {
    // The raw bytes too: a parser given a string_view must not stop at a NUL.
    ratetrack::ParseRetryAfterMs(raw, now);
    const std::optional<uint64_t> r = ratetrack::ParseRetryAfterMs(value, now);
    if (r) RT_FUZZ_CHECK(*r <= kYearMs, rtfuzz::Show(value) + " = " + std::to_string(*r));
    // Delay seconds do not depend on the clock; a date's wait only shrinks
    // as the clock moves on (or leaves the range, far in the past).
    if (prev_set && prev && r) {
      RT_FUZZ_CHECK(*r <= *prev, rtfuzz::Show(value) + ": " + std::to_string(*prev) + " then " +
                                     std::to_string(*r) + " at " + std::to_string(now));
    }
    prev = r;
    prev_set = true;
  }

  rt_tracker* t = rt_open(R"({"builtin_tiers": false})");
  RT_FUZZ_CHECK(t != nullptr, rt_last_error());
  const char* model = "openai/gpt-4o-mini";
  const int64_t before = ratetrack::Clock::PreciseRealtimeMs();
  const std::optional<uint64_t> expect = ratetrack::ParseRetryAfterMs(value, before);
  const int rc = rt_report_limited(t, model, value.c_str());
  RT_FUZZ_CHECK(rc == RT_OK, std::to_string(rc) + ": " + rt_last_error());
  uint64_t wait = 12345;
  const int arc = rt_try_acquire(t, model, 1, &wait);
  RT_FUZZ_CHECK(rtfuzz::OneOf(arc, {RT_OK, RT_LIMITED}), std::to_string(arc));
  const uint64_t should = value.empty() || !expect ? 1000 : std::min(*expect, kDayMs);
  if (arc == RT_OK) {
    RT_FUZZ_CHECK(wait == 0, std::to_string(wait));
    RT_FUZZ_CHECK(should <= kStallMs, rtfuzz::Show(value) + ": admitted, but the wait was " +
                                          std::to_string(should) + " ms");
  } else {
    RT_FUZZ_CHECK(wait > 0 && wait <= kDayMs + kSlackMs,
                  rtfuzz::Show(value) + ": wait " + std::to_string(wait));
    RT_FUZZ_CHECK(wait <= should + kSlackMs && wait + kStallMs >= should,
                  rtfuzz::Show(value) + ": wait " + std::to_string(wait) + ", parsed " +
                      std::to_string(should));
  }
  rtfuzz::CheckTrackerOutputs(t, "retry_after");
  rt_close(t);
  return 0;
}
