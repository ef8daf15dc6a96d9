// The tracker with a manual clock: the seed's tests and the semantics of
// settle, reconfiguration and stats, with no sleeping.
#include "tracker.h"
#include "model_name.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"

namespace ratetrack {
namespace {

using nlohmann::json;

class ManualClock {
 public:
  Clock clock() { return Clock{&Read, this, 0}; }
  void Set(int64_t ms) { now_.store(ms); }
  void Advance(int64_t ms) { now_.fetch_add(ms); }
  int64_t now() const { return now_.load(); }

 private:
  static int64_t Read(void* self) {
    return static_cast<ManualClock*>(self)->now_.load();
  }
  std::atomic<int64_t> now_{1000000};
};

class TrackerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Tracker> Make(const char* json_config) {
    auto c = ParseConfig(json_config);
    EXPECT_TRUE(c.ok()) << c.status();
    auto t = Tracker::Create(*c, clock_.clock());
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(*t);
  }
  static bool CanMake(Tracker& t, const char* m, uint64_t tokens) {
    return t.Check(m, tokens).code == RT_OK;
  }
  static json Stats(const Tracker& t) { return json::parse(t.StatsJson()); }
  ManualClock clock_;
};

// Seed test: RPM 10, then blocked.
TEST_F(TrackerTest, RequestsPerMinuteLimit) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"rpm": 10}}})");
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(CanMake(*t, "m/x", 100));
    ASSERT_TRUE(t->Record("m/x", 100).ok());
  }
  EXPECT_FALSE(CanMake(*t, "m/x", 100));
  EXPECT_EQ(t->TryAcquire("m/x", 1).code, RT_LIMITED);
}

// Seed test: TPM 1000: 900 used, 200 blocked, 50 allowed.
TEST_F(TrackerTest, TokensPerMinuteLimit) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"tpm": 1000}}})");
  ASSERT_TRUE(t->Record("m/x", 900).ok());
  EXPECT_FALSE(CanMake(*t, "m/x", 200));
  EXPECT_TRUE(CanMake(*t, "m/x", 50));
  EXPECT_EQ(t->TryAcquire("m/x", 101).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("m/x", 100).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("m/x", 1).code, RT_LIMITED);
}

// Seed test: daily limit 100, which outlives the minute.
TEST_F(TrackerTest, DailyLimit) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"rpm": 1000, "rpd": 100}}})");
  for (int i = 0; i < 100; ++i) ASSERT_EQ(t->TryAcquire("m/x", 1).code, RT_OK);
  EXPECT_FALSE(CanMake(*t, "m/x", 1));
  clock_.Advance(61 * 1000 + 1000);
  EXPECT_FALSE(CanMake(*t, "m/x", 1)) << "the day window still counts";
  clock_.Advance(86400 * 1000 - 62 * 1000 + 24 * 60 * 1000);  // + resolution
  EXPECT_TRUE(CanMake(*t, "m/x", 1));
}

// Seed test: usage expires with the window.
TEST_F(TrackerTest, UsageExpires) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"rpm": 10}}})");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(t->Record("m/x", 1).ok());
  EXPECT_FALSE(CanMake(*t, "m/x", 1));
  clock_.Advance(59 * 1000);
  EXPECT_FALSE(CanMake(*t, "m/x", 1));
  clock_.Advance(3 * 1000);  // 62 s: past span + resolution (1 s)
  EXPECT_TRUE(CanMake(*t, "m/x", 1));
  EXPECT_EQ(Stats(*t)["models"]["m/x"]["requests_per_minute"]["current"], 0);
}

// Seed test: the wait time after filling the minute.
TEST_F(TrackerTest, WaitTime) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"rpm": 10, "tpm": 500}}})");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(t->Record("m/x", 10).ok());
  clock_.Advance(5000);
  Decision d = t->Check("m/x", 1);
  ASSERT_EQ(d.code, RT_LIMITED);
  EXPECT_GT(d.wait_ms, 55000u);
  EXPECT_LE(d.wait_ms, 57000u);  // 60 s + 1 s resolution - 5 s, within a bucket
  clock_.Advance(static_cast<int64_t>(d.wait_ms));
  EXPECT_EQ(t->Check("m/x", 1).code, RT_OK);
  // Never: more tokens than the limit.
  d = t->Check("m/x", 501);
  EXPECT_EQ(d.code, RT_E_TOO_LARGE);
  EXPECT_EQ(d.wait_ms, RT_WAIT_NEVER);
}

// A refusal is remembered (the same request is answered without a pass
// over the windows) only while nothing changes them: on the memory and the
// shm backend, a refund, a 429, a reset, in this tracker or (shm) in
// another one on the same segment, are seen by the next call.
TEST_F(TrackerTest, ARememberedRefusalNeverOutlivesAChange) {
  const std::string segment = "tt-refusal-" + std::to_string(getpid());
  for (const std::string backend : {std::string("memory"), "shm:" + segment}) {
    SCOPED_TRACE(backend);
    const std::string config = R"({"backend": ")" + backend +
                               R"(", "builtin_tiers": false, "limits": {"m/x": {"tpm": 1000}}})";
    auto t = Make(config.c_str());
    auto other = Make(config.c_str());  // shm: the same segment; memory: its own windows
    ASSERT_TRUE(t && other);
    Tracker& writer = backend == "memory" ? *t : *other;
    Decision d = t->TryAcquire("m/x", 900);
    ASSERT_EQ(d.code, RT_OK);
    const uint64_t grant = d.grant;
    clock_.Advance(1000);
    d = t->TryAcquire("m/x", 200);
    ASSERT_EQ(d.code, RT_LIMITED);
    clock_.Advance(10);
    const Decision again = t->TryAcquire("m/x", 200);  // from memory
    ASSERT_EQ(again.code, RT_LIMITED);
    EXPECT_EQ(again.wait_ms, d.wait_ms - 10);
    // A refund at the grant's time: 200 fit now.
    ASSERT_TRUE(writer.Settle("m/x", grant, Cost{900, 0}, Cost{500, 0}).ok());
    EXPECT_EQ(t->Check("m/x", 200).code, RT_OK);
    ASSERT_EQ(t->TryAcquire("m/x", 600).code, RT_LIMITED);
    ASSERT_EQ(t->TryAcquire("m/x", 600).code, RT_LIMITED);
    // A 429 for longer than the window's wait: the block's wait.
    ASSERT_TRUE(writer.ReportLimited("m/x", 200000).ok());
    d = t->TryAcquire("m/x", 600);
    EXPECT_EQ(d.code, RT_LIMITED);
    EXPECT_EQ(d.wait_ms, 200000u);
    // A reset: admitted.
    ASSERT_TRUE(writer.Reset().ok());
    EXPECT_EQ(t->TryAcquire("m/x", 600).code, RT_OK);
    t.reset();
    other.reset();
    if (backend != "memory") ASSERT_TRUE(ShmSegment::Remove(segment).ok());
  }
}

TEST_F(TrackerTest, ShortWindowsAndEveryWindowChecked) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"a/m": {"windows": [
      {"unit": "requests", "limit": 3, "seconds": 2},
      {"unit": "tokens", "limit": 100, "seconds": 10}]}}})");
  EXPECT_EQ(t->TryAcquire("a/m", 60).code, RT_OK);
  // Refused by the token window: consumes nothing from the request window.
  EXPECT_EQ(t->TryAcquire("a/m", 60).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("a/m", 10).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("a/m", 10).code, RT_OK);
  Decision d = t->TryAcquire("a/m", 10);
  ASSERT_EQ(d.code, RT_LIMITED);  // 3 requests in 2 s
  EXPECT_LE(d.wait_ms, 2100u);
  clock_.Advance(static_cast<int64_t>(d.wait_ms));
  EXPECT_EQ(t->TryAcquire("a/m", 10).code, RT_OK);
  json s = Stats(*t);
  EXPECT_EQ(s["models"]["a/m"]["requests_per_2s"]["limit"], 3);
  EXPECT_EQ(s["models"]["a/m"]["tokens_per_10s"]["current"], 90);
}

TEST_F(TrackerTest, SettleRefundsAtTheGrantTime) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"tpm": 1000}}})");
  Decision g = t->TryAcquire("m/x", 1000);  // estimate
  ASSERT_EQ(g.code, RT_OK);
  ASSERT_NE(g.grant, 0u);
  clock_.Advance(1000);
  ASSERT_TRUE(t->Settle("m/x", g.grant, 1000, 100).ok());  // really 100
  clock_.Advance(29000);
  EXPECT_EQ(t->TryAcquire("m/x", 900).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("m/x", 1).code, RT_LIMITED);
  // The first grant (now 100) leaves: exactly 100 free, not 1000.
  clock_.Advance(32000);
  EXPECT_EQ(t->TryAcquire("m/x", 101).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("m/x", 100).code, RT_OK);
}

TEST_F(TrackerTest, SettleTopsUpAndValidates) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"tpm": 1000, "rpm": 5}}})");
  Decision g = t->TryAcquire("m/x", 100);
  ASSERT_EQ(g.code, RT_OK);
  ASSERT_TRUE(t->Settle("m/x", g.grant, 100, 700).ok());
  json s = Stats(*t);
  EXPECT_EQ(s["models"]["m/x"]["tokens_per_minute"]["current"], 700);
  EXPECT_EQ(s["models"]["m/x"]["requests_per_minute"]["current"], 1);
  EXPECT_EQ(t->Settle("m/x", 0, 1, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Settle("m/x", g.grant + 1, 100, 2).code(),
            absl::StatusCode::kInvalidArgument) << "a forged ticket";
  // The wrong granted count would refund usage the grant never had.
  EXPECT_EQ(t->Settle("m/x", g.grant, 5000, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Stats(*t)["models"]["m/x"]["tokens_per_minute"]["current"], 700);
  // Another tracker's ticket.
  auto other = Make(R"({"builtin_tiers": false})");
  Decision og = other->TryAcquire("m/x", 100);
  EXPECT_EQ(t->Settle("m/x", og.grant, 100, 1).code(), absl::StatusCode::kInvalidArgument);
  // A grant that left every window: settling changes nothing.
  clock_.Advance(200 * 1000);
  ASSERT_TRUE(t->Settle("m/x", g.grant, 100, 5000).ok());
  EXPECT_EQ(Stats(*t)["models"]["m/x"]["tokens_per_minute"]["current"], 0);
}

TEST_F(TrackerTest, ConfigureKeepsUsageAndAppliesNewLimits) {
  auto t = Make(R"({"tier": "tier1"})");
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(t->Record("openai/gpt-4o-mini", 10).ok());
  json s = Stats(*t);
  EXPECT_EQ(s["models"]["openai/gpt-4o-mini"]["requests_per_minute"]["limit"], 500);
  ASSERT_TRUE(t->SetTier("tier2").ok());
  s = Stats(*t);
  EXPECT_EQ(s["tier"], "tier2");
  EXPECT_EQ(s["models"]["openai/gpt-4o-mini"]["requests_per_minute"]["limit"], 5000);
  EXPECT_EQ(s["models"]["openai/gpt-4o-mini"]["requests_per_minute"]["current"], 400);
  EXPECT_EQ(t->SetTier("tier9").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(t->tier(), "tier2");
  // A configured entry wins over the built-in one; a window that stays keeps
  // its usage.
  auto patch = ParseConfig(R"({"limits": {"openai/gpt-4o-mini": {"rpm": 401}}})");
  ASSERT_TRUE(patch.ok());
  ASSERT_TRUE(t->Configure(*patch).ok());
  EXPECT_EQ(t->TryAcquire("openai/gpt-4o-mini", 1).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("openai/gpt-4o-mini", 1).code, RT_LIMITED);
}

TEST_F(TrackerTest, ProviderWildcardAndUnknownModels) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"acme/*": {"rpm": 2}}})");
  EXPECT_EQ(t->TryAcquire("acme/one", 0).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("acme/one", 0).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("acme/one", 0).code, RT_LIMITED);
  EXPECT_EQ(t->TryAcquire("acme/two", 0).code, RT_OK) << "per model, not per provider";
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(t->TryAcquire("other/m", 5).code, RT_OK);
  json s = Stats(*t);
  EXPECT_EQ(s["models"]["other/m"]["requests_per_minute"]["current"], 1000);
  EXPECT_TRUE(s["models"]["other/m"]["requests_per_minute"]["limit"].is_null());
  EXPECT_TRUE(s["models"]["other/m"]["tokens_per_day"]["remaining"].is_null());
  EXPECT_EQ(s["models"]["other/m"]["tokens_per_day"]["current"], 5000);
  EXPECT_FALSE(s["models"].contains("acme/*"));
}

TEST_F(TrackerTest, StatsListConfiguredModelsAndUsagePercent) {
  auto t = Make(R"({"tier": "tier1"})");
  ASSERT_EQ(t->TryAcquire("openai/gpt-4o-mini", 100).code, RT_OK);
  json s = Stats(*t);
  EXPECT_EQ(s["backend"], "memory");
  auto w = s["models"]["openai/gpt-4o-mini"]["requests_per_minute"];
  EXPECT_EQ(w["current"], 1);
  EXPECT_EQ(w["limit"], 500);
  EXPECT_EQ(w["remaining"], 499);
  EXPECT_DOUBLE_EQ(w["usage_percent"].get<double>(), 0.2);
  // Built-in models of the tier are listed before they are used.
  EXPECT_EQ(s["models"]["openai/gpt-4o"]["requests_per_minute"]["current"], 0);
  EXPECT_EQ(s["models"]["openai/gpt-4o"]["tokens_per_minute"]["limit"], 30000);
  EXPECT_TRUE(s["models"].contains("gemini/gemini-2.5-flash"));
}

TEST_F(TrackerTest, ResetClearsUsageKeepsLimits) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"rpm": 1}}})");
  ASSERT_EQ(t->TryAcquire("m/x", 0).code, RT_OK);
  ASSERT_EQ(t->TryAcquire("m/x", 0).code, RT_LIMITED);
  ASSERT_TRUE(t->Reset().ok());
  EXPECT_EQ(t->TryAcquire("m/x", 0).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("m/x", 0).code, RT_LIMITED);
}

TEST_F(TrackerTest, AbsurdTokenCountsDoNotOverflow) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"m/x": {"tpm": 1000}}})");
  EXPECT_EQ(t->TryAcquire("m/x", UINT64_MAX).code, RT_E_TOO_LARGE);
  ASSERT_TRUE(t->Record("m/x", UINT64_MAX).ok());
  ASSERT_TRUE(t->Record("m/x", UINT64_MAX).ok());
  EXPECT_EQ(t->TryAcquire("m/x", 1).code, RT_LIMITED);
  EXPECT_EQ(Stats(*t)["models"]["m/x"]["tokens_per_minute"]["current"].get<uint64_t>(),
            UINT64_MAX);
  auto u = Make(R"({"builtin_tiers": false})");
  ASSERT_TRUE(u->Record("m/y", UINT64_MAX).ok());
  EXPECT_EQ(u->TryAcquire("m/y", UINT64_MAX).code, RT_OK);
}

TEST_F(TrackerTest, ManyModelsGrowTheTableUpToTheBound) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"p/*": {"rpm": 1}}})");
  for (int i = 0; i < RT_MAX_MODELS; ++i) {
    ASSERT_EQ(t->TryAcquire("p/m" + std::to_string(i), 0).code, RT_OK);
  }
  for (int i = 0; i < RT_MAX_MODELS; ++i) {
    ASSERT_EQ(t->TryAcquire("p/m" + std::to_string(i), 0).code, RT_LIMITED) << i;
  }
  // One more name is refused, on every path that can create a model; the
  // models already held keep working and nothing was booked to the refused one.
  EXPECT_EQ(t->TryAcquire("p/one-too-many", 0).code, RT_E_NOMEM);
  EXPECT_EQ(t->Check("p/one-too-many", Cost{0, 0}).code, RT_E_NOMEM);
  EXPECT_EQ(t->Record("p/one-too-many", Cost{0, 0}).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t->ReportLimited("p/one-too-many", 1000).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t->TryAcquire("p/m0", 0).code, RT_LIMITED);
  EXPECT_EQ(t->Explain("p/one-too-many", RT_E_NOMEM).find("4096 distinct models") !=
                std::string::npos,
            true);
  const std::string stats = t->StatsJson();
  EXPECT_EQ(stats.find("one-too-many"), std::string::npos);
  EXPECT_NE(stats.find("\"p/m4095\""), std::string::npos);
}

TEST_F(TrackerTest, ModelNamesAreCheckedWhereTheyFirstArrive) {
  auto t = Make(R"({"builtin_tiers": false, "limits": {"p/*": {"rpm": 5}}})");
  const std::string bad[] = {std::string("acme/caf\xe9"),       // Latin-1, not UTF-8
                             std::string("acme/\xc0\xaf"),      // overlong '/'
                             std::string("acme/\xed\xa0\x80"),  // a surrogate
                             std::string("acme/\xf4\x90\x80\x80"),  // above U+10FFFF
                             std::string("acme/a\nb"), std::string("acme/\x1b[31m"),
                             std::string("acme/\x7f"), std::string("acme/\xc2\x9b"),  // C1 CSI
                             std::string("acme/") + std::string(RT_MAX_MODEL_NAME, 'x')};
  for (const std::string& name : bad) {
    EXPECT_EQ(t->TryAcquire(name, 0).code, RT_E_INVALID) << name;
    EXPECT_EQ(t->Check(name, Cost{0, 0}).code, RT_E_INVALID) << name;
    EXPECT_EQ(t->Record(name, Cost{1, 0}).code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_FALSE(t->ReportLimited(name, 1000).ok()) << name;
    EXPECT_NE(t->Explain(name, RT_E_INVALID), "invalid argument") << name;
  }
  // The longest name, and characters from every UTF-8 length, are fine.
  const std::string good[] = {std::string("p/") + std::string(RT_MAX_MODEL_NAME - 2, 'x'),
                              "p/caf\xc3\xa9", "p/\xe6\xa8\xa1\xe5\x9e\x8b",
                              "p/\xf0\x9f\xa6\x99", "p/\xc2\xa0nbsp"};
  for (const std::string& name : good) EXPECT_EQ(t->TryAcquire(name, 0).code, RT_OK) << name;
  // Nothing invalid was booked, and the stats are valid JSON (parsed here).
  const std::string stats = t->StatsJson();
  auto j = nlohmann::json::parse(stats);
  EXPECT_EQ(j["models"].size(), 5u);
  EXPECT_TRUE(j["models"].contains("p/caf\xc3\xa9"));
}

// The wall clock steps forward a day, then back two (an NTP fix, a VM
// restored from a snapshot): a calendar day's wait never exceeds a day, and
// the steps let through at most one more day's worth.
TEST(WallClockStepTest, ACalendarDayWindowSurvivesSteps) {
  struct Clocks {
    std::atomic<int64_t> mono{1000000};
    std::atomic<int64_t> wall{1796558400000};  // 2026-12-06 12:00:00 UTC
  } clocks;
  Clock clock{[](void* c) { return static_cast<Clocks*>(c)->mono.load(); }, &clocks, 0,
              [](void* c) { return static_cast<Clocks*>(c)->wall.load(); }};
  auto config = ParseConfig(R"({"builtin_tiers": false, "limits": {"g/m": {"windows": [
      {"unit": "requests", "limit": 5, "calendar_day": "UTC"}]}}})");
  ASSERT_TRUE(config.ok());
  auto made = Tracker::Create(*config, clock);
  ASSERT_TRUE(made.ok());
  Tracker& t = **made;
  constexpr int64_t kHour = 3600 * 1000, kDay = 24 * kHour;
  int admitted = 0;
  auto drain = [&] {  // acquires until refused; returns the refusal's wait
    for (int i = 0; i < 100; ++i) {
      Decision d = t.TryAcquire("g/m", Cost{0, 0});
      if (d.code != RT_OK) {
        EXPECT_EQ(d.code, RT_LIMITED);
        return d.wait_ms;
      }
      ++admitted;
      clocks.mono += 10;
    }
    ADD_FAILURE() << "never refused";
    return uint64_t{0};
  };
  EXPECT_EQ(drain(), static_cast<uint64_t>(12 * kHour));
  EXPECT_EQ(admitted, 5);
  clocks.wall += kDay;  // forward a day: a new day, 5 more
  EXPECT_LE(drain(), static_cast<uint64_t>(kDay));
  EXPECT_EQ(admitted, 10);
  clocks.wall -= 2 * kDay;  // back two days: 2026-12-05 12:00
  const uint64_t wait = drain();
  EXPECT_LE(wait, static_cast<uint64_t>(kDay)) << "hours: " << wait / kHour;
  EXPECT_EQ(admitted, 10);  // the limit plus one day's worth, no more
  // Time goes on from there: the next midnight starts a day as usual.
  clocks.wall += static_cast<int64_t>(wait);
  clocks.mono += static_cast<int64_t>(wait);
  EXPECT_LE(drain(), static_cast<uint64_t>(kDay));
  EXPECT_EQ(admitted, 15);
}

TEST(ModelNameTest, DisplayNameEscapesWhatItCannotShow) {
  EXPECT_EQ(DisplayName("openai/gpt-4o"), "openai/gpt-4o");
  EXPECT_EQ(DisplayName("p/caf\xc3\xa9"), "p/caf\xc3\xa9");
  EXPECT_EQ(DisplayName("acme/caf\xe9"), "acme/caf\\xe9");
  EXPECT_EQ(DisplayName("a\nb\x1b"), "a\\x0ab\\x1b");
  EXPECT_EQ(DisplayName("c1\xc2\x9b."), "c1\\xc2\\x9b.");
  EXPECT_EQ(DisplayName("cut\xe6\xa8"), "cut\\xe6\\xa8");
  EXPECT_EQ(DisplayName(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_TRUE(CheckModelName("p/m").ok());
  EXPECT_FALSE(CheckModelName("").ok());
}

}  // namespace
}  // namespace ratetrack
