// Provider truth: header parsing (with the providers' documented samples
// and a fuzz loop), caps from headers, 429s, input/output windows,
// calendar days across a daylight-saving change, and picking a model. A
// manual clock drives both the monotonic and the wall time.
#include <atomic>
#include <random>
#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "provider_headers.h"
#include "ratetrack.h"
#include "tracker.h"

namespace ratetrack {
namespace {

using nlohmann::json;

TEST(ParseTest, GoDurationsAsOpenAISendsThem) {
  EXPECT_EQ(ParseGoDurationMs("12ms"), 12u);
  EXPECT_EQ(ParseGoDurationMs("1s"), 1000u);
  EXPECT_EQ(ParseGoDurationMs("6m0s"), 360000u);
  EXPECT_EQ(ParseGoDurationMs("1h2m3.5s"), 3723500u);
  EXPECT_EQ(ParseGoDurationMs("0s"), 0u);
  EXPECT_EQ(ParseGoDurationMs("250us"), 1u) << "rounded up";
  EXPECT_EQ(ParseGoDurationMs("17.3ms"), 18u);
  for (const char* bad : {"", "s", "12", "1x", "-1s", "1s2", "ms", "1.2.3s", "9999999h"}) {
    EXPECT_FALSE(ParseGoDurationMs(bad).has_value()) << bad;
  }
}

TEST(ParseTest, Rfc3339AsAnthropicSendsIt) {
  EXPECT_EQ(ParseRfc3339Ms("2024-08-01T12:00:30Z"), 1722513630000);
  EXPECT_EQ(ParseRfc3339Ms("2024-08-01T12:00:30.250Z"), 1722513630250);
  EXPECT_EQ(ParseRfc3339Ms("2024-08-01T14:00:30+02:00"), 1722513630000);
  for (const char* bad : {"", "2024-08-01", "yesterday", "2024-13-01T00:00:00Z"}) {
    EXPECT_FALSE(ParseRfc3339Ms(bad).has_value()) << bad;
  }
}

TEST(ParseTest, RetryAfterSecondsOrHttpDate) {
  const int64_t now = 1445412470000;  // Wed, 21 Oct 2015 07:27:50 GMT
  EXPECT_EQ(ParseRetryAfterMs("30", now), 30000u);
  EXPECT_EQ(ParseRetryAfterMs("1.5", now), 1500u);
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", now), 10000u);
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:00:00 GMT", now), 0u) << "passed";
  for (const char* bad : {"", "soon", "-5", "Wed, 21 Oct 2015", "1e400"}) {
    EXPECT_FALSE(ParseRetryAfterMs(bad, now).has_value()) << bad;
  }
}

// absl::ParseTime accepts "infinite-past" and "infinite-future" whatever
// the format, and years beyond int64 milliseconds (ToUnixMillis saturates):
// rt_report_limited(t, m, "infinite-past") subtracted the time from INT64_MIN
// (signed overflow). No parser takes those for a time, and none overflows,
// whatever the clock says.
TEST(ParseTest, InfiniteAndOutOfRangeTimesAreNotTimes) {
  const int64_t now = 1445412470000;  // Wed, 21 Oct 2015 07:27:50 GMT
  for (int64_t at : {now, int64_t{0}, int64_t{-1}, INT64_MIN, INT64_MAX}) {
    SCOPED_TRACE(at);
    for (const char* bad : {"infinite-past", "infinite-future", " infinite-past ",
                            "Wed, 21 Oct -99999999999 07:28:00 GMT",
                            "Wed, 21 Oct 99999999999 07:28:00 GMT",
                            "Wed, 21 Oct 292277026596 07:28:00 GMT"}) {
      EXPECT_FALSE(ParseRetryAfterMs(bad, at).has_value()) << bad;
    }
    // A real date, whatever the clock: a wait within a year, or nothing.
    if (auto r = ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", at)) {
      EXPECT_LE(*r, 366ull * 86400 * 1000);
    }
    ProviderReport p = ParseRateLimitHeaders(
        {{"anthropic-ratelimit-requests-reset", "2024-08-01T12:00:01Z"},
         {"anthropic-ratelimit-tokens-reset", "9999-12-31T23:59:59Z"},
         {"anthropic-ratelimit-input-tokens-reset", "0001-01-01T00:00:00Z"}},
        at);
    for (const UnitReport& u : p.units) {
      if (u.reset_ms) EXPECT_LE(*u.reset_ms, 366ull * 86400 * 1000);
    }
  }
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", INT64_MIN), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", INT64_MAX), 0u);
  for (const char* bad : {"-99999999999-01-01T00:00:00Z", "99999999999-01-01T00:00:00Z",
                          "10000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z"}) {
    EXPECT_FALSE(ParseRfc3339Ms(bad).has_value()) << bad;
  }
  EXPECT_EQ(ParseRfc3339Ms("9999-12-31T23:59:59Z"), 253402300799000);
  EXPECT_EQ(ParseRfc3339Ms("0001-01-01T00:00:00Z"), -62135596800000);
  // absl::ParseTime reads a C string: text after a NUL was never looked at.
  using namespace std::string_literals;
  EXPECT_FALSE(ParseRfc3339Ms("infinite-future\0      "s).has_value());
  EXPECT_FALSE(ParseRfc3339Ms("2024-08-01T12:00:30Z\0junk"s).has_value());
  EXPECT_FALSE(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT\0junk"s, now).has_value());
  EXPECT_FALSE(ParseRetryAfterMs("infinite-past\0"s, now).has_value());
}

// Go writes microseconds as "µs" (U+00B5) and also accepts the Greek mu.
TEST(ParseTest, GoDurationMicroseconds) {
  EXPECT_EQ(ParseGoDurationMs("250\xc2\xb5s"), 1u);
  EXPECT_EQ(ParseGoDurationMs("1500\xce\xbcs"), 2u);
  EXPECT_EQ(ParseGoDurationMs("1m2.5ms"), 60003u);
  for (const char* bad : {"1\xc2s", "1\xb5s", "1\xc2\xb5", "1s\xc2\xb5"}) {
    EXPECT_FALSE(ParseGoDurationMs(bad).has_value()) << bad;
  }
}

// OpenAI's documented example response headers.
const std::vector<HeaderView> kOpenAI = {
    {"x-ratelimit-limit-requests", "60"},       {"x-ratelimit-limit-tokens", "150000"},
    {"x-ratelimit-remaining-requests", "59"},   {"x-ratelimit-remaining-tokens", "149984"},
    {"x-ratelimit-reset-requests", "1s"},       {"x-ratelimit-reset-tokens", "6m0s"}};

TEST(ParseTest, OpenAIAndAnthropicHeaders) {
  ProviderReport r = ParseRateLimitHeaders(kOpenAI, 0);
  EXPECT_EQ(r.used_headers, 6);
  const UnitReport& req = r.units[static_cast<int>(Unit::kRequests)];
  EXPECT_EQ(req.limit, 60u);
  EXPECT_EQ(req.remaining, 59u);
  EXPECT_EQ(req.reset_ms, 1000u);
  EXPECT_EQ(r.units[static_cast<int>(Unit::kTokens)].reset_ms, 360000u);
  // Anthropic's headers, names in any case, resets as RFC 3339.
  const int64_t now = 1722513600000;  // 2024-08-01T12:00:00Z
  ProviderReport a = ParseRateLimitHeaders(
      {{"Anthropic-RateLimit-Requests-Limit", "50"},
       {"anthropic-ratelimit-requests-remaining", "49"},
       {"anthropic-ratelimit-requests-reset", "2024-08-01T12:00:01Z"},
       {"anthropic-ratelimit-input-tokens-limit", "30000"},
       {"anthropic-ratelimit-input-tokens-remaining", "29000"},
       {"anthropic-ratelimit-input-tokens-reset", "2024-08-01T12:00:02Z"},
       {"anthropic-ratelimit-output-tokens-limit", "8000"},
       {"anthropic-ratelimit-output-tokens-remaining", "7990"},
       {"anthropic-ratelimit-output-tokens-reset", "2024-08-01T12:00:03Z"},
       {"anthropic-ratelimit-tokens-remaining", "36990"},
       {"retry-after", "4"},
       {"content-type", "application/json"}},
      now);
  EXPECT_EQ(a.used_headers, 10);
  EXPECT_EQ(a.units[static_cast<int>(Unit::kRequests)].reset_ms, 1000u);
  EXPECT_EQ(a.units[static_cast<int>(Unit::kInputTokens)].remaining, 29000u);
  EXPECT_EQ(a.units[static_cast<int>(Unit::kOutputTokens)].reset_ms, 3000u);
  EXPECT_EQ(a.units[static_cast<int>(Unit::kOutputTokens)].limit, 8000u);
  // Malformed values are skipped one by one; the good ones still count.
  ProviderReport m = ParseRateLimitHeaders({{"x-ratelimit-remaining-requests", "-3"},
                                            {"x-ratelimit-reset-requests", "soon"},
                                            {"x-ratelimit-limit-requests", "99999999999999999999"},
                                            {"x-ratelimit-remaining-tokens", "12"},
                                            {"x-ratelimit-bogus-requests", "1"}},
                                           0);
  EXPECT_EQ(m.used_headers, 1);
  EXPECT_EQ(m.units[static_cast<int>(Unit::kTokens)].remaining, 12u);
}

// A fuzz loop: mutated documented samples and random bytes never crash or
// throw, and whatever parses stays within bounds.
TEST(ParseTest, FuzzedInputNeverBreaksAParser) {
  std::mt19937_64 rng(7);
  std::vector<std::string> seeds = {"1h2m3.5s", "6m0s", "2024-08-01T12:00:30Z", "30",
                                    "Wed, 21 Oct 2015 07:28:00 GMT", "149984", "12ms"};
  for (int i = 0; i < 200000; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
      switch (rng() % 4) {
        case 0: s.insert(s.begin() + at, static_cast<char>(rng())); break;
        case 1: if (!s.empty() && at < s.size()) s.erase(at, 1); break;
        case 2: if (!s.empty() && at < s.size()) s[at] = static_cast<char>(rng()); break;
        default: s += s.substr(0, rng() % (s.size() + 1)); break;
      }
    }
    if (auto d = ParseGoDurationMs(s)) ASSERT_LE(*d, 366ull * 86400 * 1000) << s;
    ParseRfc3339Ms(s);
    if (auto r = ParseRetryAfterMs(s, 0)) ASSERT_LE(*r, 366ull * 86400 * 1000) << s;
    ProviderReport p = ParseRateLimitHeaders({{"x-ratelimit-reset-tokens", s},
                                              {s, s},
                                              {"anthropic-ratelimit-requests-reset", s},
                                              {"x-ratelimit-remaining-requests", s}},
                                             0);
    ASSERT_LE(p.used_headers, 4);
  }
}

class ManualClock {
 public:
  Clock clock() {
    Clock c{&Mono, this, 0};
    c.wall_ms = &Wall;
    return c;
  }
  void Advance(int64_t ms) {
    mono_ += ms;
    wall_ += ms;
  }
  void SetWall(int64_t unix_ms) { wall_ = unix_ms; }

 private:
  static int64_t Mono(void* s) { return static_cast<ManualClock*>(s)->mono_.load(); }
  static int64_t Wall(void* s) { return static_cast<ManualClock*>(s)->wall_.load(); }
  std::atomic<int64_t> mono_{1000000};
  std::atomic<int64_t> wall_{1764000000000};
};

class ProviderTest : public ::testing::Test {
 protected:
  std::unique_ptr<Tracker> Make(const char* text) {
    auto c = ParseConfig(text);
    EXPECT_TRUE(c.ok()) << c.status();
    auto t = Tracker::Create(*c, clock_.clock());
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(*t);
  }
  ManualClock clock_;
};

TEST_F(ProviderTest, HeadersCapWhatTheWindowsBelieve) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"openai/m": {"rpm": 500, "tpm": 200000}}})");
  ASSERT_EQ(t->TryAcquire("openai/m", 10).code, RT_OK);
  // The provider says 10 requests remain until a reset in 2 s.
  auto used = t->Observe("openai/m", {{"x-ratelimit-remaining-requests", "10"},
                                      {"x-ratelimit-reset-requests", "2s"},
                                      {"x-ratelimit-limit-requests", "60"}});
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 3);
  int admitted = 0;
  for (int i = 0; i < 30; ++i) admitted += t->TryAcquire("openai/m", 10).code == RT_OK;
  EXPECT_EQ(admitted, 10) << "whatever the windows (500 rpm) say";
  Decision d = t->TryAcquire("openai/m", 10);
  EXPECT_EQ(d.code, RT_LIMITED);
  EXPECT_EQ(d.wait_ms, 2000u);
  clock_.Advance(2000);
  EXPECT_EQ(t->TryAcquire("openai/m", 10).code, RT_OK) << "after the reset: the windows again";
  // The provider's limit (60) differs from ours (500): lower, so in force
  // (11 of it used), and shown.
  EXPECT_EQ(t->TryAcquire("openai/m", 10).code, RT_OK);
  json s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["remaining"], 60 - 13);
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["limit"], 500);
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["observed_limit"], 60);
  EXPECT_EQ(s["provider"]["openai/m"]["requests"]["limit"], 60);
  // Token caps work the same way.
  ASSERT_TRUE(t->Observe("openai/m", {{"x-ratelimit-remaining-tokens", "100"},
                                      {"x-ratelimit-reset-tokens", "6m0s"}})
                  .ok());
  EXPECT_EQ(t->TryAcquire("openai/m", 101).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("openai/m", 100).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("openai/m", 1).code, RT_LIMITED);
  // Garbage changes nothing and is not an error.
  EXPECT_EQ(*t->Observe("openai/m", {{"x-ratelimit-remaining-tokens", "lots"}}), 0);
}

// An account really at 20 requests a minute, configured at tier 1 (500):
// once a response says so, the tracker admits 20 a minute, not 500; a
// higher limit is only shown; a reset forgets what was learned.
TEST_F(ProviderTest, ALowerLimitTheProviderReportsIsEnforced) {
  auto t = Make(R"({"builtin_tiers": false,
                    "limits": {"openai/m": {"rpm": 500, "rpd": 10000, "tpm": 200000}}})");
  ASSERT_EQ(t->TryAcquire("openai/m", 10).code, RT_OK);
  ASSERT_EQ(*t->Observe("openai/m", {{"x-ratelimit-limit-requests", "20"}}), 1);
  int admitted = 1;
  for (int i = 0; i < 60; ++i) admitted += t->TryAcquire("openai/m", 10).code == RT_OK;
  EXPECT_EQ(admitted, 20);
  Decision d = t->TryAcquire("openai/m", 10);
  ASSERT_EQ(d.code, RT_LIMITED);
  EXPECT_GT(d.wait_ms, 55000u);
  EXPECT_LE(d.wait_ms, 61000u);
  EXPECT_EQ(t->Check("openai/m", 10).code, RT_LIMITED);
  json s = json::parse(t->StatsJson());
  const json& rpm = s["models"]["openai/m"]["requests_per_minute"];
  EXPECT_EQ(rpm["limit"], 500);
  EXPECT_EQ(rpm["observed_limit"], 20);
  EXPECT_EQ(rpm["remaining"], 0) << "the room in force, not 480";
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_day"]["remaining"], 10000 - 20);
  // Records still count whatever the limits say.
  ASSERT_TRUE(t->Record("openai/m", 10).ok());
  clock_.Advance(61000);
  admitted = 0;
  for (int i = 0; i < 60; ++i) admitted += t->TryAcquire("openai/m", 10).code == RT_OK;
  EXPECT_EQ(admitted, 20) << "a new minute: still 20";
  // The account is upgraded: a higher limit than ours is shown, ours holds.
  ASSERT_EQ(*t->Observe("openai/m", {{"x-ratelimit-limit-requests", "1000"}}), 1);
  clock_.Advance(61000);
  admitted = 0;
  for (int i = 0; i < 600; ++i) admitted += t->TryAcquire("openai/m", 1).code == RT_OK;
  EXPECT_EQ(admitted, 500);
  EXPECT_EQ(json::parse(t->StatsJson())["models"]["openai/m"]["requests_per_minute"]
                ["observed_limit"],
            1000);
  // Tokens: a learned 300 per minute makes 301 never fit.
  ASSERT_EQ(*t->Observe("openai/m", {{"x-ratelimit-limit-tokens", "300"}}), 1);
  clock_.Advance(61000);
  EXPECT_EQ(t->TryAcquire("openai/m", 301).code, RT_E_TOO_LARGE);
  EXPECT_EQ(t->TryAcquire("openai/m", 300).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("openai/m", 1).code, RT_LIMITED);
  // A reset forgets usage and what the provider said.
  ASSERT_TRUE(t->Reset().ok());
  EXPECT_EQ(t->TryAcquire("openai/m", 1000).code, RT_OK);
}

// The remaining room in the stats is the smaller of the window's and what
// the provider said remains.
TEST_F(ProviderTest, StatsShowTheRoomInForce) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"openai/m": {"rpm": 500, "tpm": 200000}}})");
  ASSERT_EQ(t->TryAcquire("openai/m", 100).code, RT_OK);
  ASSERT_TRUE(t->Observe("openai/m", {{"x-ratelimit-remaining-requests", "5"},
                                      {"x-ratelimit-reset-requests", "30s"}})
                  .ok());
  ASSERT_EQ(t->TryAcquire("openai/m", 100).code, RT_OK);
  json s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["remaining"], 4);
  EXPECT_EQ(s["models"]["openai/m"]["tokens_per_minute"]["remaining"], 200000 - 200);
  clock_.Advance(30000);
  s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["remaining"], 498);
}

// Tokens booked to a request already counted (a framework's limiter counted
// it; its callback learns the usage): tokens count, requests do not, and
// they count against what the provider said remains.
TEST_F(ProviderTest, TokensBookedToACountedRequest) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"openai/m": {"rpm": 10, "tpm": 1000}}})");
  ASSERT_EQ(t->TryAcquire("openai/m", 0).code, RT_OK);
  ASSERT_TRUE(t->RecordTokens("openai/m", Cost{300, 200}).ok());
  json s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["current"], 1);
  EXPECT_EQ(s["models"]["openai/m"]["tokens_per_minute"]["current"], 500);
  EXPECT_EQ(t->Check("openai/m", 501).code, RT_LIMITED);
  EXPECT_EQ(t->Check("openai/m", 500).code, RT_OK);
  ASSERT_TRUE(t->Observe("openai/m", {{"x-ratelimit-remaining-tokens", "100"},
                                      {"x-ratelimit-reset-tokens", "30s"}})
                  .ok());
  ASSERT_TRUE(t->RecordTokens("openai/m", Cost{60, 0}).ok());
  EXPECT_EQ(t->TryAcquire("openai/m", 41).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("openai/m", 40).code, RT_OK);
  // Past a limit: recorded all the same (the tokens were spent).
  ASSERT_TRUE(t->RecordTokens("openai/m", Cost{5000, 0}).ok());
  s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["openai/m"]["tokens_per_minute"]["current"], 500 + 60 + 40 + 5000);
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["current"], 2);
  EXPECT_FALSE(t->RecordTokens("openai/\x01", Cost{1, 1}).ok());
  EXPECT_FALSE(t->RecordTokens("", Cost{1, 1}).ok());
}

TEST_F(ProviderTest, A429RefusesUntilItsRetryAfter) {
  auto t = Make(R"({"builtin_tiers": false})");
  ASSERT_TRUE(t->ReportLimited("anthropic/claude", 30000).ok());
  Decision d = t->TryAcquire("anthropic/claude", 1);
  EXPECT_EQ(d.code, RT_LIMITED);
  EXPECT_EQ(d.wait_ms, 30000u);
  EXPECT_EQ(t->Check("anthropic/claude", 1).code, RT_LIMITED);
  clock_.Advance(29999);
  EXPECT_EQ(t->TryAcquire("anthropic/claude", 1).wait_ms, 1u);
  clock_.Advance(1);
  EXPECT_EQ(t->TryAcquire("anthropic/claude", 1).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("other/m", 1).code, RT_OK) << "per model";
}

TEST_F(ProviderTest, InputAndOutputTokenWindows) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"anthropic/m": {"rpm": 50, "itpm": 30000, "otpm": 8000}}})");
  // Reserve the prompt and max_tokens of output.
  Decision g = t->TryAcquire("anthropic/m", Cost{20000, 8000});
  ASSERT_EQ(g.code, RT_OK);
  EXPECT_EQ(t->TryAcquire("anthropic/m", Cost{100, 1}).code, RT_LIMITED) << "output is full";
  EXPECT_EQ(t->TryAcquire("anthropic/m", Cost{10001, 0}).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("anthropic/m", Cost{8001, 0}).code, RT_OK) << "28001 of 30000 input";
  // It really wrote 500 tokens: settle gives 7500 of output back.
  ASSERT_TRUE(t->Settle("anthropic/m", g.grant, Cost{20000, 8000}, Cost{20000, 500}).ok());
  EXPECT_EQ(t->Settle("anthropic/m", g.grant, Cost{20000, 7999}, Cost{1, 1}).code(),
            absl::StatusCode::kInvalidArgument) << "the ticket checks both counts";
  EXPECT_EQ(t->TryAcquire("anthropic/m", Cost{0, 7500}).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("anthropic/m", Cost{0, 1}).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("anthropic/m", Cost{0, 8001}).code, RT_E_TOO_LARGE);
  json s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["anthropic/m"]["input_tokens_per_minute"]["current"], 28001);
  EXPECT_EQ(s["models"]["anthropic/m"]["output_tokens_per_minute"]["current"], 8000);
  EXPECT_EQ(s["models"]["anthropic/m"]["tokens_per_minute"]["current"], 36001) << "both sides";
}

int64_t UnixMs(absl::CivilSecond cs, const char* zone) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(zone, &tz));
  return absl::ToUnixMillis(absl::FromCivil(cs, tz));
}

TEST_F(ProviderTest, CalendarDayResetsAtLocalMidnightAcrossDst) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"gemini/m": {"windows": [
      {"unit": "requests", "limit": 2, "calendar_day": "America/Los_Angeles"}]}}})");
  // Sunday 8 March 2026: clocks spring forward at 2:00; the day has 23 hours.
  clock_.SetWall(UnixMs(absl::CivilSecond(2026, 3, 8, 0, 30, 0), "America/Los_Angeles"));
  ASSERT_EQ(t->TryAcquire("gemini/m", 0).code, RT_OK);
  ASSERT_EQ(t->TryAcquire("gemini/m", 0).code, RT_OK);
  Decision d = t->TryAcquire("gemini/m", 0);
  ASSERT_EQ(d.code, RT_LIMITED);
  EXPECT_EQ(d.wait_ms, (23 * 60 - 30) * 60 * 1000u) << "22 h 30 min to local midnight";
  clock_.Advance(static_cast<int64_t>(d.wait_ms) - 1);
  EXPECT_EQ(t->TryAcquire("gemini/m", 0).code, RT_LIMITED);
  clock_.Advance(1);  // 00:00 on 9 March, Pacific daylight time
  EXPECT_EQ(t->TryAcquire("gemini/m", 0).code, RT_OK);
  json s = json::parse(t->StatsJson());
  EXPECT_EQ(s["models"]["gemini/m"]["requests_per_calendar_day"]["current"], 1);
  EXPECT_EQ(s["models"]["gemini/m"]["requests_per_calendar_day"]["resets_at_midnight"],
            "America/Los_Angeles");
  // 1 November 2026: clocks fall back; the day has 25 hours.
  clock_.SetWall(UnixMs(absl::CivilSecond(2026, 11, 1, 0, 0, 0), "America/Los_Angeles"));
  ASSERT_EQ(t->TryAcquire("gemini/m", 0).code, RT_OK);
  ASSERT_EQ(t->TryAcquire("gemini/m", 0).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("gemini/m", 0).wait_ms, 25 * 3600 * 1000u);
}

TEST_F(ProviderTest, PickTakesTheFirstThatFitsOrSaysWhoFreesFirst) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {
      "a/big": {"rpm": 1, "tpm": 1000}, "b/mid": {"rpm": 2}, "c/small": {"tpm": 10}}})");
  std::vector<absl::string_view> order = {"a/big", "b/mid", "c/small"};
  size_t i = 99;
  EXPECT_EQ(t->Pick(order, 5, true, &i).code, RT_OK);
  EXPECT_EQ(i, 0u);
  Decision d = t->Pick(order, 5, true, &i);
  EXPECT_EQ(d.code, RT_OK);
  EXPECT_EQ(i, 1u) << "a/big is spent: falls back";
  EXPECT_NE(d.grant, 0u);
  ASSERT_TRUE(t->Settle("b/mid", d.grant, 5, 5).ok()) << "the grant is b/mid's";
  EXPECT_EQ(t->Pick(order, 5, false, &i).code, RT_OK);
  EXPECT_EQ(i, 1u);
  EXPECT_EQ(t->Pick(order, 5, false, &i).code, RT_OK);
  EXPECT_EQ(i, 2u);
  clock_.Advance(30000);
  ASSERT_TRUE(t->ReportLimited("c/small", 5000).ok());
  d = t->Pick(order, 5, false, &i);
  EXPECT_EQ(d.code, RT_LIMITED);
  EXPECT_EQ(i, 2u) << "c/small frees first (5 s; the others in about 31 s)";
  EXPECT_EQ(d.wait_ms, 5000u);
  EXPECT_EQ(t->Pick(order, 5000, false, &i).code, RT_LIMITED) << "b/mid could, later";
  EXPECT_EQ(t->Pick({"c/small"}, 11, false, &i).code, RT_E_TOO_LARGE);
}

}  // namespace
}  // namespace ratetrack
