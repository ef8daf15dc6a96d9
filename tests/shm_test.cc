// The shared-memory backend at the core level: several trackers on one
// segment stand for several processes (each maps the segment on its own).
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"
#include "shm_segment.h"
#include "tracker.h"

namespace ratetrack {

class SlidingWindowTestPeer {
 public:
  static uint64_t& head_count(SlidingWindow& w) { return w.head_count_; }
  static uint64_t& used(SlidingWindow& w) { return w.used_; }
  static int64_t& head_end(SlidingWindow& w) { return w.head_end_ms_; }
  static uint64_t& slot_of_head(SlidingWindow& w) { return w.counts_[w.head_ % w.ring_]; }
};

namespace {

using nlohmann::json;

class ShmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "gtest-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ShmSegment::Remove(name_).IgnoreError();
  }
  void TearDown() override { ShmSegment::Remove(name_).IgnoreError(); }

  std::string Config(const std::string& limits, const std::string& extra = "") {
    return "{\"backend\": \"shm:" + name_ + "\", \"builtin_tiers\": false, \"limits\": " +
           limits + extra + "}";
  }
  absl::StatusOr<std::unique_ptr<Tracker>> Open(const std::string& json_text) {
    auto c = ParseConfig(json_text.c_str());
    if (!c.ok()) return c.status();
    return Tracker::Create(*c, Clock::Monotonic());
  }
  std::unique_ptr<Tracker> MustOpen(const std::string& json_text) {
    auto t = Open(json_text);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }
  static json Stats(const Tracker& t) { return json::parse(t.StatsJson()); }
  std::string path() const { return ShmSegment::PathOf(name_); }

  std::string name_;
};

TEST_F(ShmTest, TrackersOnOneSegmentShareOneBudget) {
  const std::string cfg = Config(R"({"a/b": {"rpm": 10, "tpm": 1000}})");
  auto a = MustOpen(cfg);
  auto b = MustOpen(cfg);
  int admitted = 0;
  for (int i = 0; i < 30; ++i) {
    admitted += (i % 2 ? a : b)->TryAcquire("a/b", 10).code == RT_OK;
  }
  EXPECT_EQ(admitted, 10);
  json s = Stats(*b);
  EXPECT_EQ(s["backend"], "shm:" + name_);
  EXPECT_EQ(s["models"]["a/b"]["requests_per_minute"]["current"], 10);
  EXPECT_EQ(s["models"]["a/b"]["tokens_per_minute"]["current"], 100);
  // Models used by another tracker are listed too.
  ASSERT_TRUE(a->Record("other/m", 5).ok());
  EXPECT_EQ(Stats(*b)["models"]["other/m"]["tokens_per_day"]["current"], 5);
  // Reset clears the segment for everybody.
  ASSERT_TRUE(a->Reset().ok());
  EXPECT_EQ(b->TryAcquire("a/b", 10).code, RT_OK);
}

TEST_F(ShmTest, GrantsSettleThroughAnyTrackerOfTheSegment) {
  const std::string cfg = Config(R"({"a/b": {"tpm": 1000}})");
  auto a = MustOpen(cfg);
  auto b = MustOpen(cfg);
  Decision g = a->TryAcquire("a/b", 1000);
  ASSERT_EQ(g.code, RT_OK);
  EXPECT_EQ(b->TryAcquire("a/b", 1).code, RT_LIMITED);
  ASSERT_TRUE(b->Settle("a/b", g.grant, 1000, 300).ok());
  EXPECT_EQ(a->TryAcquire("a/b", 700).code, RT_OK);
  EXPECT_EQ(a->TryAcquire("a/b", 1).code, RT_LIMITED);
  // A memory tracker's ticket is not this segment's.
  auto mem = Tracker::Create(*ParseConfig(R"({"builtin_tiers": false})"), Clock::Monotonic());
  Decision other = (*mem)->TryAcquire("a/b", 10);
  EXPECT_EQ(b->Settle("a/b", other.grant, 10, 1).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ShmTest, DisagreeingLimitsAreRefusedNotMixed) {
  auto a = MustOpen(Config(R"({"a/b": {"rpm": 5}})"));
  ASSERT_EQ(a->TryAcquire("a/b", 0).code, RT_OK);
  // At open: the segment already holds a/b with rpm 5.
  auto b = Open(Config(R"({"a/b": {"rpm": 6}})"));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(b.status().message().find("requests_per_minute 5"), absl::string_view::npos);
  EXPECT_NE(b.status().message().find("requests_per_minute 6"), absl::string_view::npos);
  // A configuration that says nothing about a/b is fine.
  auto quiet = MustOpen(Config(R"({"x/y": {"rpm": 1}})"));
  EXPECT_EQ(quiet->TryAcquire("a/b", 0).code, RT_OK) << "enforces the segment's limits";

  // A model met later: decisions fail with RT_E_CONFIG, records still book.
  auto c = MustOpen(Config(R"({"late/m": {"rpm": 100}})"));
  ASSERT_EQ(a->TryAcquire("late/m", 0).code, RT_OK);  // a creates it: unlimited
  // And now opening with a different opinion about late/m is refused too.
  EXPECT_FALSE(Open(Config(R"({"a/b": {"rpm": 5}, "late/m": {"rpm": 3}})")).ok());
  EXPECT_EQ(c->TryAcquire("late/m", 0).code, RT_E_CONFIG);
  EXPECT_NE(c->Explain("late/m", RT_E_CONFIG).find("late/m"), std::string::npos);
  EXPECT_EQ(c->Check("late/m", 0).code, RT_E_CONFIG);
  EXPECT_TRUE(c->Record("late/m", 1).ok());
  EXPECT_EQ(Stats(*a)["models"]["late/m"]["requests_per_minute"]["current"], 2);

  // "update": this configuration's limits replace the segment's, for all.
  auto e = MustOpen(Config(R"({"a/b": {"rpm": 7}})", R"(, "shm_limits": "update")"));
  EXPECT_EQ(Stats(*a)["models"]["a/b"]["requests_per_minute"]["limit"], 7);
  // 2 of the 7 were taken above (by a and by quiet).
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a->TryAcquire("a/b", 0).code, RT_OK) << i;
  EXPECT_EQ(a->TryAcquire("a/b", 0).code, RT_LIMITED) << "7 in all, across trackers";
  // Reconfiguring to agree clears a conflict.
  ASSERT_TRUE(c->Configure(*ParseConfig(R"({"limits": {"late/m": {"rpm": null}}})")).ok());
  EXPECT_EQ(c->TryAcquire("late/m", 0).code, RT_OK);
  // The backend of a tracker cannot change.
  EXPECT_EQ(c->Configure(*ParseConfig(R"({"backend": "memory"})")).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShmTest, ForeignOrIncompatibleSegmentsAreRefused) {
  { std::ofstream(path()) << std::string(8192, 'x'); }
  auto t = Open(Config("{}"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnavailable);  // RT_E_BACKEND
  EXPECT_NE(t.status().message().find("not a libratetrack segment"), absl::string_view::npos);
  { std::ofstream(path()) << "tiny"; }
  EXPECT_NE(Open(Config("{}")).status().message().find("too small"), absl::string_view::npos);
  // A segment of another layout version.
  ASSERT_TRUE(ShmSegment::Remove(name_).ok());
  MustOpen(Config("{}"));
  {
    std::fstream f(path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    uint32_t v = 99;
    f.write(reinterpret_cast<const char*>(&v), sizeof v);
  }
  t = Open(Config("{}"));
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("layout version 99"), absl::string_view::npos)
      << t.status();
}

TEST_F(ShmTest, AFullSegmentIsAClearError) {
  auto t = MustOpen(Config("{}", R"(, "shm_models": 2)"));
  EXPECT_EQ(t->TryAcquire("p/one", 0).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("p/two", 0).code, RT_OK);
  EXPECT_EQ(t->TryAcquire("p/three", 0).code, RT_E_BACKEND);
  absl::Status st = t->Record("p/three", 1);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("is full (2 models)"), absl::string_view::npos);
  EXPECT_EQ(t->TryAcquire("p/one", 0).code, RT_OK) << "existing models still work";
}

TEST_F(ShmTest, PermissionsAndNames) {
  MustOpen(Config("{}"));
  struct stat sb;
  ASSERT_EQ(stat(path().c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  ASSERT_TRUE(ShmSegment::Remove(name_).ok());
  MustOpen(Config("{}", R"(, "shm_mode": "0660")"));
  ASSERT_EQ(stat(path().c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0660u);
  for (const char* bad : {"../etc", "a/b", "", ".x", "a..b", "x y"}) {
    EXPECT_FALSE(ShmSegment::CheckName(bad).ok()) << bad;
  }
  EXPECT_EQ(ShmSegment::Remove("../passwd").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmSegment::Remove("no-such-segment-here").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ShmTest, CreationRaceHasOneWinner) {
  const std::string cfg = Config(R"({"a/b": {"rpm": 1000}})");
  std::vector<std::unique_ptr<Tracker>> trackers(8);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) {
      }
      trackers[i] = MustOpen(cfg);
      if (trackers[i]) trackers[i]->TryAcquire("a/b", 0);
    });
  }
  go.store(true);
  for (auto& t : threads) t.join();
  for (auto& t : trackers) ASSERT_NE(t, nullptr);
  EXPECT_EQ(Stats(*trackers[0])["models"]["a/b"]["requests_per_minute"]["current"], 8);
  auto list = json::parse(ShmSegment::ListJson());
  int mine = 0;
  for (auto& e : list) mine += e["name"] == name_;
  EXPECT_EQ(mine, 1);
  // No temporary files left behind.
  for (auto& e : list) EXPECT_NE(e["name"].get<std::string>()[0], '.');
}

// One process's 429 stops the others, and what one process learned from
// the provider's headers binds them all.
TEST_F(ShmTest, ProviderReportsReachEveryProcess) {
  const std::string cfg = Config(R"({"openai/m": {"rpm": 500}})");
  auto mine = MustOpen(cfg);
  pid_t pid = fork();
  if (pid == 0) {
    auto other = Open(cfg);
    if (!other.ok()) _exit(2);
    if (!(*other)->ReportLimited("openai/m", 20000).ok()) _exit(3);
    if (!(*other)->Observe("openai/x", {{"x-ratelimit-remaining-requests", "2"},
                                        {"x-ratelimit-reset-requests", "1m0s"}}).ok()) {
      _exit(4);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << WEXITSTATUS(status);
  Decision d = mine->TryAcquire("openai/m", 1);
  EXPECT_EQ(d.code, RT_LIMITED);
  EXPECT_GT(d.wait_ms, 15000u);
  EXPECT_LE(d.wait_ms, 20000u);
  EXPECT_EQ(mine->TryAcquire("openai/x", 1).code, RT_OK);
  EXPECT_EQ(mine->TryAcquire("openai/x", 1).code, RT_OK);
  EXPECT_EQ(mine->TryAcquire("openai/x", 1).code, RT_LIMITED) << "the other process's cap";
  json s = Stats(*mine);
  EXPECT_GT(s["provider"]["openai/m"]["blocked_for_ms"].get<uint64_t>(), 15000u);
  EXPECT_EQ(s["provider"]["openai/x"]["requests"]["remaining"], 0);
}

// A writer killed in the middle of an update leaves torn windows; Repair
// restores them before anyone uses them.
TEST(SlidingWindowRepairTest, RepairsTornStates) {
  SlidingWindow w(60000, 0);
  w.Advance(0);
  w.Add(7);
  w.Advance(5000);
  w.Add(3);
  // Killed inside Add: head_count_ updated, used_ not.
  SlidingWindowTestPeer::head_count(w) += 4;
  w.Repair();
  EXPECT_EQ(w.used(), 14u);
  // Killed inside AdvanceSlow after copying the head into the ring.
  SlidingWindowTestPeer::slot_of_head(w) = SlidingWindowTestPeer::head_count(w);
  SlidingWindowTestPeer::used(w) = 999;
  SlidingWindowTestPeer::head_end(w) = 12345;
  w.Repair();
  EXPECT_EQ(w.used(), 14u) << "the head counted once";
  EXPECT_EQ(SlidingWindowTestPeer::slot_of_head(w), 0u);
  EXPECT_EQ(SlidingWindowTestPeer::head_end(w), 6000);
  w.Advance(62000);  // 7 (at 0 s) gone
  EXPECT_EQ(w.used(), 7u);
}

// A process dies holding a model's lock: the next locker gets it, repaired.
TEST_F(ShmTest, DeadOwnerLeavesNoLockHeld) {
  const std::string cfg = Config(R"({"a/b": {"tpm": 1000}})");
  auto t = MustOpen(cfg);
  ASSERT_EQ(t->TryAcquire("a/b", 100).code, RT_OK);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto seg = ShmSegment::Open(name_, ShmOptions{});
    if (!seg.ok()) _exit(2);
    ShmModel* m = (*seg)->Find("a/b", 0);
    // Find needs the hash the tracker used: look it up by iterating.
    (*seg)->ForEach([&](ShmModel* slot) {
      if (ShmSegment::Name(slot) == "a/b") m = slot;
    });
    if (m == nullptr || !ShmSegment::Lock(m).ok()) _exit(3);
    SlidingWindow& w = ShmSegment::Windows(m).slots[1].window;  // tokens per minute
    SlidingWindowTestPeer::head_count(w) += 50;                 // torn: used_ not updated
    _exit(0);                                                   // dies holding the lock
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  alarm(10);
  Decision d = t->TryAcquire("a/b", 850);  // 100 + 50 (the dead writer's) + 850
  alarm(0);
  EXPECT_EQ(d.code, RT_OK);
  EXPECT_EQ(t->TryAcquire("a/b", 1).code, RT_LIMITED);
  EXPECT_EQ(Stats(*t)["models"]["a/b"]["tokens_per_minute"]["current"], 1000);
}

}  // namespace
}  // namespace ratetrack
