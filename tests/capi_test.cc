// The C API as a caller sees it: the global's lifecycle, every bad input,
// concurrency, blocking acquire and fork.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"

namespace {

using nlohmann::json;

const char* const kMini = "openai/gpt-4o-mini";

json StatsOf(rt_tracker* t) {
  char* s = rt_stats_json(t);
  EXPECT_NE(s, nullptr) << rt_last_error();
  json j = json::parse(s ? s : "null");
  rt_free(s);
  return j;
}

class CApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("RATETRACK_TIER");
    unsetenv("RATETRACK_CONFIG");
    unsetenv("RATETRACK_BACKEND");
    ASSERT_EQ(rt_reset(nullptr), RT_OK);
  }
  void TearDown() override { rt_reset(nullptr); }
};

TEST_F(CApiTest, Version) {
  EXPECT_EQ(rt_version_number(), RT_VERSION_NUMBER);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%d.%d", RT_VERSION_MAJOR, RT_VERSION_MINOR,
                RT_VERSION_PATCH);
  EXPECT_STREQ(rt_version_string(), buf);
}

TEST_F(CApiTest, StatusStringsAreStaticAndNeverNull) {
  for (int s = -100; s <= 100; ++s) ASSERT_NE(rt_status_string(s), nullptr);
  EXPECT_NE(std::string(rt_status_string(RT_E_CONFIG)).find("configuration"),
            std::string::npos);
  EXPECT_STREQ(rt_status_string(12345), "unknown status code");
}

// Seed: the singleton is the same instance; shared state.
TEST_F(CApiTest, GlobalIsOneSharedTracker) {
  EXPECT_EQ(std::string(StatsOf(nullptr).dump()), "null") << "stats before creation";
  rt_tracker* a = rt_global_get(nullptr);
  ASSERT_NE(a, nullptr) << rt_last_error();
  rt_tracker* b = rt_global_get("tier1");
  EXPECT_EQ(a, b);
  ASSERT_EQ(rt_record(a, kMini, 100), RT_OK);
  EXPECT_EQ(StatsOf(b)["models"][kMini]["requests_per_minute"]["current"], 1);
  EXPECT_EQ(StatsOf(nullptr)["models"][kMini]["tokens_per_minute"]["current"], 100);
  EXPECT_EQ(StatsOf(nullptr)["tier"], "tier1");
  rt_close(a);  // ignored for the global
  EXPECT_EQ(rt_record(a, kMini, 1), RT_OK);
}

// The seed's scenario: 400 + 100 requests, then refused.
TEST_F(CApiTest, SeedScenario) {
  rt_tracker* agent = rt_global_get("tier1");
  rt_tracker* tool = rt_global_get(nullptr);
  for (int i = 0; i < 400; ++i) ASSERT_EQ(rt_record(agent, kMini, 100), RT_OK);
  EXPECT_EQ(rt_can_make(tool, kMini, 100), 1);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(rt_try_acquire(tool, kMini, 100, nullptr), RT_OK);
  EXPECT_EQ(rt_can_make(agent, kMini, 100), 0);
  uint64_t retry = 0;
  EXPECT_EQ(rt_try_acquire(tool, kMini, 100, &retry), RT_LIMITED);
  EXPECT_GT(retry, 0u);
  EXPECT_LE(retry, 62000u);
}

TEST_F(CApiTest, TierChangeKeepsUsageAndHandle) {
  rt_tracker* g = rt_global_get("tier1");
  for (int i = 0; i < 500; ++i) ASSERT_EQ(rt_try_acquire(g, kMini, 1, nullptr), RT_OK);
  ASSERT_EQ(rt_can_make(g, kMini, 1), 0);
  rt_tracker* g2 = rt_global_get("tier2");
  EXPECT_EQ(g, g2);
  json s = StatsOf(nullptr);
  EXPECT_EQ(s["tier"], "tier2");
  EXPECT_EQ(s["models"][kMini]["requests_per_minute"]["current"], 500);
  EXPECT_EQ(s["models"][kMini]["requests_per_minute"]["limit"], 5000);
  EXPECT_EQ(rt_can_make(g, kMini, 1), 1);
  // An unknown tier: NULL, a message, nothing changes.
  EXPECT_EQ(rt_global_get("tier42"), nullptr);
  EXPECT_NE(std::string(rt_last_error()).find("tier42"), std::string::npos);
  EXPECT_EQ(StatsOf(nullptr)["tier"], "tier2");
  // Per-provider tiers.
  ASSERT_NE(rt_global_get("openai=tier1,gemini=free"), nullptr) << rt_last_error();
  EXPECT_EQ(StatsOf(nullptr)["models"][kMini]["requests_per_minute"]["limit"], 500);
}

TEST_F(CApiTest, ResetNullReturnsToNeverCreated) {
  rt_tracker* g = rt_global_get("tier2");
  ASSERT_EQ(rt_record(g, kMini, 5), RT_OK);
  ASSERT_EQ(rt_reset(nullptr), RT_OK);
  EXPECT_TRUE(StatsOf(nullptr).is_null());
  // The old handle stays valid and works on the emptied global.
  EXPECT_EQ(StatsOf(g)["models"][kMini]["requests_per_minute"]["current"], 0);
  rt_tracker* again = rt_global_get(nullptr);
  EXPECT_EQ(again, g);
  EXPECT_EQ(StatsOf(nullptr)["tier"], "tier1") << "the tier was forgotten";
}

TEST_F(CApiTest, ResetPrivateKeepsLimits) {
  rt_tracker* t = rt_open(R"({"builtin_tiers": false, "limits": {"a/b": {"rpm": 1}}})");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 0, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 0, nullptr), RT_LIMITED);
  EXPECT_EQ(rt_reset(t), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 0, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 0, nullptr), RT_LIMITED);
  rt_close(t);
}

TEST_F(CApiTest, EnvironmentTierAndConfigFile) {
  setenv("RATETRACK_TIER", "tier2", 1);
  rt_tracker* g = rt_global_get(nullptr);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(StatsOf(nullptr)["tier"], "tier2");
  rt_reset(nullptr);
  unsetenv("RATETRACK_TIER");

  char path[] = "/tmp/ratetrack-config-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const char* cfg = R"({"tier": "free", "limits": {"acme/m": {"rpm": 3}}})";
  ASSERT_EQ(write(fd, cfg, strlen(cfg)), static_cast<ssize_t>(strlen(cfg)));
  close(fd);
  setenv("RATETRACK_CONFIG", path, 1);
  g = rt_global_get(nullptr);
  ASSERT_NE(g, nullptr) << rt_last_error();
  json s = StatsOf(nullptr);
  EXPECT_EQ(s["tier"], "free");
  EXPECT_EQ(s["models"]["acme/m"]["requests_per_minute"]["limit"], 3);
  rt_reset(nullptr);

  // A broken file: NULL and a message naming the file.
  std::ofstream(path) << "{broken";
  EXPECT_EQ(rt_global_get(nullptr), nullptr);
  EXPECT_NE(std::string(rt_last_error()).find(path), std::string::npos);
  unlink(path);
  EXPECT_EQ(rt_global_get(nullptr), nullptr) << "missing file";
  unsetenv("RATETRACK_CONFIG");
  EXPECT_NE(rt_global_get(nullptr), nullptr);
}

TEST_F(CApiTest, EnvironmentBackendMakesTheGlobalCrossProcess) {
  const std::string name = "gtest-env-" + std::to_string(getpid());
  rt_shm_remove(name.c_str());
  setenv("RATETRACK_BACKEND", ("shm:" + name).c_str(), 1);
  rt_tracker* g = rt_global_get("tier1");
  ASSERT_NE(g, nullptr) << rt_last_error();
  EXPECT_EQ(StatsOf(nullptr)["backend"], "shm:" + name);
  ASSERT_EQ(rt_record(g, kMini, 7), RT_OK);
  // Another process (a child) sees the usage through the same NAME.
  pid_t pid = fork();
  if (pid == 0) {
    rt_tracker* t = rt_open(("{\"backend\": \"shm:" + name + "\"}").c_str());
    char* s = t ? rt_stats_json(t) : nullptr;
    bool ok = s && json::parse(s)["models"][kMini]["tokens_per_minute"]["current"] == 7;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Re-created after a reset without the variable: back in memory, same handle.
  unsetenv("RATETRACK_BACKEND");
  ASSERT_EQ(rt_reset(nullptr), RT_OK);
  EXPECT_EQ(rt_global_get(nullptr), g);
  EXPECT_EQ(StatsOf(nullptr)["backend"], "memory");
  rt_reset(nullptr);
  setenv("RATETRACK_BACKEND", "shm:../../etc", 1);
  EXPECT_EQ(rt_global_get(nullptr), nullptr);
  EXPECT_NE(std::string(rt_last_error()).find("RATETRACK_BACKEND"), std::string::npos);
  rt_tracker* out = nullptr;
  EXPECT_EQ(rt_global_get_ex(nullptr, &out), RT_E_CONFIG);
  unsetenv("RATETRACK_BACKEND");
  EXPECT_EQ(rt_shm_remove(name.c_str()), RT_OK);
  char* list = nullptr;
  ASSERT_EQ(rt_shm_list(&list), RT_OK);
  EXPECT_EQ(json::parse(list).is_array(), true);
  rt_free(list);
  EXPECT_EQ(rt_shm_list(nullptr), RT_E_INVALID);
  EXPECT_EQ(rt_shm_remove(nullptr), RT_E_INVALID);
  EXPECT_EQ(rt_shm_remove("a/b"), RT_E_INVALID);
}

TEST_F(CApiTest, GlobalConfigureBeforeAndAfterCreation) {
  ASSERT_EQ(rt_global_configure(R"({"limits": {"acme/m": {"rpm": 2}}})"), RT_OK);
  rt_tracker* g = rt_global_get(nullptr);
  EXPECT_EQ(rt_try_acquire(g, "acme/m", 0, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(g, "acme/m", 0, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(g, "acme/m", 0, nullptr), RT_LIMITED);
  ASSERT_EQ(rt_global_configure(R"({"limits": {"acme/m": {"rpm": 3}}})"), RT_OK);
  EXPECT_EQ(rt_try_acquire(g, "acme/m", 0, nullptr), RT_OK) << "usage kept, new limit";
  EXPECT_EQ(rt_try_acquire(g, "acme/m", 0, nullptr), RT_LIMITED);
  // Bad JSON changes nothing.
  EXPECT_EQ(rt_global_configure("{\"limits\": {\"acme/m\": {\"rpm\": -3}}}"), RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("limits.acme/m.rpm"), std::string::npos);
  EXPECT_EQ(rt_global_configure("{nope"), RT_E_CONFIG);
  EXPECT_EQ(rt_global_configure(R"({"tier": "tier77"})"), RT_E_CONFIG);
  EXPECT_EQ(rt_configure(g, R"({"tier": "tier77"})"), RT_E_CONFIG);
  EXPECT_EQ(StatsOf(nullptr)["models"]["acme/m"]["requests_per_minute"]["limit"], 3);
}

TEST_F(CApiTest, EveryBadInputIsAStatusNotACrash) {
  rt_tracker* t = rt_open(nullptr);
  ASSERT_NE(t, nullptr);
  uint64_t out = 7;
  struct {
    int rc;
    int want;
  } cases[] = {
      {rt_can_make(nullptr, kMini, 1), RT_E_INVALID},
      {rt_can_make(t, nullptr, 1), RT_E_INVALID},
      {rt_can_make(t, "", 1), RT_E_INVALID},
      {rt_record(nullptr, kMini, 1), RT_E_INVALID},
      {rt_record(t, nullptr, 1), RT_E_INVALID},
      {rt_record(t, "", 1), RT_E_INVALID},
      {rt_try_acquire(nullptr, kMini, 1, &out), RT_E_INVALID},
      {rt_try_acquire(t, "", 1, &out), RT_E_INVALID},
      {rt_try_acquire_grant(t, nullptr, 1, nullptr, nullptr), RT_E_INVALID},
      {rt_acquire(nullptr, kMini, 1, 0, nullptr), RT_E_INVALID},
      {rt_settle(nullptr, kMini, 1, 1, 1), RT_E_INVALID},
      {rt_settle(t, "", 1, 1, 1), RT_E_INVALID},
      {rt_settle(t, kMini, 0, 1, 1), RT_E_INVALID},
      {rt_record_tokens(nullptr, kMini, 1, 1), RT_E_INVALID},
      {rt_record_tokens(t, nullptr, 1, 1), RT_E_INVALID},
      {rt_record_tokens(t, "", 1, 1), RT_E_INVALID},
      {rt_wait_time(t, kMini, 1, nullptr), RT_E_INVALID},
      {rt_wait_time(nullptr, kMini, 1, &out), RT_E_INVALID},
      {rt_configure(nullptr, "{}"), RT_E_INVALID},
      {rt_configure(t, nullptr), RT_E_INVALID},
      {rt_configure(t, "{\"x\": 1}"), RT_E_CONFIG},
      {rt_global_configure(nullptr), RT_E_INVALID},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    EXPECT_EQ(cases[i].rc, cases[i].want) << "case " << i;
  }
  EXPECT_EQ(rt_try_acquire(t, "", 1, &out), RT_E_INVALID);
  EXPECT_STREQ(rt_last_error(), "rt_try_acquire: model is empty");
  EXPECT_EQ(rt_open("{\"tier\": 1}"), nullptr);
  EXPECT_NE(std::string(rt_last_error()).find("'tier'"), std::string::npos);
  EXPECT_EQ(rt_open("{\"backend\": \"carrier-pigeon\"}"), nullptr);
  EXPECT_NE(std::string(rt_last_error()).find("backend"), std::string::npos);
  rt_close(nullptr);
  rt_free(nullptr);
  // Nothing was recorded by the failed calls.
  EXPECT_EQ(StatsOf(t)["models"][kMini]["requests_per_minute"]["current"], 0);
  rt_close(t);
}

// A name that is not UTF-8, too long or holds a control character is
// refused by every function that takes one, with a message that shows it
// escaped; stats and metrics stay valid and list none of them.
TEST_F(CApiTest, BadModelNamesAreRefusedEverywhere) {
  rt_tracker* t = rt_open(nullptr);
  ASSERT_NE(t, nullptr);
  const std::string long_name = "acme/" + std::string(RT_MAX_MODEL_NAME, 'x');
  for (const char* name : {"acme/caf\xe9", "acme/\x1b[2J", "acme/a\nb", long_name.c_str()}) {
    uint64_t wait = 0, grant = 0;
    size_t picked = 9;
    const char* names[] = {"h"};
    const char* values[] = {"1"};
    const char* pick[] = {name};
    EXPECT_EQ(rt_try_acquire(t, name, 1, &wait), RT_E_INVALID) << name;
    EXPECT_EQ(std::string(rt_last_error()).find(name), std::string::npos) << rt_last_error();
    EXPECT_NE(std::string(rt_last_error()).find("model name"), std::string::npos);
    EXPECT_EQ(rt_try_acquire_grant(t, name, 1, &wait, &grant), RT_E_INVALID);
    EXPECT_EQ(rt_can_make(t, name, 1), RT_E_INVALID);
    EXPECT_EQ(rt_record(t, name, 1), RT_E_INVALID);
    EXPECT_EQ(rt_wait_time(t, name, 1, &wait), RT_E_INVALID);
    EXPECT_EQ(rt_acquire(t, name, 1, 0, nullptr), RT_E_INVALID);
    EXPECT_EQ(rt_settle(t, name, 5, 1, 1), RT_E_INVALID);
    EXPECT_EQ(rt_record_tokens(t, name, 1, 1), RT_E_INVALID);
    EXPECT_EQ(rt_observe_headers(t, name, names, values, 1), RT_E_INVALID);
    EXPECT_EQ(rt_report_limited(t, name, "1"), RT_E_INVALID);
    EXPECT_EQ(rt_pick(t, pick, 1, 1, 0, &picked, &wait, &grant), RT_E_INVALID);
  }
  const nlohmann::json stats = StatsOf(t);
  for (auto it = stats["models"].begin(); it != stats["models"].end(); ++it) {
    EXPECT_EQ(it.key().find("acme/"), std::string::npos) << it.key();
  }
  char* text = nullptr;
  ASSERT_EQ(rt_metrics_text(t, &text), RT_OK);
  EXPECT_EQ(std::string(text).find("acme/"), std::string::npos);
  rt_free(text);
  rt_close(t);
}

TEST_F(CApiTest, ExVariantsReturnTheStatus) {
  rt_tracker* t = reinterpret_cast<rt_tracker*>(1);
  EXPECT_EQ(rt_open_ex("{\"tier\": \"tier0\"}", &t), RT_E_CONFIG);
  EXPECT_EQ(t, nullptr);
  EXPECT_EQ(rt_open_ex("{}", nullptr), RT_E_INVALID);
  ASSERT_EQ(rt_open_ex(nullptr, &t), RT_OK);
  char* json = nullptr;
  ASSERT_EQ(rt_stats_json_ex(t, &json), RT_OK);
  EXPECT_EQ(json[0], '{');
  rt_free(json);
  EXPECT_EQ(rt_stats_json_ex(t, nullptr), RT_E_INVALID);
  rt_close(t);
  ASSERT_EQ(rt_stats_json_ex(nullptr, &json), RT_OK);
  EXPECT_STREQ(json, "null");
  rt_free(json);
  rt_tracker* g = nullptr;
  EXPECT_EQ(rt_global_get_ex("tier0", &g), RT_E_CONFIG);
  EXPECT_EQ(g, nullptr);
  EXPECT_EQ(rt_global_get_ex(nullptr, &g), RT_OK);
  EXPECT_EQ(g, rt_global_get(nullptr));
  EXPECT_EQ(rt_global_get_ex(nullptr, nullptr), RT_E_INVALID);
}

TEST_F(CApiTest, MetricsTextFollowsPrometheusConventions) {
  char* text = nullptr;
  ASSERT_EQ(rt_metrics_text(nullptr, &text), RT_OK);
  EXPECT_EQ(text[0], '#') << "before creation: a comment only";
  rt_free(text);
  rt_tracker* t = rt_open(R"({"builtin_tiers": false, "limits": {"a/\"odd\"": {"rpm": 2}}})");
  for (int i = 0; i < 3; ++i) rt_try_acquire(t, "a/\"odd\"", 5, nullptr);
  ASSERT_EQ(rt_metrics_text(t, &text), RT_OK);
  const std::string m = text;
  rt_free(text);
  EXPECT_NE(m.find("# TYPE ratetrack_admitted_total counter\n"), std::string::npos);
  EXPECT_NE(m.find("ratetrack_admitted_total{model=\"a/\\\"odd\\\"\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("ratetrack_refused_total{model=\"a/\\\"odd\\\"\"} 1\n"), std::string::npos);
  EXPECT_NE(m.find("ratetrack_window_limit{model=\"a/\\\"odd\\\"\",window=\"requests_per_minute\"} 2\n"),
            std::string::npos);
  EXPECT_EQ(m.find("window=\"tokens_per_minute\"} 18446744073709551615"), std::string::npos)
      << "no _limit sample for an unlimited window";
  // Every sample's family has HELP and TYPE first.
  std::string family;
  for (size_t pos = 0; pos < m.size();) {
    size_t end = m.find('\n', pos);
    std::string line = m.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("# TYPE ", 0) == 0) family = line.substr(7, line.find(' ', 7) - 7);
    if (line.empty() || line[0] == '#') continue;
    EXPECT_EQ(line.rfind(family, 0), 0u) << line;
  }
  EXPECT_EQ(rt_metrics_text(t, nullptr), RT_E_INVALID);
  rt_close(t);
}

TEST_F(CApiTest, TooLargeAndWaitTime) {
  rt_tracker* t = rt_open(R"({"builtin_tiers": false, "limits": {"a/b": {"tpm": 100, "rpm": 2},
                              "a/zero": {"rpm": 0}}})");
  ASSERT_NE(t, nullptr);
  uint64_t retry = 5, grant = 5, wait = 5;
  EXPECT_EQ(rt_try_acquire_grant(t, "a/b", 101, &retry, &grant), RT_E_TOO_LARGE);
  EXPECT_EQ(retry, RT_WAIT_NEVER);
  EXPECT_EQ(grant, 0u);
  EXPECT_EQ(rt_can_make(t, "a/b", UINT64_MAX), RT_E_TOO_LARGE);
  EXPECT_EQ(rt_wait_time(t, "a/b", 101, &wait), RT_E_TOO_LARGE);
  EXPECT_EQ(wait, RT_WAIT_NEVER);
  EXPECT_EQ(rt_try_acquire(t, "a/zero", 0, nullptr), RT_E_TOO_LARGE);
  EXPECT_EQ(rt_acquire(t, "a/b", 1000, RT_WAIT_NEVER, nullptr), RT_E_TOO_LARGE);
  EXPECT_EQ(rt_wait_time(t, "a/b", 10, &wait), RT_OK);
  EXPECT_EQ(wait, 0u);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 10, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 10, nullptr), RT_OK);
  EXPECT_EQ(rt_wait_time(t, "a/b", 10, &wait), RT_OK);
  EXPECT_GT(wait, 50000u);
  EXPECT_LE(wait, 62000u);
  rt_close(t);
}

TEST_F(CApiTest, SettleThroughTheCApi) {
  rt_tracker* t = rt_open(R"({"builtin_tiers": false, "limits": {"a/b": {"tpm": 1000}}})");
  uint64_t grant = 0;
  ASSERT_EQ(rt_try_acquire_grant(t, "a/b", 1000, nullptr, &grant), RT_OK);
  ASSERT_NE(grant, 0u);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_LIMITED);
  ASSERT_EQ(rt_settle(t, "a/b", grant, 1000, 400), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 600, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_LIMITED);
  EXPECT_EQ(rt_settle(t, "a/b", grant, 400, 10), RT_E_INVALID) << "400 is not its count";
  EXPECT_STREQ(rt_last_error(),
               "rt_settle: the grant ticket does not match this tracker, model and "
               "granted tokens (a ticket from another tracker or model, or not the "
               "tokens it was granted for)");
  EXPECT_EQ(rt_settle(t, "a/other", grant, 1000, 10), RT_E_INVALID) << "another model";
  EXPECT_EQ(rt_settle(t, "a/b", grant ^ 1, 1000, 400), RT_E_INVALID);
  rt_close(t);
}

// rt_report_limited turns an HTTP date into a wait against the exact wall
// clock. A coarse reading lags by up to a tick, which just after a second
// boundary made a date 5 s ahead a wait of more than 5000 ms.
TEST_F(CApiTest, AnHttpDateNeverWaitsPastItself) {
  auto wall_ms = [] {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  };
  rt_tracker* t = rt_open(R"({"builtin_tiers": false})");
  ASSERT_NE(t, nullptr) << rt_last_error();
  for (int round = 0; round < 3; ++round) {
    // Just after a second boundary, where a lagging reading is still in the
    // second before.
    usleep(static_cast<useconds_t>(1000 - wall_ms() % 1000) * 1000);
    const int64_t now = wall_ms();
    const time_t at_s = static_cast<time_t>(now / 1000 + 5);
    struct tm tm;
    gmtime_r(&at_s, &tm);
    char date[64];
    ASSERT_GT(strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm), 0u);
    const std::string model = "acme/m" + std::to_string(round);
    ASSERT_EQ(rt_report_limited(t, model.c_str(), date), RT_OK) << rt_last_error();
    uint64_t retry = 0;
    ASSERT_EQ(rt_try_acquire(t, model.c_str(), 0, &retry), RT_LIMITED);
    const int64_t exact = static_cast<int64_t>(at_s) * 1000 - now;
    EXPECT_LE(static_cast<int64_t>(retry), exact) << date << " at " << now;
    EXPECT_GT(static_cast<int64_t>(retry), exact - 1000) << date << " at " << now;
  }
  rt_close(t);
}

TEST_F(CApiTest, BlockingAcquireWaitsForTheWindow) {
  rt_tracker* t = rt_open(R"({"builtin_tiers": false, "limits": {"a/b": {"windows": [
      {"unit": "requests", "limit": 2, "seconds": 1}]}}})");
  uint64_t grant = 0;
  ASSERT_EQ(rt_acquire(t, "a/b", 0, 0, &grant), RT_OK);
  ASSERT_EQ(rt_acquire(t, "a/b", 0, 0, &grant), RT_OK);
  EXPECT_EQ(rt_acquire(t, "a/b", 0, 0, &grant), RT_LIMITED) << "timeout 0: try once";
  EXPECT_EQ(grant, 0u);
  EXPECT_EQ(rt_acquire(t, "a/b", 0, 100, nullptr), RT_LIMITED);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(rt_acquire(t, "a/b", 0, 3000, &grant), RT_OK);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GT(waited, std::chrono::milliseconds(300));
  EXPECT_LT(waited, std::chrono::milliseconds(2500));
  EXPECT_NE(grant, 0u);
  rt_close(t);
}

// 8 threads race for the last slots: exactly the limit is admitted.
TEST_F(CApiTest, ConcurrentTryAcquireAdmitsExactlyTheLimit) {
  for (const char* model : {"a/b", "openai/gpt-4o-mini"}) {
    rt_tracker* t = rt_open(R"({"limits": {"a/b": {"rpm": 1000, "tpm": 5000000},
                                           "openai/gpt-4o-mini": {"rpm": 100000, "tpm": 7777}}})");
    ASSERT_NE(t, nullptr);
    const uint64_t tokens = std::string(model) == "a/b" ? 7 : 1;
    const int expected = std::string(model) == "a/b" ? 1000 : 7777;
    std::atomic<int> admitted{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        while (!go.load()) {
        }
        for (int j = 0; j < 2000; ++j) {
          int rc = rt_try_acquire(t, model, tokens, nullptr);
          if (rc == RT_OK) admitted.fetch_add(1);
          else ASSERT_EQ(rc, RT_LIMITED);
          if (j % 64 == 0) rt_free(rt_stats_json(t));
        }
      });
    }
    go.store(true);
    for (auto& th : threads) th.join();
    EXPECT_EQ(admitted.load(), expected) << model;
    rt_close(t);
  }
}

TEST_F(CApiTest, ConcurrentGlobalCreationIsRaceFree) {
  std::vector<std::thread> threads;
  std::vector<rt_tracker*> got(8);
  std::atomic<bool> go{false};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) {
      }
      got[i] = rt_global_get(i % 2 ? nullptr : "tier1");
      rt_record(got[i], kMini, 1);
    });
  }
  go.store(true);
  for (auto& th : threads) th.join();
  for (rt_tracker* g : got) EXPECT_EQ(g, got[0]);
  EXPECT_EQ(StatsOf(nullptr)["models"][kMini]["requests_per_minute"]["current"], 8);
}

TEST_F(CApiTest, LastErrorIsPerThread) {
  EXPECT_EQ(rt_record(nullptr, kMini, 1), RT_E_INVALID);
  std::string mine = rt_last_error();
  std::thread([] {
    EXPECT_STREQ(rt_last_error(), "");
    EXPECT_EQ(rt_can_make(nullptr, "", 1), RT_E_INVALID);
  }).join();
  EXPECT_EQ(std::string(rt_last_error()), mine);
}

// GCC 12's sanitizer runtimes do not take their allocators' locks around
// fork(): a child forked while another thread is inside malloc can hang in
// its first malloc (seen under ASan: __asan::Allocator::Allocate ->
// SizeClassAllocator64's mutex; under TSan: __tsan::MetaMap::AllocBlock ->
// DenseSlabAlloc::Refill's spin mutex). That is the sanitizers' limit, not
// the library's: under them the child makes only non-allocating calls, which
// still take every lock of ours. The plain build runs the full check.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kAllocatorForkUnsafe = true;
#else
constexpr bool kAllocatorForkUnsafe = false;
#endif

// A child forked while other threads hammer the tracker can use it at once.
TEST_F(CApiTest, ForkWhileThreadsHammer) {
  rt_tracker* g = rt_global_get("tier1");
  rt_tracker* p = rt_open(R"({"limits": {"a/b": {"rpm": 1000000}}})");
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      std::string model = "fork/m" + std::to_string(i);
      while (!stop.load()) {
        rt_try_acquire(p, "a/b", 1, nullptr);
        rt_record(g, model.c_str(), 1);  // creates models under the lock too
        static thread_local unsigned n = 0;
        rt_record(g, ("fork/new" + std::to_string(n++ % 500)).c_str(), 1);
        rt_free(rt_stats_json(nullptr));
        rt_global_get(i == 0 ? "tier1" : nullptr);
      }
    });
  }
  for (int round = 0; round < 40; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(120);  // a deadlock kills the child, and the test fails (generous: a
                   // busy machine under a sanitizer is slow, not deadlocked)
      if (kAllocatorForkUnsafe) {
        // Only calls that do not allocate: they take every lock of ours.
        _exit(rt_global_get(nullptr) == g && rt_record(g, kMini, 1) == RT_OK &&
                      rt_try_acquire(p, "a/b", 1, nullptr) == RT_OK &&
                      rt_can_make(g, "fork/m0", 1) == 1
                  ? 0
                  : 1);
      }
      rt_tracker* cg = rt_global_get(nullptr);
      int ok = cg == g && rt_record(cg, kMini, 1) == RT_OK &&
               rt_try_acquire(p, "a/b", 1, nullptr) == RT_OK;
      char* s = rt_stats_json(nullptr);
      ok = ok && s != nullptr;
      rt_free(s);
      rt_tracker* fresh = rt_open(nullptr);
      ok = ok && fresh != nullptr && rt_record(fresh, "x/y", 1) == RT_OK;
      rt_close(fresh);
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
    ASSERT_EQ(WEXITSTATUS(status), 0);
  }
  stop.store(true);
  for (auto& th : threads) th.join();
  rt_close(p);
}

}  // namespace
