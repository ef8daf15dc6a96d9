// The Redis backend against real redis-server processes, started here on
// free loopback ports (never a mock): racing processes, atomic windows,
// Redis killed and restarted, SCRIPT FLUSH and FLUSHALL, passwords,
// unreachable and frozen servers, TTLs and hash tags, fork.
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "config.h"
#include "ratetrack.h"
#include "redis/store.h"
#include "redis_servers.h"
#include "window_set.h"

namespace {

using namespace ratetrack_test;  // NOLINT: the harness (redis_servers.h)

TEST(RedisTest, ProcessesRacingAdmitExactlyTheLimit) {
  RedisServer redis;
  // A generous timeout: a call that timed out would be decided locally
  // (on_error=local), over the limit, on a busy machine.
  const std::string cfg = Config(redis.Url("?prefix=race&timeout_ms=5000"),
      R"({"a/b": {"windows": [{"unit": "requests", "limit": 500, "seconds": 3600}]}})");
  // Four "hosts", each with its own tracker.
  EXPECT_EQ(RaceProcesses(cfg, 4, 400), 500);
}

// Script calls the server has run since the last CONFIG RESETSTAT.
int EvalshaCalls(RedisServer& redis) {
  const std::string info = redis.Command({"INFO", "commandstats"});
  const size_t at = info.find("cmdstat_evalsha:calls=");
  return at == std::string::npos ? 0 : std::atoi(info.c_str() + at + 22);
}

TEST(RedisTest, ThreadsRacingAdmitExactlyTheLimit) {
  RedisServer redis;
  // Two connections for sixteen threads: most calls queue and are merged.
  // on_error=closed: a failed call shows as such, not as a local decision.
  rt_tracker* t = rt_open(Config(redis.Url("?prefix=threads&connections=2&timeout_ms=2000&on_error=closed"),
      R"({"a/b": {"windows": [{"unit": "requests", "limit": 500, "seconds": 3600},
                              {"unit": "tokens", "limit": 100000, "seconds": 3600}]}})").c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  std::atomic<int> admitted{0}, limited{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 60; ++j) {
        const int rc = i % 4 == 3 ? rt_can_make(t, "a/b", 7) : rt_try_acquire(t, "a/b", 7, nullptr);
        if (i % 4 == 3) {
          other += rc != RT_OK && rc != RT_LIMITED;
        } else {
          (rc == RT_OK ? admitted : rc == RT_LIMITED ? limited : other)++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(other.load(), 0) << rt_last_error();
  EXPECT_EQ(admitted.load(), 500);
  EXPECT_EQ(limited.load(), 12 * 60 - 500);
  json s = Stats(t)["models"]["a/b"];
  EXPECT_EQ(s["requests_per_3600s"]["current"], 500) << s.dump();
  EXPECT_EQ(s["tokens_per_3600s"]["current"], 3500) << s.dump();
  rt_close(t);
}

TEST(RedisTest, QueuedDecisionsOnOneModelAreMergedIntoOneScriptCall) {
  RedisServer redis;
  // One connection: while it waits on a stopped server, calls queue.
  rt_tracker* t = rt_open(Config(redis.Url("?prefix=merge&connections=1&timeout_ms=5000"),
                                 R"({"a/b": {"rpm": 5, "tpm": 1000}, "c/d": {"rpm": 6}})").c_str());
  ASSERT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK) << rt_last_error();  // connects
  // c/d's state exists too (a check books nothing): a call on a model Redis
  // holds nothing for is sent again in the full form, one more call.
  ASSERT_EQ(rt_can_make(t, "c/d", 1), 1) << rt_last_error();
  ASSERT_EQ(redis.Command({"CONFIG", "RESETSTAT"}), "OK");
  redis.Stop();
  std::thread first([&] { EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // its call is on the wire
  // Queued meanwhile, in any order: six acquires (one larger than the
  // token limit) and a check on a/b, two records and an acquire on c/d. The
  // next batch is one write: the six acquires in one script call, the
  // records in another, the check and the acquire on c/d alone.
  std::atomic<int> started{0}, ok{0}, limited{0}, too_large{0}, other{0};
  std::vector<std::thread> queued;
  for (int i = 0; i < 6; ++i) {
    queued.emplace_back([&, i] {
      started++;
      const int rc = rt_try_acquire(t, "a/b", i == 2 ? 5000 : 10, nullptr);
      (rc == RT_OK ? ok : rc == RT_LIMITED ? limited : rc == RT_E_TOO_LARGE ? too_large : other)++;
    });
  }
  queued.emplace_back([&] {
    started++;
    const int rc = rt_can_make(t, "a/b", 1);  // before or after the acquires
    EXPECT_TRUE(rc == RT_OK || rc == RT_LIMITED) << rt_status_string(rc);
  });
  for (int i = 0; i < 2; ++i) {
    queued.emplace_back([&] {
      started++;
      EXPECT_EQ(rt_record(t, "c/d", 100), RT_OK) << rt_last_error();
    });
  }
  queued.emplace_back([&] {
    started++;
    EXPECT_EQ(rt_try_acquire(t, "c/d", 1, nullptr), RT_OK);
  });
  while (started.load() < 10) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // all queued
  redis.Continue();
  first.join();
  for (auto& th : queued) th.join();
  // a/b allows 5 requests a minute: 2 taken before, so 3 of the 5 fit, each
  // decided in turn within the one call; the one larger than the limit is
  // told so and stops none of the others.
  EXPECT_EQ(ok.load(), 3);
  EXPECT_EQ(limited.load(), 2);
  EXPECT_EQ(too_large.load(), 1);
  EXPECT_EQ(other.load(), 0);
  // The first call, then the batch's four: eleven decisions in five calls.
  EXPECT_EQ(EvalshaCalls(redis), 5);
  json s = Stats(t)["models"];
  EXPECT_EQ(s["a/b"]["requests_per_minute"]["current"], 5) << s.dump();
  EXPECT_EQ(s["a/b"]["tokens_per_minute"]["current"], 1 + 1 + 30) << s.dump();
  EXPECT_EQ(s["c/d"]["requests_per_minute"]["current"], 3) << s.dump();
  rt_close(t);
}

// `count` packed doubles from `bytes` (zeros when it is shorter).
std::vector<double> Doubles(const std::string& bytes, size_t count) {
  std::vector<double> out(count);
  if (bytes.size() >= 8 * count) std::memcpy(out.data(), bytes.data(), 8 * count);
  return out;
}

// A model's stored state ("s" and "c") as what it means, whichever path
// wrote it: the hot path books into "s" (what was booked since the base,
// per unit), the full path writes every window's count into "c" as a new
// base. Per unit its least room now; per window its numbers, its count now.
std::string StoredState(const std::string& s, const std::string& c) {
  if (s.size() != 80 || c.size() < 16) return "raw: " + s + "|" + c;
  const size_t n = static_cast<size_t>(Doubles(c, 2)[1]);
  if (c.size() < 16 + 64 * n) return "raw: " + s + "|" + c;
  const std::vector<double> hot = Doubles(s, 10), cold = Doubles(c, 2 + 8 * n);
  const double since[4] = {hot[7], hot[8] + hot[9], hot[8], hot[9]};
  std::vector<double> v = {hot[0], hot[1], hot[2]};
  for (int u = 0; u < 4; ++u) v.push_back(hot[3 + u] - since[u]);
  v.push_back(cold[0]);
  for (size_t i = 0; i < n; ++i) {
    const double* w = &cold[2 + 8 * i];
    v.insert(v.end(), w, w + 7);
    v.push_back(w[7] + since[static_cast<int>(w[6]) & 3]);
  }
  std::string out;
  for (double x : v) {
    char num[32];
    std::snprintf(num, sizeof num, "%.17g ", x);
    out += num;
  }
  return out + c.substr(16 + 64 * n);
}

// The script's hot path (decisions with room, between bucket turns, one or
// several merged into a call) decides exactly as its full path: the same
// random acquires, checks and records, alone or merged, through two stores
// on one Redis, one sent down the full path, on windows whose buckets (33
// and 50 ms) turn over during the test, with costs that fit, that do not,
// and that exceed a limit outright. Every answer and the state stored after
// it agree.
TEST(RedisTest, HotPathDecidesExactlyAsTheFullPath) {
  RedisServer redis;
  auto url = ratetrack::ParseRedisUrl(redis.Url("?prefix=hot&timeout_ms=2000"));
  ASSERT_TRUE(url.ok()) << url.status();
  ratetrack::RedisStore hot(*url);
  url->prefix = "full";
  url->full_path_only = true;
  ratetrack::RedisStore full(*url);
  using Op = ratetrack::RedisStore::Op;
  std::mt19937 rng(20261203);
  ratetrack::RemoteSpec spec;
  std::string model;
  // Which bucket (or day) of each window a decision at now_ms falls in.
  auto buckets = [&](int64_t now_ms) {
    std::vector<int64_t> b;
    for (int i = 0; i < spec.n; ++i) {
      b.push_back(spec.w[i].calendar_tz[0] != '\0' ? now_ms / 86400000 : now_ms / spec.w[i].width_ms);
    }
    return b;
  };
  // The moments in what the provider said ("p": active_until, blocked_until,
  // then per unit until, remaining, used, limit) at which a decision changes.
  auto provider_times = [&](const std::string& p) {
    std::vector<int64_t> times;
    std::vector<std::string> f = absl::StrSplit(p, ',');
    for (size_t j = 0; j < f.size(); ++j) {
      int64_t v = 0;
      if ((j < 2 || (j - 2) % 4 == 0) && absl::SimpleAtoi(f[j], &v)) times.push_back(v);
    }
    return times;
  };
  int compared = 0, ok = 0, limited = 0, too_large = 0, merged_ok = 0;
  int said_live = 0, said_passed = 0;
  for (int step = 0; step < 3000; ++step) {
    // Every 100 steps a new model with new limits, each window's either
    // within reach of 100 steps or out of it: room first, then windows
    // filled to their limits one by one, however fast the steps run.
    if (step % 100 == 0) {
      auto limit = [&](uint32_t low, uint32_t span) {
        return std::to_string(rng() % 3 == 0 ? 1000000000 : low + rng() % span);
      };
      model = "x/m" + std::to_string(step / 100);
      const std::string requests = limit(50, 150), input = limit(2000, 8000),
                        tokens = limit(5000, 20000), output = limit(1500, 6000);
      const std::string json = absl::StrCat(
          R"({"builtin_tiers": false, "limits": {")", model, R"(": {"windows": [
            {"unit": "requests", "limit": )", requests, R"(, "seconds": 2},
            {"unit": "requests", "limit": )", limit(100, 300), R"(, "seconds": 60},
            {"unit": "input_tokens", "limit": )", input, R"(, "seconds": 3},
            {"unit": "tokens", "limit": )", tokens, R"(, "seconds": 2},
            {"unit": "output_tokens", "limit": )", output, R"(, "calendar_day": "UTC"}]}}})");
      auto config = ratetrack::ParseConfig(json.c_str());
      ASSERT_TRUE(config.ok()) << config.status();
      auto effective = ratetrack::EffectiveConfig::From(*config);
      ASSERT_TRUE(effective.ok()) << effective.status();
      ratetrack::WindowSet windows;
      windows.SetLimits(effective->Resolve(model), 1);
      spec = ratetrack::RemoteSpec::From(windows);
      ASSERT_EQ(spec.n, 8);
    }
    // Now and then the provider says something: a block (a 429) or a cap
    // from its headers, live for 0-20 ms, so that decisions fall both while
    // it holds (the full path) and after it passed (the hot path again).
    // Said to the hot store; the full one goes on from its state.
    if (rng() % 25 == 0) {
      const int64_t ms = std::vector<int64_t>{0, 1, 3, 8, 20}[rng() % 5];
      absl::StatusOr<ratetrack::RedisStore::Reply> told;
      if (rng() % 3 == 0) {
        told = hot.Run(Op::kBlock, model, spec, ratetrack::Cost{0, 0}, ms);
      } else {
        const auto unit = static_cast<ratetrack::Unit>(rng() % 4);
        const uint64_t remaining = unit == ratetrack::Unit::kRequests ? rng() % 8 : rng() % 1500;
        // Sometimes a limit under ours: in force on the per-minute window.
        const uint64_t said = rng() % 2 == 0 ? 100000
                              : unit == ratetrack::Unit::kRequests ? 1 + rng() % 12
                                                                   : 1 + rng() % 2000;
        told = hot.Run(Op::kObserve, model, spec, ratetrack::Cost{0, 0}, ms, ratetrack::Cost{0, 0},
                       ratetrack::RedisStore::Observation{unit, remaining, said});
      }
      ASSERT_TRUE(told.ok()) << told.status();
      ASSERT_EQ(redis.Command({"RESTORE", "{full:" + model + "}", "0",
                               redis.Command({"DUMP", "{hot:" + model + "}"}), "REPLACE"}),
                "OK");
    }
    const std::string said = redis.Command({"HGET", "{hot:" + model + "}", "p"});
    // Few records: they book beyond the limits, and a window filled just to
    // its limit is where the two paths could part. One step in four is a
    // merged call of 2-5 decisions (as a leader sends queued ones).
    const uint32_t pick = rng() % 20;
    const Op op = pick == 0 ? Op::kRecord : pick < 5 ? Op::kCheck : Op::kAcquire;
    const size_t decisions = rng() % 4 == 0 ? 2 + rng() % 4 : 1;
    std::vector<ratetrack::Cost> costs;
    for (size_t k = 0; k < decisions; ++k) {
      // Some too large, some tiny: a tiny one fits in what a full window
      // has left, where a larger one after it does not.
      const uint32_t size = rng() % 16;
      const uint64_t in = size == 0 ? 20001 + rng() % 10 : size < 5 ? rng() % 5 : rng() % 150;
      const uint64_t out = size < 5 ? rng() % 5 : rng() % 300;
      costs.push_back(ratetrack::Cost{in, out});
    }
    std::vector<absl::StatusOr<ratetrack::RedisStore::Reply>> a, b;
    if (decisions == 1) {
      a.push_back(hot.Run(op, model, spec, costs[0]));
      b.push_back(full.Run(op, model, spec, costs[0]));
    } else {
      a = hot.RunMergedForTest(op, model, spec, costs);
      b = full.RunMergedForTest(op, model, spec, costs);
    }
    ASSERT_EQ(a.size(), decisions);
    ASSERT_EQ(b.size(), decisions);
    for (size_t k = 0; k < decisions; ++k) {
      ASSERT_TRUE(a[k].ok() && b[k].ok()) << a[k].status() << " " << b[k].status();
    }
    bool apart = buckets(a[0]->now_ms) != buckets(b[0]->now_ms);
    bool live = false;
    for (int64_t at : provider_times(said)) {
      apart = apart || (at > a[0]->now_ms) != (at > b[0]->now_ms);
      live = live || at > a[0]->now_ms;
    }
    if (apart) {
      // A bucket turned, or a block or cap ended, between the two calls:
      // nothing to compare; the full store goes on from the hot one's state.
      ASSERT_EQ(redis.Command({"RESTORE", "{full:" + model + "}", "0",
                               redis.Command({"DUMP", "{hot:" + model + "}"}), "REPLACE"}),
                "OK");
      continue;
    }
    ++compared;
    said_live += !said.empty() && live;
    said_passed += !said.empty() && !live;
    bool all_ok = true;
    for (size_t k = 0; k < decisions; ++k) {
      ASSERT_EQ(a[k]->code, b[k]->code) << "step " << step << " decision " << k;
      if (a[k]->code == RT_LIMITED) {
        // The same moment to wait for, seen from each call's own now.
        EXPECT_LE(std::llabs(static_cast<long long>(a[k]->wait_ms + a[k]->now_ms) -
                             static_cast<long long>(b[k]->wait_ms + b[k]->now_ms)), 1)
            << "step " << step << " decision " << k;
      }
      ok += a[k]->code == RT_OK && op == Op::kAcquire;
      limited += a[k]->code == RT_LIMITED;
      too_large += a[k]->code == RT_E_TOO_LARGE;
      all_ok = all_ok && a[k]->code == RT_OK;
    }
    merged_ok += decisions > 1 && all_ok && op != Op::kRecord;
    const auto state = [&](const std::string& key) {
      return StoredState(redis.Command({"HGET", key, "s"}), redis.Command({"HGET", key, "c"}));
    };
    ASSERT_EQ(state("{hot:" + model + "}"), state("{full:" + model + "}")) << "step " << step;
    ASSERT_EQ(redis.Command({"HGET", "{hot:" + model + "}", "p"}),
              redis.Command({"HGET", "{full:" + model + "}", "p"}))
        << "step " << step;
  }
  // Not vacuous: most steps compared, with every kind of answer, merged
  // calls that fit (the merged hot path), and decisions both while what the
  // provider said held and after it passed. Typical: 2,980 compared, 1,400
  // admitted, 2,500 limited, 270 too large, 230 merged calls that fit.
  std::printf("compared %d, admitted %d, limited %d, too large %d, merged ok %d, "
              "provider live %d, passed %d\n",
              compared, ok, limited, too_large, merged_ok, said_live, said_passed);
  EXPECT_GT(said_live, 30);
  EXPECT_GT(said_passed, 300);
  EXPECT_GT(compared, 2500);
  EXPECT_GT(ok, 500);
  EXPECT_GT(limited, 300);
  EXPECT_GT(too_large, 100);
  EXPECT_GT(merged_ok, 50);
}

// The packed little-endian doubles of a field the script writes.
std::string Packed(const std::vector<double>& v, const std::string& tail = "") {
  std::string out(8 * v.size(), '\0');
  std::memcpy(out.data(), v.data(), out.size());
  return out + tail;
}

// Calls of acquire, check and record carry only the limits' digest; the
// script works from the state it stored for them, and asks for the full
// form (one more script call) when it cannot: a calendar day begins (the
// client's midnight says where it ends), or the stored state is not for
// these limits (a host with others recorded on the model).
TEST(RedisTest, TheShortFormFallsBackToTheFullOneWhenItMust) {
  RedisServer redis;
  const std::string limits = R"({"a/b": {"windows": [
      {"unit": "requests", "limit": 100, "seconds": 60},
      {"unit": "tokens", "limit": 1000, "calendar_day": "UTC"}]}})";
  rt_tracker* t = rt_open(Config(redis.Url("?prefix=day"), limits).c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  // A key in a layout the script does not read (an earlier one): started
  // afresh, its bucket fields gone with it.
  ASSERT_EQ(redis.Command({"HSET", "{day:a/b}", "s", "old limits\nr60\n12345678", "r60:1", "50"}),
            "2");
  ASSERT_EQ(rt_try_acquire(t, "a/b", 600, nullptr), RT_OK) << rt_last_error();
  EXPECT_EQ(redis.Command({"HEXISTS", "{day:a/b}", "r60:1"}), "0");
  ASSERT_EQ(redis.Command({"CONFIG", "RESETSTAT"}), "OK");
  ASSERT_EQ(rt_try_acquire(t, "a/b", 100, nullptr), RT_OK);
  EXPECT_EQ(EvalshaCalls(redis), 1);  // the short form, decided on it
  // The day ends (as if midnight had passed): its end, in "c" (ttl, n,
  // then per window width, ring, calendar, newest bucket or day end, older
  // sum, limit, unit, base count), and hot_until in "s" (digest, hot_from,
  // hot_until, ...) move into the past.
  const std::string key = "{day:a/b}";
  const std::string c = redis.Command({"HGET", key, "c"});
  const std::string st = redis.Command({"HGET", key, "s"});
  ASSERT_EQ(st.size(), 80u);
  const size_t n = static_cast<size_t>(Doubles(c, 2)[1]);
  ASSERT_EQ(n, 5u);  // the built-in four, then the day
  std::vector<double> cold = Doubles(c, 2 + 8 * n), hot = Doubles(st, 10);
  const size_t day = 2 + 8 * 4;  // the fifth window's numbers in "c"
  ASSERT_EQ(cold[day + 2], 1);  // a calendar day
  const double day_end = cold[day + 3];
  EXPECT_GT(day_end, 0);
  cold[day + 3] = day_end - 86400000.0;  // the midnight before
  hot[2] = cold[day + 3];
  ASSERT_EQ(redis.Command({"HSET", key, "c", Packed(cold, c.substr(8 * cold.size())), "s",
                           Packed(hot)}),
            "0");
  ASSERT_EQ(redis.Command({"CONFIG", "RESETSTAT"}), "OK");
  // The new day holds only this call; its end is the client's next
  // midnight again.
  ASSERT_EQ(rt_try_acquire(t, "a/b", 900, nullptr), RT_OK) << rt_last_error();
  EXPECT_EQ(EvalshaCalls(redis), 2);  // asked for the full form, then decided
  EXPECT_EQ(Doubles(redis.Command({"HGET", key, "c"}), 2 + 8 * n)[day + 3], day_end);
  json s = Stats(t)["models"]["a/b"];
  EXPECT_EQ(s["tokens_per_calendar_day"]["current"], 900) << s.dump();
  EXPECT_EQ(s["requests_per_minute"]["current"], 3) << s.dump();
  ASSERT_EQ(redis.Command({"CONFIG", "RESETSTAT"}), "OK");
  EXPECT_EQ(rt_try_acquire(t, "a/b", 101, nullptr), RT_LIMITED);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 100, nullptr), RT_OK);
  EXPECT_EQ(EvalshaCalls(redis), 2);  // the short form again
  // A host with other limits records (records always book): the state
  // stays this host's limits but carries no digest, so this host's next
  // call is sent again in full, and puts its digest back.
  rt_tracker* other = rt_open(Config(redis.Url("?prefix=day"),
                                     R"({"a/b": {"windows": [
      {"unit": "requests", "limit": 7, "seconds": 60},
      {"unit": "tokens", "limit": 1000, "calendar_day": "UTC"}]}})").c_str());
  ASSERT_NE(other, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(other, "a/b", 1, nullptr), RT_E_CONFIG);
  ASSERT_EQ(rt_record(other, "a/b", 0), RT_OK) << rt_last_error();
  EXPECT_EQ(Doubles(redis.Command({"HGET", key, "s"}), 1)[0], 0);
  ASSERT_EQ(redis.Command({"CONFIG", "RESETSTAT"}), "OK");
  EXPECT_EQ(rt_try_acquire(t, "a/b", 0, nullptr), RT_OK);
  EXPECT_EQ(EvalshaCalls(redis), 2);
  EXPECT_NE(Doubles(redis.Command({"HGET", key, "s"}), 1)[0], 0);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 0, nullptr), RT_OK);
  EXPECT_EQ(EvalshaCalls(redis), 3);
  s = Stats(t)["models"]["a/b"];
  EXPECT_EQ(s["requests_per_minute"]["current"], 7) << s.dump();
  EXPECT_EQ(s["tokens_per_calendar_day"]["current"], 1000) << s.dump();
  rt_close(other);
  rt_close(t);
}

// A model's windows as the store is given them.
ratetrack::RemoteSpec SpecFor(const std::string& model, const std::string& limits) {
  auto config = ratetrack::ParseConfig(
      (R"({"builtin_tiers": false, "limits": {")" + model + R"(": )" + limits + "}}").c_str());
  EXPECT_TRUE(config.ok()) << config.status();
  auto effective = ratetrack::EffectiveConfig::From(*config);
  EXPECT_TRUE(effective.ok()) << effective.status();
  ratetrack::WindowSet windows;
  windows.SetLimits(effective->Resolve(model), 1);
  return ratetrack::RemoteSpec::From(windows);
}

// A store whose script's clock the test moves: TIME plus the milliseconds
// at "{prefix:}clock" (RedisUrl::test_clock), as a server whose clock is
// stepped.
struct SteppedClock {
  RedisServer& redis;
  std::string prefix;
  std::unique_ptr<ratetrack::RedisStore> store;
  SteppedClock(RedisServer& r, const std::string& p) : redis(r), prefix(p) {
    auto url = ratetrack::ParseRedisUrl(redis.Url("?prefix=" + prefix + "&timeout_ms=5000"));
    EXPECT_TRUE(url.ok()) << url.status();
    url->test_clock = true;
    store = std::make_unique<ratetrack::RedisStore>(*url);
  }
  void Step(int64_t offset_ms) {
    ASSERT_EQ(redis.Command({"SET", "{" + prefix + ":}clock", std::to_string(offset_ms)}), "OK");
  }
  // `n` acquires of one request: how many were admitted; the longest wait
  // of those refused into *longest.
  int Acquire(const std::string& model, const ratetrack::RemoteSpec& spec, int n,
              uint64_t* longest) {
    int admitted = 0;
    for (int i = 0; i < n; ++i) {
      auto r = store->Run(ratetrack::RedisStore::Op::kAcquire, model, spec, ratetrack::Cost{0, 0});
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) continue;
      EXPECT_TRUE(r->code == RT_OK || r->code == RT_LIMITED) << r->code;
      admitted += r->code == RT_OK;
      if (r->code == RT_LIMITED) *longest = std::max(*longest, r->wait_ms);
    }
    return admitted;
  }
};

// The model's (one) limited window's length and resolution, ms.
int64_t WindowMs(const ratetrack::RemoteSpec& spec) { return spec.longest_ms; }

// The issue: a server's clock stepped forward an hour, then two days,
// admitted 15 requests in a few real seconds against 5 a minute; stepped
// back, a one-minute window answered a retry_after of 48 hours. Now: in
// total no more than the limit plus one window's worth (more only as real
// time allows), and never a wait longer than the window (and a bucket).
TEST(RedisTest, ServerClockStepsNeitherAdmitMoreNorWaitLonger) {
  RedisServer redis;
  SteppedClock clock(redis, "clk");
  const ratetrack::RemoteSpec spec =
      SpecFor("a/b", R"({"windows": [{"unit": "requests", "limit": 5, "seconds": 60}]})");
  const int64_t window = WindowMs(spec);  // 61 s: the window and its resolution
  const auto start = Clock::now();
  uint64_t longest = 0;
  int admitted = clock.Acquire("a/b", spec, 8, &longest);
  EXPECT_EQ(admitted, 5);
  clock.Step(3600 * 1000);  // an hour ahead
  admitted += clock.Acquire("a/b", spec, 8, &longest);
  clock.Step(49 * 3600 * 1000LL);  // two more days ahead
  admitted += clock.Acquire("a/b", spec, 8, &longest);
  // Real time lets another window's worth in per window that passed (a
  // slow machine), no more.
  const int64_t real_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_LE(admitted, 5 + 5 + 5 * static_cast<int>(real_ms / window))
      << "admitted " << admitted << " in " << real_ms << " ms";
  EXPECT_LE(longest, static_cast<uint64_t>(window));
  // Back to the real time, 49 hours back: refused, for at most a window.
  clock.Step(0);
  longest = 0;
  const int back = clock.Acquire("a/b", spec, 3, &longest);
  EXPECT_LE(back, 5 * static_cast<int>(
                      1 + std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start)
                              .count() / window));
  EXPECT_GT(longest, 0u);
  EXPECT_LE(longest, static_cast<uint64_t>(window));
  // A model first used now is not held back by the steps: its limit, then
  // waits within its window.
  const ratetrack::RemoteSpec other =
      SpecFor("c/d", R"({"windows": [{"unit": "requests", "limit": 4, "seconds": 60}]})");
  longest = 0;
  EXPECT_EQ(clock.Acquire("c/d", other, 6, &longest), 4);
  EXPECT_GT(longest, 0u);
  EXPECT_LE(longest, static_cast<uint64_t>(window));
}

// A step back on a full window: every wait within the window, and the
// window frees as real time passes (it does not wait for the server's
// clock to catch up), the short path taken again although the key's time
// and the server's now differ by two days. A short window, so that the
// test can wait for it.
TEST(RedisTest, AfterServerClockStepsNormalOperationResumes) {
  RedisServer redis;
  SteppedClock clock(redis, "resume");
  const ratetrack::RemoteSpec spec =
      SpecFor("a/b", R"({"windows": [{"unit": "requests", "limit": 3, "seconds": 2}]})");
  const int64_t window = WindowMs(spec);
  uint64_t longest = 0;
  EXPECT_EQ(clock.Acquire("a/b", spec, 5, &longest), 3);
  // Two days back, then an hour ahead of the real time, then two days back
  // again (where it stays): refused each time, for at most a window.
  for (int64_t offset : {-2 * 86400 * 1000LL, 3600 * 1000LL, -2 * 86400 * 1000LL}) {
    SCOPED_TRACE(offset);
    clock.Step(offset);
    longest = 0;
    EXPECT_EQ(clock.Acquire("a/b", spec, 3, &longest), 0);
    EXPECT_GT(longest, 0u);
    EXPECT_LE(longest, static_cast<uint64_t>(window));
  }
  // The client watches the server's clock for a window after the last step
  // it saw; a window later every request booked has left the window.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * window + 500));
  longest = 0;
  const auto start = Clock::now();
  const int admitted = clock.Acquire("a/b", spec, 5, &longest);
  const int64_t real_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_GE(admitted, 3);
  EXPECT_LE(admitted, 3 + 3 * static_cast<int>(real_ms / window));
  EXPECT_LE(longest, static_cast<uint64_t>(window));
  // The short path again, though the key's time is two days ahead of the
  // server's: its bounds in "s" are in the server's time. A call after a
  // bucket turned (the full path) writes them around its server time; a
  // call at a server time within them takes the short path (no HMGET).
  std::this_thread::sleep_for(std::chrono::milliseconds(window + 100));
  using Op = ratetrack::RedisStore::Op;
  auto first = clock.store->Run(Op::kAcquire, "a/b", spec, ratetrack::Cost{0, 0});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->code, RT_OK);
  const std::vector<double> hot = Doubles(redis.Command({"HGET", "{resume:a/b}", "s"}), 10);
  const std::vector<double> key = Doubles(redis.Command({"HGET", "{resume:a/b}", "k"}), 1);
  EXPECT_NEAR(key[0], 2 * 86400 * 1000.0, 2.0 * window);  // the key's time: two days ahead
  EXPECT_LE(hot[1], static_cast<double>(first->now_ms));
  EXPECT_GT(hot[2], static_cast<double>(first->now_ms));
  ASSERT_EQ(redis.Command({"CONFIG", "RESETSTAT"}), "OK");
  auto second = clock.store->Run(Op::kAcquire, "a/b", spec, ratetrack::Cost{0, 0});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->code, RT_OK);
  if (static_cast<double>(second->now_ms) + 1 < hot[2]) {
    const std::string info = redis.Command({"INFO", "commandstats"});
    EXPECT_EQ(info.find("cmdstat_hmget"), std::string::npos) << info;
  }
}

// Latency is not the point here: a generous timeout, so that a busy machine
// never sends a call to the on_error fallback (whose local windows know
// nothing of the settle below: the acquire of 900 was refused under load).
TEST(RedisTest, ARequestRefusedByOneWindowConsumesNothing) {
  RedisServer redis;
  rt_tracker* t = rt_open(
      Config(redis.Url("?timeout_ms=10000"), R"({"a/b": {"rpm": 1000, "tpm": 100}})").c_str());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 60, nullptr), RT_OK);
  uint64_t retry = 0;
  EXPECT_EQ(rt_try_acquire(t, "a/b", 60, &retry), RT_LIMITED);
  EXPECT_GT(retry, 50000u);
  EXPECT_LE(retry, 62000u);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 101, nullptr), RT_E_TOO_LARGE);
  json s = Stats(t);
  EXPECT_EQ(s["models"]["a/b"]["requests_per_minute"]["current"], 1);
  EXPECT_EQ(s["models"]["a/b"]["tokens_per_minute"]["current"], 60);
  EXPECT_EQ(s["backend_state"]["connected"], true);
  // Keys: one hash per model, with the model in the hash tag, and a TTL a
  // little longer than the longest window (a day).
  EXPECT_EQ(redis.Command({"EXISTS", "{ratetrack:a/b}"}), "1");
  long long ttl = std::stoll(redis.Command({"PTTL", "{ratetrack:a/b}"}));
  EXPECT_GT(ttl, 86400LL * 1000);
  EXPECT_LT(ttl, 86400LL * 1000 + 30LL * 60 * 1000 + 120000);
  // Settle in Redis, at the grant's time.
  rt_tracker* u =
      rt_open(Config(redis.Url("?prefix=s&timeout_ms=10000"), R"({"x/y": {"tpm": 1000}})").c_str());
  uint64_t grant = 0;
  ASSERT_EQ(rt_try_acquire_grant(u, "x/y", 1000, nullptr, &grant), RT_OK);
  EXPECT_EQ(rt_try_acquire(u, "x/y", 1, nullptr), RT_LIMITED);
  ASSERT_EQ(rt_settle(u, "x/y", grant, 1000, 100), RT_OK);
  EXPECT_EQ(rt_try_acquire(u, "x/y", 900, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(u, "x/y", 1, nullptr), RT_LIMITED);
  EXPECT_EQ(rt_settle(u, "x/y", grant, 999, 100), RT_E_INVALID);
  // rt_reset empties Redis for the tracker's models.
  ASSERT_EQ(rt_reset(u), RT_OK);
  EXPECT_EQ(rt_try_acquire(u, "x/y", 1000, nullptr), RT_OK);
  rt_close(t);
  rt_close(u);
}

TEST(RedisTest, DisagreeingHostsAreToldSo) {
  RedisServer redis;
  rt_tracker* a = rt_open(Config(redis.Url(), R"({"a/b": {"rpm": 5}})").c_str());
  rt_tracker* b = rt_open(Config(redis.Url(), R"({"a/b": {"rpm": 6}})").c_str());
  ASSERT_EQ(rt_try_acquire(a, "a/b", 1, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(b, "a/b", 1, nullptr), RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("requests_per_minute 5"), std::string::npos);
  EXPECT_EQ(rt_record(b, "a/b", 1), RT_OK) << "records still book";
  EXPECT_EQ(Stats(a)["models"]["a/b"]["requests_per_minute"]["current"], 2);
  rt_tracker* c = rt_open(Config(redis.Url("?limits=update"), R"({"a/b": {"rpm": 3}})").c_str());
  EXPECT_EQ(rt_try_acquire(c, "a/b", 1, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(c, "a/b", 1, nullptr), RT_LIMITED) << "3 now, for everyone";
  rt_close(a);
  rt_close(b);
  rt_close(c);
}

TEST(RedisTest, KilledAndRestartedRedis) {
  auto redis = std::make_unique<RedisServer>();
  const int port = redis->port();
  const std::string limits = R"({"a/b": {"windows": [{"unit": "requests", "limit": 3, "seconds": 3600}]}})";
  rt_tracker* local = rt_open(Config(redis->Url("?prefix=l&timeout_ms=50"), limits).c_str());
  rt_tracker* open = rt_open(Config(redis->Url("?prefix=o&timeout_ms=50&on_error=open"), limits).c_str());
  rt_tracker* closed = rt_open(Config(redis->Url("?prefix=c&timeout_ms=50&on_error=closed"), limits).c_str());
  ASSERT_EQ(rt_try_acquire(local, "a/b", 1, nullptr), RT_OK);
  ASSERT_EQ(rt_try_acquire(closed, "a/b", 1, nullptr), RT_OK);
  redis->Kill();
  // Every call returns within the timeout, and follows its policy.
  auto start = Clock::now();
  EXPECT_EQ(rt_try_acquire(closed, "a/b", 1, nullptr), RT_E_BACKEND);
  EXPECT_NE(std::string(rt_last_error()).find("127.0.0.1:" + std::to_string(port)),
            std::string::npos) << rt_last_error();
  int local_ok = 0;
  for (int i = 0; i < 5; ++i) local_ok += rt_try_acquire(local, "a/b", 1, nullptr) == RT_OK;
  EXPECT_EQ(local_ok, 3) << "local: the same limits, in this process";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rt_try_acquire(open, "a/b", 1, nullptr), RT_OK);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1000));
  json s = Stats(local);
  EXPECT_EQ(s["backend_state"]["connected"], false);
  EXPECT_TRUE(s["backend_state"]["degraded_since_unix_ms"].is_number());
  EXPECT_GT(s["backend_state"]["errors"].get<int>(), 0);
  EXPECT_NE(s["backend_state"]["last_error"].get<std::string>().find(
                "127.0.0.1:" + std::to_string(port)),
            std::string::npos);
  // Redis comes back, empty: the tracker returns to it by itself, the script
  // is loaded again, and the limits hold there.
  redis = std::make_unique<RedisServer>(std::vector<std::string>{}, port);
  ASSERT_TRUE(redis->Running()) << "could not restart Redis on port " << port;
  // (Stats asks Redis too, so polling it reconnects without spending.)
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline && Stats(closed)["backend_state"]["connected"] != true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(Stats(closed)["backend_state"]["connected"], true);
  EXPECT_TRUE(Stats(closed)["backend_state"]["degraded_since_unix_ms"].is_null());
  int admitted = 0;
  for (int i = 0; i < 6; ++i) admitted += rt_try_acquire(closed, "a/b", 1, nullptr) == RT_OK;
  EXPECT_EQ(admitted, 3) << "the new, empty Redis: the limit, from zero";
  rt_close(local);
  rt_close(open);
  rt_close(closed);
}

TEST(RedisTest, ScriptFlushAndFlushAllAreSurvived) {
  RedisServer redis;
  rt_tracker* t = rt_open(Config(redis.Url(), R"({"a/b": {"rpm": 10}})").c_str());
  for (int i = 0; i < 4; ++i) ASSERT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
  EXPECT_EQ(redis.Command({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK) << "NOSCRIPT: loaded again";
  EXPECT_EQ(Stats(t)["models"]["a/b"]["requests_per_minute"]["current"], 5);
  EXPECT_EQ(redis.Command({"FLUSHALL"}), "OK");
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK) << "state rebuilt from zero";
  EXPECT_EQ(Stats(t)["models"]["a/b"]["requests_per_minute"]["current"], 1);
  EXPECT_EQ(Stats(t)["backend_state"]["errors"], 0);
  rt_close(t);
}

TEST(RedisTest, PasswordsAndUnreachableServers) {
  RedisServer redis({"--requirepass", "s3cr3t-pw"});
  const std::string limits = R"({"a/b": {"rpm": 10}})";
  // A refused password is a misconfiguration, said by rt_open (more in
  // MisconfiguredServersAreErrorsWhateverOnErrorSays).
  rt_tracker* wrong = nullptr;
  EXPECT_EQ(rt_open_ex(Config(redis.Url("?on_error=closed", ":wrong-pw@"), limits).c_str(), &wrong),
            RT_E_CONFIG);
  std::string err = rt_last_error();
  EXPECT_NE(err.find("AUTH"), std::string::npos) << err;
  EXPECT_EQ(err.find("wrong-pw"), std::string::npos) << err;
  rt_tracker* none = nullptr;
  EXPECT_EQ(rt_open_ex(Config(redis.Url("?on_error=closed"), limits).c_str(), &none), RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("NOAUTH"), std::string::npos) << rt_last_error();
  rt_tracker* right = rt_open(Config(redis.Url("", ":s3cr3t-pw@"), limits).c_str());
  EXPECT_EQ(rt_try_acquire(right, "a/b", 1, nullptr), RT_OK);
  char* s = rt_stats_json(right);
  EXPECT_EQ(std::string(s).find("s3cr3t"), std::string::npos);
  rt_free(s);
  // An ACL user.
  EXPECT_EQ(redis.Command({"ACL", "SETUSER", "agent", "on", ">agent-pw", "~*", "+@all"},
                          "s3cr3t-pw"), "OK");
  rt_tracker* acl = rt_open(Config(redis.Url("", "agent:agent-pw@"), limits).c_str());
  EXPECT_EQ(rt_try_acquire(acl, "a/b", 1, nullptr), RT_OK) << rt_last_error();
  // Nobody listening.
  rt_tracker* far = rt_open(
      Config("redis://127.0.0.1:" + std::to_string(FreePort()) + "?on_error=closed", limits).c_str());
  EXPECT_EQ(rt_try_acquire(far, "a/b", 1, nullptr), RT_E_BACKEND);
  EXPECT_NE(std::string(rt_last_error()).find("cannot connect"), std::string::npos);
  for (rt_tracker* t : {wrong, none, right, acl, far}) rt_close(t);
}

// redis+unix:// and unix://: the same backend over a unix socket, with
// every option of the URL (db, password, prefix, timeout, on_error).
TEST(RedisTest, UnixSocket) {
  char dir[] = "/tmp/rt-unix-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string sock = std::string(dir) + "/redis.sock";
  RedisServer redis({"--unixsocket", sock, "--unixsocketperm", "700", "--requirepass", "unix-pw"});
  ASSERT_TRUE(redis.Running());
  const std::string limits =
      R"({"a/b": {"windows": [{"unit": "requests", "limit": 300, "seconds": 3600}]}})";
  // Processes racing over the socket admit exactly the limit.
  const std::string cfg = Config("redis+unix://" + sock +
                                     "?db=3&password=unix-pw&prefix=ux&timeout_ms=5000&on_error=closed",
                                 limits);
  EXPECT_EQ(RaceProcesses(cfg, 3, 200), 300);
  // In database 3, under the prefix.
  EXPECT_EQ(redis.Command({"EVAL", "redis.call('SELECT', 3) return redis.call('EXISTS', KEYS[1])",
                           "1", "{ux:a/b}"},
                          "unix-pw"),
            "1");
  // unix:// with the credentials before the path; stats show no password.
  // (5 s: the default 50 ms is for production; a loaded machine may take
  // longer, and a call that timed out is on_error's to decide.)
  rt_tracker* t = rt_open(
      Config("unix://:unix-pw@" + sock + "?db=3&prefix=ux&timeout_ms=5000", limits).c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_LIMITED);
  json s = Stats(t);
  EXPECT_EQ(s["backend"],
            "redis+unix://" + sock + "?db=3&prefix=ux&timeout_ms=5000&on_error=local");
  EXPECT_EQ(s.dump().find("unix-pw"), std::string::npos);
  rt_close(t);
  // A wrong password over the socket: refused at rt_open, and never shown.
  rt_tracker* wrong = nullptr;
  EXPECT_EQ(rt_open_ex(Config("redis+unix://" + sock + "?password=not-it&timeout_ms=5000&on_error=local", limits)
                           .c_str(),
                       &wrong),
            RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("unix:" + sock), std::string::npos)
      << rt_last_error();
  EXPECT_EQ(std::string(rt_last_error()).find("not-it"), std::string::npos) << rt_last_error();
  // No socket there: an outage, named by its path, and the policy applies.
  const std::string gone = std::string(dir) + "/none.sock";
  rt_tracker* closed = rt_open(Config("redis+unix://" + gone + "?on_error=closed", limits).c_str());
  rt_tracker* open = rt_open(Config("redis+unix://" + gone + "?on_error=open", limits).c_str());
  EXPECT_EQ(rt_try_acquire(closed, "a/b", 1, nullptr), RT_E_BACKEND);
  EXPECT_NE(std::string(rt_last_error()).find("unix:" + gone), std::string::npos)
      << rt_last_error();
  EXPECT_EQ(rt_try_acquire(open, "a/b", 1, nullptr), RT_OK);
  rt_close(closed);
  rt_close(open);
  redis.Kill();
  unlink(sock.c_str());
  rmdir(dir);
}

// A server the URL cannot use is a configuration error, never an outage:
// rt_open says so (RT_E_CONFIG, a message naming the server and what is
// wrong) under every on_error policy: a replica, a sentinel's port, a
// cluster node reached without cluster routing, a refused password, no
// password. A master that becomes a replica under a tracker: every call
// fails with RT_E_CONFIG (never a local decision) until it is a master again.
TEST(RedisTest, MisconfiguredServersAreErrorsWhateverOnErrorSays) {
  RedisServer master({"--requirepass", "m-pw", "--masterauth", "m-pw",
                      "--repl-diskless-sync-delay", "0"});
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(master.port()),
                       "--masterauth", "m-pw", "--requirepass", "m-pw"});
  char dir[] = "/tmp/rt-misconf-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string sentinel_conf = std::string(dir) + "/sentinel.conf";
  {
    FILE* f = std::fopen(sentinel_conf.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "sentinel monitor mymaster 127.0.0.1 %d 1\nsentinel auth-pass mymaster m-pw\n",
                 master.port());
    std::fclose(f);
  }
  RedisServer sentinel({}, 0, SentinelBinary(), {sentinel_conf});
  const std::string nodes = std::string(dir) + "/nodes.conf";
  RedisServer cluster_node({"--cluster-enabled", "yes", "--cluster-config-file", nodes});
  ASSERT_TRUE(master.Running() && replica.Running() && sentinel.Running() &&
              cluster_node.Running());
  struct Case {
    const char* name;
    std::string url;
    const char* message;
  };
  const std::string q = "?timeout_ms=5000&on_error=";
  const std::vector<Case> cases = {
      {"a replica", replica.Url(q, ":m-pw@"),
       "is a replica of 127.0.0.1:"},
      {"a sentinel's port", sentinel.Url(q), "is a Redis Sentinel"},
      {"a cluster node without cluster routing", cluster_node.Url(q), "Redis Cluster node"},
      {"a wrong password", master.Url(q, ":not-m-pw@"), "refuses these credentials"},
      {"no password", master.Url(q), "NOAUTH"},
      {"a password the server has none for", cluster_node.Url(q, ":stray-pw@"),
       "refuses these credentials"},
  };
  const std::string limits = R"({"a/b": {"rpm": 10}})";
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    for (const char* policy : {"closed", "open", "local"}) {
      SCOPED_TRACE(policy);
      rt_tracker* t = nullptr;
      EXPECT_EQ(rt_open_ex(Config(c.url + policy, limits).c_str(), &t), RT_E_CONFIG);
      EXPECT_EQ(t, nullptr);
      const std::string err = rt_last_error();
      EXPECT_NE(err.find(c.message), std::string::npos) << err;
      EXPECT_NE(err.find("not an outage"), std::string::npos) << err;
      EXPECT_EQ(err.find("-pw"), std::string::npos) << err;  // never a password
      rt_close(t);
    }
  }
  // The master turned into a replica under open trackers (a failover
  // without a sentinel to follow): READONLY, a configuration error for
  // every policy, from every call, until it is a master again.
  RedisServer other({"--requirepass", "m-pw"});
  std::vector<rt_tracker*> trackers;
  for (const char* policy : {"closed", "open", "local"}) {
    rt_tracker* t = rt_open(Config(master.Url(q + policy, ":m-pw@"), limits).c_str());
    ASSERT_NE(t, nullptr) << rt_last_error();
    EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
    trackers.push_back(t);
  }
  EXPECT_EQ(master.Command({"REPLICAOF", "127.0.0.1", std::to_string(other.port())}, "m-pw"),
            "OK");
  for (rt_tracker* t : trackers) {
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_E_CONFIG);
      const std::string err = rt_last_error();
      EXPECT_TRUE(err.find("read-only replica") != std::string::npos ||
                  err.find("is a replica") != std::string::npos)
          << err;
    }
  }
  EXPECT_EQ(master.Command({"REPLICAOF", "NO", "ONE"}, "m-pw"), "OK");
  for (rt_tracker* t : trackers) {
    int rc;
    // Back by itself after the backoff (at most 2 s; polled without a limit).
    while ((rc = rt_try_acquire(t, "a/b", 1, nullptr)) == RT_E_CONFIG) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(rc, RT_OK) << rt_last_error();
    rt_close(t);
  }
  sentinel.Kill();
  cluster_node.Kill();
  unlink(sentinel_conf.c_str());
  unlink(nodes.c_str());
  rmdir(dir);
}

#ifdef RATETRACK_TLS
// rediss://: verified against the test's CA (by address and by name),
// racing threads exact over TLS; a certificate not trusted (no CA, another
// CA, another name) is RT_E_CONFIG saying "certificate", under every policy;
// tls_insecure=yes by explicit choice; plain redis:// against a TLS port is
// an outage, never a crash.
TEST(RedisTest, Tls) {
  TestCertificates certs;
  ASSERT_TRUE(certs.ok()) << "openssl could not make the test's certificates";
  RedisServer redis(certs.ServerOptions(/*auth_clients=*/false));
  ASSERT_TRUE(redis.Running());
  const std::string at = "rediss://127.0.0.1:" + std::to_string(redis.port()) + "/0";
  const std::string ca = "tls_ca_file=" + certs["ca.pem"];
  const std::string limits =
      R"({"a/b": {"windows": [{"unit": "requests", "limit": 300, "seconds": 3600}]}})";
  {
    rt_tracker* t = rt_open(
        Config(at + "?" + ca + "&connections=2&timeout_ms=5000&on_error=closed", limits).c_str());
    ASSERT_NE(t, nullptr) << rt_last_error();
    std::atomic<int> admitted{0}, other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        for (int j = 0; j < 60; ++j) {
          const int rc = rt_try_acquire(t, "a/b", 1, nullptr);
          if (rc == RT_OK) ++admitted;
          else if (rc != RT_LIMITED) ++other;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(admitted.load(), 300);
    EXPECT_EQ(other.load(), 0) << rt_last_error();
    EXPECT_EQ(Stats(t)["backend"].get<std::string>().rfind("rediss://127.0.0.1:", 0), 0u);
    rt_close(t);
  }
  // By name: the certificate is for localhost too.
  rt_tracker* named = rt_open(Config("rediss://localhost:" + std::to_string(redis.port()) +
                                         "?" + ca + "&timeout_ms=5000&on_error=closed",
                                     limits)
                                  .c_str());
  ASSERT_NE(named, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(named, "a/b", 1, nullptr), RT_LIMITED);
  rt_close(named);
  // Not trusted: whatever on_error says, rt_open refuses, saying why.
  struct Case {
    const char* name;
    std::string query;
  };
  const std::vector<Case> untrusted = {
      {"no CA given (the system's do not know the test's)", "?"},
      {"another CA", "?tls_ca_file=" + certs["other.pem"] + "&"},
      {"another name", "?" + ca + "&tls_server_name=redis.example.com&"},
  };
  for (const Case& c : untrusted) {
    SCOPED_TRACE(c.name);
    for (const char* policy : {"closed", "open", "local"}) {
      rt_tracker* t = nullptr;
      EXPECT_EQ(rt_open_ex(Config(at + c.query + "timeout_ms=5000&on_error=" + policy, limits)
                               .c_str(),
                           &t),
                RT_E_CONFIG);
      const std::string err = rt_last_error();
      EXPECT_NE(err.find("certificate"), std::string::npos) << err;
      EXPECT_NE(err.find("127.0.0.1:" + std::to_string(redis.port())), std::string::npos) << err;
      rt_close(t);
    }
  }
  // A CA file that is not there: RT_E_CONFIG naming it.
  rt_tracker* t = nullptr;
  EXPECT_EQ(rt_open_ex(Config(at + "?tls_ca_file=/nonexistent/ca.pem", limits).c_str(), &t),
            RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("/nonexistent/ca.pem"), std::string::npos)
      << rt_last_error();
  // No verification, by explicit choice only.
  rt_tracker* insecure =
      rt_open(Config(at + "?tls_insecure=yes&timeout_ms=5000&on_error=closed", limits).c_str());
  ASSERT_NE(insecure, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(insecure, "a/b", 1, nullptr), RT_LIMITED);
  rt_close(insecure);
  // Plain text to a TLS port: an outage (the server drops it), no crash.
  rt_tracker* plain = rt_open(Config("redis://127.0.0.1:" + std::to_string(redis.port()) +
                                         "?timeout_ms=1000&on_error=closed",
                                     limits)
                                  .c_str());
  ASSERT_NE(plain, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(plain, "a/b", 1, nullptr), RT_E_BACKEND);
  rt_close(plain);
}

// Mutual TLS (--tls-auth-clients yes): without a client certificate the
// server refuses (RT_E_CONFIG, "certificate", under every policy); with the
// test's client certificate and key, calls go through.
TEST(RedisTest, MutualTls) {
  TestCertificates certs;
  ASSERT_TRUE(certs.ok()) << "openssl could not make the test's certificates";
  RedisServer redis(certs.ServerOptions(/*auth_clients=*/true));
  ASSERT_TRUE(redis.Running());
  const std::string url = "rediss://127.0.0.1:" + std::to_string(redis.port()) +
                          "/0?tls_ca_file=" + certs["ca.pem"] + "&timeout_ms=5000";
  const std::string limits = R"({"a/b": {"rpm": 2}})";
  for (const char* policy : {"closed", "open", "local"}) {
    rt_tracker* t = nullptr;
    EXPECT_EQ(rt_open_ex(Config(url + "&on_error=" + policy, limits).c_str(), &t), RT_E_CONFIG);
    const std::string err = rt_last_error();
    EXPECT_NE(err.find("certificate"), std::string::npos) << err;
    rt_close(t);
  }
  rt_tracker* t = rt_open(Config(url + "&on_error=closed&tls_cert_file=" + certs["client.pem"] +
                                     "&tls_key_file=" + certs["client.key"],
                                 limits)
                              .c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_LIMITED);
  rt_close(t);
  // A key that does not go with the certificate: RT_E_CONFIG at rt_open.
  EXPECT_EQ(rt_open_ex(Config(url + "&tls_cert_file=" + certs["client.pem"] +
                                  "&tls_key_file=" + certs["server.key"],
                              limits)
                           .c_str(),
                       &t),
            RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("client key"), std::string::npos)
      << rt_last_error();
}
#endif  // RATETRACK_TLS

// ?replicas=1: every admitted booking was acknowledged by the replica (WAIT)
// before the caller heard of it, so a failover to that replica loses none:
// the master killed mid-run, the replica promoted, it holds every booking
// admitted. A replica that does not acknowledge in time fails the calls as
// an outage (on_error), saying so.
TEST(RedisTest, ReplicasAcknowledgeEveryBookingBeforeItIsAdmitted) {
  auto master = std::make_unique<RedisServer>(
      std::vector<std::string>{"--repl-diskless-sync-delay", "0"});
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(master->port())});
  ASSERT_TRUE(master->Running() && replica.Running());
  // Replication up (polled without a time limit).
  while (master->Command({"INFO", "replication"}).find("state=online") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string limits =
      R"({"a/b": {"windows": [{"unit": "requests", "limit": 100000, "seconds": 3600}]}})";
  rt_tracker* t = rt_open(
      Config(master->Url("?prefix=w&replicas=1&timeout_ms=5000&on_error=closed&connections=2"),
             limits)
          .c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  EXPECT_NE(Stats(t)["backend"].get<std::string>().find("replicas=1"), std::string::npos);
  // Threads booking while the master is killed under them.
  std::atomic<int> admitted{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        if (rt_try_acquire(t, "a/b", 1, nullptr) == RT_OK) ++admitted;
      }
    });
  }
  while (admitted.load() < 300) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  master->Kill();
  stop = true;
  for (auto& th : threads) th.join();
  rt_close(t);
  // The replica promoted: every admitted booking is there.
  EXPECT_EQ(replica.Command({"REPLICAOF", "NO", "ONE"}), "OK");
  rt_tracker* after = rt_open(Config(replica.Url("?prefix=w&timeout_ms=5000&on_error=closed"), limits).c_str());
  ASSERT_NE(after, nullptr) << rt_last_error();
  const int kept = Stats(after)["models"]["a/b"]["requests_per_3600s"]["current"].get<int>();
  EXPECT_GE(kept, admitted.load()) << "admitted " << admitted.load() << ", kept " << kept;
  std::printf("replicas=1: %d admitted before the master was killed, %d on the promoted replica\n",
              admitted.load(), kept);
  rt_close(after);
  // A replica that does not answer: WAIT times out (after 3/4 of the
  // call's time; the rest leaves room for its reply on a busy machine), the
  // call fails as an outage under on_error=closed, saying how many
  // acknowledged.
  master = std::make_unique<RedisServer>(
      std::vector<std::string>{"--repl-diskless-sync-delay", "0"});
  RedisServer frozen({"--replicaof", "127.0.0.1", std::to_string(master->port())});
  while (master->Command({"INFO", "replication"}).find("state=online") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  rt_tracker* w = rt_open(
      Config(master->Url("?prefix=f&replicas=1&timeout_ms=3000&on_error=closed"), limits).c_str());
  ASSERT_NE(w, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(w, "a/b", 1, nullptr), RT_OK);
  frozen.Stop();
  EXPECT_EQ(rt_try_acquire(w, "a/b", 1, nullptr), RT_E_BACKEND);
  EXPECT_NE(std::string(rt_last_error()).find("0 of 1 replicas acknowledged"), std::string::npos)
      << rt_last_error();
  frozen.Continue();
  rt_close(w);
}

// redis+sentinel://: a master, two replicas and three sentinels of the
// test's own. The tracker finds the master through the sentinels; the
// master killed mid-run: calls fail as an outage, then go on by themselves
// on the promoted replica (recovery time and loss measured: with
// ?replicas=1 nothing admitted is lost); a graceful SENTINEL FAILOVER is
// followed too; an unknown service is RT_E_CONFIG.
TEST(RedisTest, SentinelFindsTheMasterAndFollowsFailovers) {
  const std::vector<std::string> fast_sync = {"--repl-diskless-sync-delay", "0"};
  auto master = std::make_unique<RedisServer>(fast_sync);
  std::vector<std::string> of = {"--replicaof", "127.0.0.1", std::to_string(master->port())};
  of.insert(of.end(), fast_sync.begin(), fast_sync.end());
  RedisServer replica1(of), replica2(of);
  ASSERT_TRUE(master->Running() && replica1.Running() && replica2.Running());
  auto online = [&] {
    const std::string info = master->Command({"INFO", "replication"});
    size_t n = 0;
    for (size_t at = info.find("state=online"); at != std::string::npos;
         at = info.find("state=online", at + 1)) {
      ++n;
    }
    return n == 2;
  };
  SecondsUntil(online);
  char dir[] = "/tmp/rt-sentinel-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::vector<std::unique_ptr<RedisServer>> sentinels;
  std::string list;
  for (int i = 0; i < 3; ++i) {
    const std::string conf = std::string(dir) + "/sentinel" + std::to_string(i) + ".conf";
    FILE* f = std::fopen(conf.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f,
                 "sentinel monitor mymaster 127.0.0.1 %d 2\n"
                 "sentinel down-after-milliseconds mymaster 1000\n"
                 "sentinel failover-timeout mymaster 4000\n",
                 master->port());
    std::fclose(f);
    sentinels.push_back(std::make_unique<RedisServer>(std::vector<std::string>{}, 0,
                                                      SentinelBinary(),
                                                      std::vector<std::string>{conf}));
    ASSERT_TRUE(sentinels.back()->Running());
    absl::StrAppend(&list, i == 0 ? "" : ",", "127.0.0.1:", sentinels.back()->port());
  }
  const std::string base = "redis+sentinel://" + list + "/mymaster";
  const std::string limits =
      R"({"zero": {"windows": [{"unit": "requests", "limit": 1000000, "seconds": 3600}]},
          "one": {"windows": [{"unit": "requests", "limit": 1000000, "seconds": 3600}]}})";
  // An unknown service: a misconfiguration.
  rt_tracker* none = nullptr;
  EXPECT_EQ(rt_open_ex(Config("redis+sentinel://" + list + "/nosuch", limits).c_str(), &none),
            RT_E_CONFIG);
  EXPECT_NE(std::string(rt_last_error()).find("does not know the service"), std::string::npos)
      << rt_last_error();
  // replicas=0 and replicas=1, side by side, booking while the master dies.
  rt_tracker* r0 =
      rt_open(Config(base + "?prefix=s&timeout_ms=2000&on_error=closed", limits).c_str());
  rt_tracker* r1 = rt_open(
      Config(base + "?prefix=s&timeout_ms=2000&on_error=closed&replicas=1", limits).c_str());
  ASSERT_NE(r0, nullptr) << rt_last_error();
  ASSERT_NE(r1, nullptr) << rt_last_error();
  EXPECT_EQ(Stats(r0)["backend"].get<std::string>().rfind("redis+sentinel://", 0), 0u);
  std::atomic<int> admitted0{0}, admitted1{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      while (!stop) admitted0 += rt_try_acquire(r0, "zero", 1, nullptr) == RT_OK;
    });
    threads.emplace_back([&] {
      while (!stop) admitted1 += rt_try_acquire(r1, "one", 1, nullptr) == RT_OK;
    });
  }
  SecondsUntil([&] { return admitted0 >= 200 && admitted1 >= 200; });
  master->Kill();
  const int before0 = admitted0, before1 = admitted1;
  // Back by themselves on the promoted replica.
  const double recovery = SecondsUntil([&] { return admitted0 > before0 && admitted1 > before1; });
  stop = true;
  for (auto& th : threads) th.join();
  RedisServer& promoted =
      replica1.Command({"INFO", "replication"}).find("role:master") != std::string::npos
          ? replica1
          : replica2;
  EXPECT_NE(promoted.Command({"INFO", "replication"}).find("role:master"), std::string::npos);
  // What the new master holds: every booking it has seen.
  rt_tracker* check =
      rt_open(Config(promoted.Url("?prefix=s&timeout_ms=5000&on_error=closed"), limits).c_str());
  ASSERT_NE(check, nullptr) << rt_last_error();
  json st = Stats(check)["models"];
  const int kept0 = st["zero"]["requests_per_3600s"]["current"].get<int>();
  const int kept1 = st["one"]["requests_per_3600s"]["current"].get<int>();
  rt_close(check);
  std::printf("sentinel, master killed: calls back after %.1f s; replicas=0: %d admitted, %d kept "
              "(lost %d); replicas=1: %d admitted, %d kept (lost %d)\n",
              recovery, admitted0.load(), kept0, std::max(0, admitted0.load() - kept0),
              admitted1.load(), kept1, std::max(0, admitted1.load() - kept1));
  EXPECT_GE(kept1, admitted1.load()) << "replicas=1 lost an admitted booking";
  // A graceful failover (the promoted master hands over to the other
  // replica, once it is in sync): followed by itself.
  RedisServer& other = &promoted == &replica1 ? replica2 : replica1;
  SecondsUntil([&] {
    return promoted.Command({"INFO", "replication"}).find("state=online") != std::string::npos;
  });
  std::string failover;
  SecondsUntil([&] {  // NOGOODSLAVE until the sentinels see the replica in sync
    failover = sentinels[0]->Command({"SENTINEL", "FAILOVER", "mymaster"});
    if (failover != "OK") std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return failover == "OK";
  });
  const double graceful = SecondsUntil([&] {
    return other.Command({"INFO", "replication"}).find("role:master") != std::string::npos;
  });
  int rc = RT_E_BACKEND;
  const double back = SecondsUntil([&] {
    rc = rt_try_acquire(r0, "zero", 1, nullptr);
    return rc == RT_OK;
  });
  std::printf("sentinel, SENTINEL FAILOVER: new master after %.1f s, calls back %.1f s later\n",
              graceful, back);
  EXPECT_EQ(rc, RT_OK);
  rt_close(r0);
  rt_close(r1);
  for (auto& s : sentinels) s->Kill();
  std::system(("rm -rf '" + std::string(dir) + "'").c_str());
}

TEST(RedisTest, AFrozenServerNeverBlocksLongerThanTheTimeout) {
  RedisServer redis;
  rt_tracker* t = rt_open(Config(redis.Url("?timeout_ms=100&on_error=closed"),
                                 R"({"a/b": {"rpm": 10}})").c_str());
  ASSERT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
  redis.Stop();  // accepts nothing, answers nothing
  std::vector<std::thread> threads;
  std::atomic<int> slow{0}, backend{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto start = Clock::now();
      int rc = rt_try_acquire(t, "a/b", 1, nullptr);
      if (Clock::now() - start > std::chrono::milliseconds(400)) slow++;
      if (rc == RT_E_BACKEND) backend++;
    });
  }
  for (auto& th : threads) th.join();
  redis.Continue();
  EXPECT_EQ(slow.load(), 0) << "a caller waited past the timeout";
  EXPECT_EQ(backend.load(), 6);
  rt_close(t);
}

// A connected tracker with one connection and a 200 ms timeout: calls queue
// behind the one on the wire.
rt_tracker* OneConnectionTracker(const RedisServer& redis) {
  rt_tracker* t = rt_open(Config(redis.Url("?timeout_ms=200&on_error=closed&connections=1"),
                                 R"({"a/b": {"rpm": 100}})").c_str());
  EXPECT_NE(t, nullptr) << rt_last_error();
  if (t != nullptr) EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK) << rt_last_error();
  return t;
}

TEST(RedisTest, QueuedCallsNeverWaitPastTheirTimeout) {
  RedisServer redis;
  rt_tracker* t = OneConnectionTracker(redis);
  ASSERT_NE(t, nullptr);
  redis.Stop();  // seven of the eight calls queue behind one never answered
  std::vector<std::thread> threads;
  std::atomic<int> slow{0}, backend{0};
  std::atomic<int64_t> longest_ms{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      const auto start = Clock::now();
      const int rc = rt_try_acquire(t, "a/b", 1, nullptr);
      const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
          Clock::now() - start).count();
      if (ms > 320) slow++;  // 1.6 x the timeout: room for a busy machine only
      int64_t seen = longest_ms.load();
      while (ms > seen && !longest_ms.compare_exchange_weak(seen, ms)) {}
      if (rc == RT_E_BACKEND) backend++;
    });
  }
  for (auto& th : threads) th.join();
  redis.Continue();
  EXPECT_EQ(slow.load(), 0) << "the longest call took " << longest_ms.load() << " ms";
  EXPECT_EQ(backend.load(), 8);
  rt_close(t);
}

TEST(RedisTest, CallsQueuedBehindASlowReplyAreServedInTime) {
  RedisServer redis;
  rt_tracker* t = OneConnectionTracker(redis);
  ASSERT_NE(t, nullptr);
  // Redis pauses for 120 ms of the 200 ms timeout: the call on the wire gets
  // its answer late, and the four queued behind it, with less than half of
  // their time left, must still be sent and answered, not passed around.
  redis.Stop();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  threads.emplace_back([&] { ok += rt_try_acquire(t, "a/b", 1, nullptr) == RT_OK; });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] { ok += rt_try_acquire(t, "a/b", 1, nullptr) == RT_OK; });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(110));
  redis.Continue();
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 5) << rt_last_error();
  rt_close(t);
}

TEST(RedisTest, ForkUnderLoadIsNotHeldUp) {
  RedisServer redis;
  rt_tracker* t = rt_open(Config(redis.Url("?prefix=fork&on_error=closed&timeout_ms=2000"),
                                 R"({"a/b": {"rpm": 100000000}})").c_str());
  ASSERT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK) << rt_last_error();
  // Three times as many threads as connections: there is always a queue,
  // and connections pass from caller to caller without ever all being free.
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  const auto give_up = Clock::now() + std::chrono::seconds(5);  // a fork held up fails, not hangs
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&] {
      while (!stop.load() && Clock::now() < give_up) {
        rt_try_acquire(t, "a/b", 1, nullptr);
        calls++;
      }
    });
  }
  while (calls.load() < 500 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    pid_t p = fork();
    if (p == 0) _exit(rt_try_acquire(t, "a/b", 1, nullptr) == RT_OK ? 0 : 1);
    const auto took = Clock::now() - start;
    EXPECT_LT(took, std::chrono::milliseconds(1000)) << "fork() waited for the load to stop";
    int status = 0;
    const auto child_deadline = Clock::now() + std::chrono::seconds(10);
    while (waitpid(p, &status, WNOHANG) == 0) {
      if (Clock::now() > child_deadline) {  // a hung child fails the test, not CI
        kill(p, SIGKILL);
        waitpid(p, &status, 0);
        ADD_FAILURE() << "the forked child hung";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = true;
  for (auto& th : threads) th.join();
  rt_close(t);
}

TEST(RedisTest, EnvironmentBackendPutsTheGlobalOnRedis) {
  RedisServer redis;
  rt_reset(nullptr);
  // A password for a server without one: a misconfiguration, said at once
  // (never a global that silently counts in this process alone).
  setenv("RATETRACK_BACKEND", redis.Url("?prefix=env", ":any-pw-is-hidden@").c_str(), 1);
  EXPECT_EQ(rt_global_get("tier1"), nullptr);
  EXPECT_NE(std::string(rt_last_error()).find("refuses these credentials"), std::string::npos)
      << rt_last_error();
  EXPECT_EQ(std::string(rt_last_error()).find("any-pw-is-hidden"), std::string::npos);
  setenv("RATETRACK_BACKEND", redis.Url("?prefix=env").c_str(), 1);
  rt_tracker* g = rt_global_get("tier1");
  unsetenv("RATETRACK_BACKEND");
  ASSERT_NE(g, nullptr) << rt_last_error();
  json s = Stats(nullptr);
  EXPECT_EQ(s["backend"].get<std::string>().rfind("redis://127.0.0.1:", 0), 0u);
  EXPECT_EQ(rt_try_acquire(g, "openai/gpt-4o-mini", 10, nullptr), RT_OK);
  EXPECT_EQ(redis.Command({"EXISTS", "{env:openai/gpt-4o-mini}"}), "1");
  rt_reset(nullptr);
}

TEST(RedisTest, ProviderTruthThroughRedis) {
  RedisServer redis;
  const std::string cfg = Config(redis.Url("?prefix=pt"), R"({
      "anthropic/m": {"rpm": 50, "itpm": 30000, "otpm": 8000},
      "gemini/m": {"windows": [{"unit": "requests", "limit": 2, "calendar_day": "America/Los_Angeles"}]},
      "openai/m": {"rpm": 500}})");
  rt_tracker* a = rt_open(cfg.c_str());
  rt_tracker* b = rt_open(cfg.c_str());  // another host
  // A 429 on one host stops the other.
  ASSERT_EQ(rt_report_limited(a, "openai/m", "7"), RT_OK) << rt_last_error();
  uint64_t retry = 0;
  EXPECT_EQ(rt_try_acquire(b, "openai/m", 1, &retry), RT_LIMITED);
  EXPECT_GT(retry, 6000u);
  EXPECT_LE(retry, 7000u);
  // A header cap on one host binds the other.
  const char* names[] = {"x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
                         "x-ratelimit-limit-tokens"};
  const char* values[] = {"100", "30s", "150000"};
  ASSERT_EQ(rt_observe_headers(a, "anthropic/m", names, values, 3), RT_OK);
  EXPECT_EQ(rt_try_acquire_io(b, "anthropic/m", 60, 41, nullptr, nullptr), RT_LIMITED);
  uint64_t grant = 0;
  ASSERT_EQ(rt_try_acquire_io(b, "anthropic/m", 60, 40, nullptr, &grant), RT_OK);
  // Input/output settle in Redis.
  // Settled by the other host: grants made in Redis settle anywhere on it.
  ASSERT_EQ(rt_settle_io(a, "anthropic/m", grant, 60, 40, 60, 10), RT_OK) << rt_last_error();
  EXPECT_EQ(rt_settle_io(a, "anthropic/m", grant, 60, 41, 60, 10), RT_E_INVALID);
  json s = Stats(a);
  EXPECT_EQ(s["models"]["anthropic/m"]["output_tokens_per_minute"]["current"], 10);
  EXPECT_EQ(s["models"]["anthropic/m"]["input_tokens_per_minute"]["current"], 60);
  // The provider's cap counts what was reserved (a settle refunds windows,
  // not what the provider already saw).
  EXPECT_EQ(s["provider"]["anthropic/m"]["tokens"]["remaining"], 0);
  EXPECT_GT(s["provider"]["openai/m"]["blocked_for_ms"].get<uint64_t>(), 5000u);
  // A calendar day, shared.
  EXPECT_EQ(rt_try_acquire(a, "gemini/m", 0, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(b, "gemini/m", 0, nullptr), RT_OK);
  EXPECT_EQ(rt_try_acquire(a, "gemini/m", 0, &retry), RT_LIMITED);
  EXPECT_LE(retry, 25ull * 3600 * 1000);
  EXPECT_EQ(Stats(b)["models"]["gemini/m"]["requests_per_calendar_day"]["current"], 2);
  // The picker, across hosts: every candidate is held back, by a 429 (7 s),
  // a spent calendar day and a spent cap (30 s): openai/m frees first.
  const char* order[] = {"openai/m", "gemini/m", "anthropic/m"};
  size_t picked = 99;
  EXPECT_EQ(rt_pick(a, order, 3, 10, 10, &picked, &retry, &grant), RT_LIMITED);
  EXPECT_EQ(picked, 0u);
  EXPECT_LE(retry, 7000u);
  const char* fresh[] = {"gemini/m", "fresh/m"};
  EXPECT_EQ(rt_pick(b, fresh, 2, 10, 10, &picked, &retry, &grant), RT_OK);
  EXPECT_EQ(picked, 1u);
  rt_close(a);
  rt_close(b);
}

// A lower limit one host learned from a response binds every host (on the
// script's hot path too); tokens booked to a counted request by one host
// count for the other, and against the provider's cap.
TEST(RedisTest, LearnedLimitsAndBookedTokensAreShared) {
  RedisServer redis;
  const std::string cfg =
      Config(redis.Url("?prefix=ll"), R"({"openai/m": {"rpm": 500, "tpm": 100000}})");
  rt_tracker* a = rt_open(cfg.c_str());
  rt_tracker* b = rt_open(cfg.c_str());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(rt_try_acquire(b, "openai/m", 10, nullptr), RT_OK);
  const char* names[] = {"x-ratelimit-limit-requests"};
  const char* values[] = {"20"};
  ASSERT_EQ(rt_observe_headers(a, "openai/m", names, values, 1), RT_OK) << rt_last_error();
  int admitted = 5;
  for (int i = 0; i < 40; ++i) {
    admitted += rt_try_acquire(i % 2 == 0 ? a : b, "openai/m", 10, nullptr) == RT_OK;
  }
  EXPECT_EQ(admitted, 20);
  json s = Stats(b);
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["observed_limit"], 20);
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["remaining"], 0);
  // Tokens: 200 booked by a count for b; the provider's cap of 100 more
  // tokens is spent by 60 of them.
  ASSERT_EQ(rt_record_tokens(a, "openai/m", 150, 50), RT_OK) << rt_last_error();
  EXPECT_EQ(Stats(b)["models"]["openai/m"]["tokens_per_minute"]["current"], 200 + 200);
  const char* cap_names[] = {"x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"};
  const char* cap_values[] = {"100", "30s"};
  ASSERT_EQ(rt_observe_headers(b, "openai/m", cap_names, cap_values, 2), RT_OK);
  ASSERT_EQ(rt_record_tokens(b, "openai/m", 60, 0), RT_OK);
  s = Stats(a);
  EXPECT_EQ(s["provider"]["openai/m"]["tokens"]["remaining"], 40);
  EXPECT_EQ(s["models"]["openai/m"]["tokens_per_minute"]["remaining"], 40);
  EXPECT_EQ(s["models"]["openai/m"]["requests_per_minute"]["current"], 20) << "no request booked";
  EXPECT_EQ(rt_record_tokens(a, "", 1, 1), RT_E_INVALID);
  rt_close(a);
  rt_close(b);
}

TEST(RedisTest, AForkedChildUsesItsOwnConnection) {
  RedisServer redis;
  rt_tracker* t = rt_open(Config(redis.Url(), R"({"a/b": {"rpm": 100}})").c_str());
  ASSERT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
  pid_t p = fork();
  if (p == 0) {
    int ok = 0;
    for (int i = 0; i < 10; ++i) ok += rt_try_acquire(t, "a/b", 1, nullptr) == RT_OK;
    _exit(ok == 10 ? 0 : 1);
  }
  for (int i = 0; i < 10; ++i) EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
  int status = 0;
  waitpid(p, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(Stats(t)["models"]["a/b"]["requests_per_minute"]["current"], 21);
  rt_close(t);
}

}  // namespace
