// Crash safety of the shared-memory backend: worker processes are SIGKILLed
// at random moments, again and again, while others keep acquiring. After it:
// nobody is blocked, the state is consistent, and a fresh process admits
// exactly what the window still allows.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"

namespace {

constexpr uint64_t kLimit = 1000000000000ULL;  // tokens per hour: never reached

std::string Config(const std::string& name) {
  return R"({"backend": "shm:)" + name + R"(", "builtin_tiers": false, "limits": {
      "k/tokens": {"windows": [{"unit": "tokens", "limit": 1000000000000, "seconds": 3600}]},
      "k/all": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000, "tpd": 1000000000000},
      "k/tight": {"windows": [{"unit": "requests", "limit": 50, "seconds": 3600}]}}})";
}

[[noreturn]] void Worker(const std::string& cfg, unsigned seed) {
  rt_tracker* t = rt_open(cfg.c_str());
  if (t == nullptr) _exit(2);
  std::mt19937 rng(seed);
  for (;;) {
    uint64_t grant = 0;
    const uint64_t tokens = 1 + rng() % 1000;
    rt_try_acquire(t, "k/tokens", tokens, nullptr);
    if (rt_try_acquire_grant(t, "k/all", tokens, nullptr, &grant) == RT_OK) {
      rt_settle(t, "k/all", grant, tokens, rng() % 2000);
    }
    rt_try_acquire(t, "k/tight", 1, nullptr);
    if (rng() % 64 == 0) rt_free(rt_stats_json(t));
  }
}

uint64_t Current(rt_tracker* t, const char* model, const char* window) {
  char* s = rt_stats_json(t);
  auto j = nlohmann::json::parse(s);
  rt_free(s);
  return j["models"][model][window]["current"].get<uint64_t>();
}

TEST(ShmKillTest, RandomSigkillsLeaveNoLockAndNoLeak) {
  const std::string name = "gtest-kill-" + std::to_string(getpid());
  rt_shm_remove(name.c_str());
  struct Cleanup {  // also when an assertion returns early
    std::string name;
    std::vector<pid_t>* workers;
    ~Cleanup() {
      for (pid_t p : *workers) {
        kill(p, SIGKILL);
        waitpid(p, nullptr, 0);
      }
      rt_shm_remove(name.c_str());
    }
  };
  const std::string cfg = Config(name);
  rt_tracker* mine = rt_open(cfg.c_str());
  ASSERT_NE(mine, nullptr) << rt_last_error();

  std::mt19937 rng(42);
  std::vector<pid_t> workers;
  Cleanup cleanup{name, &workers};
  for (int i = 0; i < 3; ++i) {
    pid_t p = fork();
    if (p == 0) Worker(cfg, 100 + i);
    workers.push_back(p);
  }
  // A count of kills, not a time box: on a busy machine the test takes
  // longer, and kills as many workers in the middle of their calls.
  constexpr int kKills = 60;
  int kills = 0;
  while (kills < kKills) {
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    const size_t victim = rng() % workers.size();
    kill(workers[victim], SIGKILL);
    int status = 0;
    waitpid(workers[victim], &status, 0);
    ++kills;
    pid_t p = fork();
    if (p == 0) Worker(cfg, 1000 + kills);
    workers[victim] = p;
    // Others keep acquiring; a lock left held would hang here (alarm).
    alarm(20);
    ASSERT_GE(rt_try_acquire(mine, "k/tokens", 1, nullptr), 0);
    alarm(0);
  }
  for (pid_t p : workers) {
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
  }
  workers.clear();
  EXPECT_EQ(kills, kKills);

  // A fresh process: exactly what the window still allows, not one more.
  alarm(20);
  pid_t fresh = fork();
  if (fresh == 0) {
    rt_tracker* t = rt_open(cfg.c_str());
    if (t == nullptr) _exit(10);
    const uint64_t used = Current(t, "k/tokens", "tokens_per_3600s");
    if (used == 0 || used >= kLimit) _exit(11);
    if (rt_try_acquire(t, "k/tokens", kLimit - used + 1, nullptr) != RT_LIMITED) _exit(12);
    if (rt_try_acquire(t, "k/tokens", kLimit - used, nullptr) != RT_OK) _exit(13);
    if (rt_try_acquire(t, "k/tokens", 1, nullptr) != RT_LIMITED) _exit(14);
    // The tight window: never over its 50, however the kills fell.
    const uint64_t tight = Current(t, "k/tight", "requests_per_3600s");
    if (tight != 50) _exit(15);
    // Every window of every model is usable and consistent.
    for (const char* w : {"requests_per_minute", "tokens_per_minute", "requests_per_day",
                          "tokens_per_day"}) {
      if (Current(t, "k/all", w) > 1000000000000ULL) _exit(16);
    }
    if (rt_try_acquire(t, "k/all", 1, nullptr) != RT_OK) _exit(17);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(fresh, &status, 0), fresh);
  alarm(0);
  ASSERT_TRUE(WIFEXITED(status)) << "fresh process killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "check number " << WEXITSTATUS(status) - 10;
  rt_close(mine);
}

}  // namespace
