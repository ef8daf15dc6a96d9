#include "sliding_window.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "window_set.h"

#include "gtest/gtest.h"

namespace ratetrack {
namespace {

TEST(SlidingWindowTest, GeometryCoversSpanPlusGuard) {
  for (int64_t span : {int64_t{1000}, int64_t{2000}, int64_t{60000}, int64_t{86400000},
                       int64_t{31} * 86400000}) {
    for (int64_t guard : {int64_t{0}, int64_t{4}, int64_t{5}}) {
      SlidingWindow w(span, guard);
      EXPECT_LE(w.ring(), SlidingWindow::kMaxRing);
      // The counted buckets reach back at least span + guard from any time.
      EXPECT_GE((w.ring() - 1) * w.width_ms(), span + guard) << span;
      EXPECT_LE(w.ring(), SlidingWindow::kTargetBuckets + 1);
      // Resolution: about 1/60 of the span, plus the guard.
      EXPECT_LE(w.resolution_ms(), span / 60 + 2 * guard + 62) << span;
    }
  }
  EXPECT_EQ(SlidingWindow(60000, 0).width_ms(), 1000);
}

TEST(SlidingWindowTest, CountsUntilTheBucketLeaves) {
  SlidingWindow w(60000, 0);  // 1 s buckets, 61 counted
  w.Advance(500);
  w.Add(10);
  w.Advance(59999);
  EXPECT_EQ(w.used(), 10u);
  w.Advance(60999);  // bucket 0 still within (t - 60 s - 1 s, t]
  EXPECT_EQ(w.used(), 10u);
  w.Advance(61000);  // bucket 0 ends 61 s later: gone
  EXPECT_EQ(w.used(), 0u);
}

TEST(SlidingWindowTest, FitsAndWait) {
  SlidingWindow w(60000, 0);
  w.Advance(0);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(w.Fits(1, 10));
    w.Add(1);
  }
  EXPECT_FALSE(w.Fits(1, 10));
  w.Advance(5000);
  int64_t wait = w.WaitMs(5000, 1, 10);
  EXPECT_EQ(wait, 61000 - 5000);  // bucket 0 stops counting at 61 s
  EXPECT_EQ(w.WaitMs(5000, 11, 10), -1);
  EXPECT_EQ(w.WaitMs(5000, 0, 10), 0);  // nothing more fits within 10 exactly
}

TEST(SlidingWindowTest, WaitSkipsOnlyAsManyBucketsAsNeeded) {
  SlidingWindow w(10000, 0);  // width 167 ms
  w.Advance(0);
  w.Add(5);
  w.Advance(3000);
  w.Add(5);
  w.Advance(4000);
  // Limit 10, full. One more unit needs the first bucket gone; eleven more
  // can never fit.
  int64_t first_gone = (0 + w.ring()) * w.width_ms();
  EXPECT_EQ(w.WaitMs(4000, 1, 10), first_gone - 4000);
  EXPECT_EQ(w.WaitMs(4000, 6, 10),
            (3000 / w.width_ms() + w.ring()) * w.width_ms() - 4000);
}

TEST(SlidingWindowTest, SaturatesInsteadOfOverflowing) {
  SlidingWindow w(60000, 0);
  w.Advance(0);
  w.Add(UINT64_MAX);
  w.Add(UINT64_MAX);
  EXPECT_EQ(w.used(), UINT64_MAX);
  EXPECT_FALSE(w.Fits(1, UINT64_MAX - 1));
  EXPECT_FALSE(w.Fits(UINT64_MAX, UINT64_MAX - 1));
  w.Advance(30000);
  w.Add(7);
  w.Advance(61500);  // the saturated bucket left; the sum is recounted
  EXPECT_EQ(w.used(), 7u);
}

TEST(SlidingWindowTest, AdjustBooksAtTheGrantTime) {
  SlidingWindow w(60000, 0);
  w.Advance(0);
  w.Add(1000);
  w.Advance(1500);
  EXPECT_TRUE(w.Adjust(0, 900, /*top_up=*/false));  // refund
  EXPECT_EQ(w.used(), 100u);
  w.Advance(30000);
  w.Add(900);
  EXPECT_EQ(w.used(), 1000u);
  w.Advance(61000);  // the grant's bucket leaves with 100, not 1000
  EXPECT_EQ(w.used(), 900u);
  EXPECT_FALSE(w.Adjust(0, 5, true));  // long gone: nothing changes
  EXPECT_EQ(w.used(), 900u);
  EXPECT_TRUE(w.Adjust(30000, 50, true));  // top-up
  EXPECT_EQ(w.used(), 950u);
  EXPECT_TRUE(w.Adjust(30000, 10000, false));  // refund clamps at the bucket
  EXPECT_EQ(w.used(), 0u);
}

TEST(SlidingWindowTest, ClearForgetsEverything) {
  SlidingWindow w(2000, 4);
  w.Advance(100);
  w.Add(3);
  w.Clear();
  w.Advance(150);
  EXPECT_EQ(w.used(), 0u);
  EXPECT_TRUE(w.Fits(3, 3));
}

// Property: random traffic against one window, checked against an exact
// sliding count. Never more than `limit` in any `span` interval, and a refusal
// only when the exact count over the last span + resolution would overflow.
TEST(SlidingWindowTest, RandomTrafficNeverOverAdmits) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 40; ++round) {
    const int64_t span = 1000 + static_cast<int64_t>(rng() % 120000);
    const uint64_t limit = 1 + rng() % 50;
    SlidingWindow w(span, 0);
    std::vector<std::pair<int64_t, uint64_t>> admitted;
    int64_t now = static_cast<int64_t>(rng() % 100000);
    for (int i = 0; i < 3000; ++i) {
      now += static_cast<int64_t>(rng() % (span / 20 + 1));
      const uint64_t cost = 1 + rng() % 5;
      w.Advance(now);
      auto exact = [&](int64_t back) {
        uint64_t sum = 0;
        for (auto& [t, c] : admitted) {
          if (t > now - back) sum += c;
        }
        return sum;
      };
      if (w.Fits(cost, limit)) {
        w.Add(cost);
        admitted.push_back({now, cost});
        ASSERT_LE(exact(span), limit) << "over-admitted at " << now;
      } else {
        // Refused: the count within span + resolution must justify it.
        ASSERT_GT(exact(span + w.resolution_ms()) + cost, limit)
            << "refused without cause at " << now;
        int64_t wait = w.WaitMs(now, cost, limit);
        if (cost <= limit) {
          ASSERT_GT(wait, 0);
          SlidingWindow probe = w;
          probe.Advance(now + wait);
          ASSERT_TRUE(probe.Fits(cost, limit)) << "wait too short";
          if (wait > 1) {
            SlidingWindow early = w;
            early.Advance(now + wait - 1);
            ASSERT_FALSE(early.Fits(cost, limit)) << "wait too long";
          }
        }
      }
    }
  }
}

WindowLimit Sliding(Unit unit, int64_t seconds, uint64_t limit) {
  WindowLimit w{unit, seconds, limit, ""};
  return w;
}

// The fast path (pending amounts against the room primed at the last tick)
// must decide exactly as a pass over every window does. `slow` is kept off
// it: reading its usage before every call ends the fast path. Records and
// settles push windows over their limits now and then (they count whatever
// the limits say), 429 blocks stop the fast path for a while.
TEST(WindowSetTest, FastPathDecidesExactlyAsTheWindows) {
  ModelLimits l;
  // Two limited windows per unit for requests and tokens (the room is the
  // least of them), an unlimited one, one unit with no window at all.
  l.windows = {Sliding(Unit::kRequests, 10, 150),     Sliding(Unit::kTokens, 10, 6000),
               Sliding(Unit::kInputTokens, 60, 30000), Sliding(Unit::kRequests, 600, 4000),
               Sliding(Unit::kTokens, 300, 90000),     Sliding(Unit::kTokens, 86400, kUnlimited),
               Sliding(Unit::kRequests, 60, 900)};
  auto fast = std::make_unique<WindowSet>();
  auto slow = std::make_unique<WindowSet>();
  fast->SetLimits(l, 2);
  slow->SetLimits(l, 2);
  std::mt19937_64 rng(11);
  int64_t now = 5000;
  int on_fast_path = 0, admitted = 0, refused = 0;
  for (int i = 0; i < 200000; ++i) {
    if (rng() % 4 == 0) now += static_cast<int64_t>(rng() % 300);
    const Cost c{rng() % 70, rng() % 25};
    slow->Used(0, now, 0);
    on_fast_path += now < fast->fast_until_ms;
    const int op = static_cast<int>(rng() % 100);
    if (op < 70) {
      const Verdict a = fast->Decide(now, 0, c, /*book=*/true);
      const Verdict b = slow->Decide(now, 0, c, /*book=*/true);
      ASSERT_EQ(a.code, b.code) << "call " << i;
      ASSERT_EQ(a.wait_ms, b.wait_ms) << "call " << i;
      (a.code == RT_OK ? admitted : refused)++;
    } else if (op < 85) {
      const Verdict a = fast->Decide(now, 0, c, /*book=*/false);
      const Verdict b = slow->Decide(now, 0, c, /*book=*/false);
      ASSERT_EQ(a.code, b.code) << "call " << i;
      ASSERT_EQ(a.wait_ms, b.wait_ms) << "call " << i;
    } else if (op < 95) {
      fast->Record(now, 0, c);
      slow->Record(now, 0, c);
    } else if (op < 99) {
      const int64_t at = now - static_cast<int64_t>(rng() % 5000);
      const Cost actual{rng() % 70, rng() % 25};
      fast->Settle(now, 0, at, 0, c, actual);
      slow->Settle(now, 0, at, 0, c, actual);
    } else if (op < 100 && rng() % 2 == 0) {
      fast->Block(now + 500);
      slow->Block(now + 500);
    } else {
      // What the provider said: a cap until shortly, and sometimes its
      // limit (in force on the per-minute window when lower).
      const Unit u = static_cast<Unit>(rng() % 4);
      const uint64_t remaining = rng() % 400;
      const uint64_t said = rng() % 3 != 0                ? 0
                            : u == Unit::kRequests ? 300 + rng() % 1000
                                                   : 10000 + rng() % 40000;
      fast->Observe(u, remaining, now + 700, said);
      slow->Observe(u, remaining, now + 700, said);
    }
    if (i % 50021 == 0) {
      // A cost that does not fit anywhere, and one that overflows a sum.
      const Cost huge{uint64_t{1} << 62, uint64_t{1} << 62};
      EXPECT_EQ(fast->Decide(now, 0, huge, true).code, slow->Decide(now, 0, huge, true).code);
      const Cost big{UINT64_MAX, 1};
      fast->Record(now, 0, Cost{1, 1});
      slow->Record(now, 0, Cost{1, 1});
      EXPECT_EQ(fast->Decide(now, 0, big, false).code, slow->Decide(now, 0, big, false).code);
    }
    if (i == 120000) {
      // New limits keep the usage of the windows that stay.
      fast->SetLimits(l, 2);
      slow->SetLimits(l, 2);
    }
    if (i == 150000) {
      fast->Clear();
      slow->Clear();
    }
    if (i % 997 == 0) {
      for (int w = 0; w < fast->nwin; ++w) {
        ASSERT_EQ(fast->Used(w, now, 0), slow->Used(w, now, 0)) << "window " << w << ", call " << i;
      }
    }
  }
  // The comparison means something only if both paths and both outcomes
  // were taken often.
  EXPECT_GT(on_fast_path, 30000);
  EXPECT_GT(admitted, 20000);
  EXPECT_GT(refused, 20000);
}

// A calendar-day window keeps every decision on the full pass (its day is
// on the wall clock, which the fast path does not read).
TEST(WindowSetTest, CalendarWindowsNeverTakeTheFastPath) {
  ModelLimits l;
  WindowLimit day = Sliding(Unit::kRequests, 86400, 3);
  std::snprintf(day.calendar_tz, sizeof day.calendar_tz, "%s", "UTC");
  l.windows = {Sliding(Unit::kRequests, 60, 100), day};
  auto ws = std::make_unique<WindowSet>();
  ws->SetLimits(l, 2);
  const int64_t wall = int64_t{1767225600} * 1000;  // 2026-01-01T00:00Z
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ws->Decide(1000 + i, wall + i, Cost{1, 0}, true).code, RT_OK);
    EXPECT_EQ(ws->fast_until_ms, 0);
  }
  EXPECT_EQ(ws->Decide(1010, wall + 10, Cost{1, 0}, true).code, RT_LIMITED);
  EXPECT_EQ(ws->Decide(1020, wall + 86400000, Cost{1, 0}, true).code, RT_OK);  // the next day
}

// A writer that dies in the middle of Sync (shared memory) leaves windows
// done and not done; Repair finishes, and counts nothing twice.
TEST(WindowSetTest, RepairFinishesAnInterruptedSyncWithoutCountingTwice) {
  ModelLimits l;
  l.windows = {Sliding(Unit::kRequests, 3600, 50), Sliding(Unit::kTokens, 3600, 100000),
               Sliding(Unit::kRequests, 86400, 1000)};
  for (int died_after = 0; died_after <= 3; ++died_after) {
    SCOPED_TRACE(testing::Message() << "died after window " << died_after);
    auto ws = std::make_unique<WindowSet>();
    ws->SetLimits(l, 2);
    for (int i = 0; i < 30; ++i) ASSERT_EQ(ws->Decide(1000, 0, Cost{10, 0}, true).code, RT_OK);
    ASSERT_GT(ws->pending[0], 0u);  // on the fast path
    // What Sync does, window by window, until the writer dies.
    for (int w = 0; w < died_after && w < ws->nwin; ++w) {
      WindowSlot& s = ws->slots[w];
      const uint64_t p = ws->pending[static_cast<int>(s.unit)];
      ws->sync_target = s.window.head_count() + p;
      ws->sync_index = w;
      s.window.Advance(1000);
      s.window.Add(p);
      if (w + 1 < died_after) ws->sync_done |= 1u << w;  // the last one: added, not marked
    }
    ws->Repair();
    EXPECT_EQ(ws->Used(0, 1000, 0), 30u);
    EXPECT_EQ(ws->Used(1, 1000, 0), 300u);
    EXPECT_EQ(ws->Used(2, 1000, 0), 30u);
    EXPECT_EQ(ws->Decide(1000, 0, Cost{10, 0}, true).code, RT_OK);  // 31 of 50
  }
}

}  // namespace
}  // namespace ratetrack
