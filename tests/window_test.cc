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

// A refusal remembered must answer exactly as the full pass would, for as
// long as it is used: three sets see the same calls, `cached` as the
// tracker runs it, `uncached` on the fast path but forgetting every refusal
// before each call (it never answers from one), `full` kept off both (its
// usage is read before every call). Small limits and costs drawn mostly
// from a few values make long runs of refusals of the same cost between
// changes, with time moving by a few ms; every change the tracker makes
// comes now and then: admissions, records, settles (refunds and top-ups),
// provider reports, 429 blocks, a clear, new limits.
TEST(WindowSetTest, RememberedRefusalsAnswerExactlyAsTheWindows) {
  ModelLimits tight, loose;
  tight.windows = {Sliding(Unit::kRequests, 2, 60),      Sliding(Unit::kTokens, 2, 6000),
                   Sliding(Unit::kInputTokens, 10, 25000), Sliding(Unit::kRequests, 30, 700),
                   Sliding(Unit::kOutputTokens, 5, 4000), Sliding(Unit::kTokens, 60, kUnlimited)};
  loose.windows = {Sliding(Unit::kRequests, 2, 100), Sliding(Unit::kTokens, 2, 9000),
                   Sliding(Unit::kInputTokens, 10, 30000), Sliding(Unit::kOutputTokens, 7, 5000)};
  auto cached = std::make_unique<WindowSet>();
  auto uncached = std::make_unique<WindowSet>();
  auto full = std::make_unique<WindowSet>();
  for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) ws->SetLimits(tight, 2);
  const Cost usual[] = {{60, 20}, {100, 0}, {1, 1}, {300, 150}};
  std::mt19937_64 rng(28);
  int64_t now = 1000;
  int remembered = 0, refused = 0, admitted = 0;
  Cost polled = usual[0];  // a caller polling with the same request
  for (int i = 0; i < 300000; ++i) {
    if (rng() % 4 == 0) now += static_cast<int64_t>(rng() % 60);
    if (rng() % 30 == 0) polled = usual[rng() % 4];
    const uint64_t pick = rng() % 10;
    const Cost c = pick < 7 ? polled : pick < 9 ? usual[rng() % 4] : Cost{rng() % 400, rng() % 200};
    const int op = static_cast<int>(rng() % 1000);
    full->Used(0, now, 0);
    uncached->ForgetRefusal();
    if (op < 985) {
      const bool book = op % 3 != 0;
      const uint64_t gone = static_cast<uint64_t>(now - cached->refused_at_ms);
      const bool from_memory = gone < cached->refused_span_ms && c.input == cached->refused_input &&
                               c.output == cached->refused_output;
      const Verdict a = cached->Decide(now, 0, c, book);
      const Verdict b = uncached->Decide(now, 0, c, book);
      const Verdict d = full->Decide(now, 0, c, book);
      ASSERT_EQ(a.code, d.code) << "call " << i << (from_memory ? " (remembered)" : "");
      ASSERT_EQ(a.wait_ms, d.wait_ms) << "call " << i << (from_memory ? " (remembered)" : "");
      ASSERT_EQ(b.code, d.code) << "call " << i;
      ASSERT_EQ(b.wait_ms, d.wait_ms) << "call " << i;
      remembered += from_memory;
      refused += a.code == RT_LIMITED;
      admitted += a.code == RT_OK;
    } else if (op < 989) {
      for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) ws->Record(now, 0, c);
    } else if (op < 994) {
      // A settle of a grant up to 3 s old: a refund or a top-up.
      const int64_t at = now - static_cast<int64_t>(rng() % 3000);
      const Cost actual{rng() % 400, rng() % 200};
      for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) {
        ws->Settle(now, 0, at, 0, c, actual);
      }
    } else if (op < 996) {
      const Unit u = static_cast<Unit>(rng() % 4);
      const uint64_t remaining = rng() % 600;
      const uint64_t said = rng() % 2 == 0 ? 0 : u == Unit::kRequests ? 5 + rng() % 20 : 300 + rng() % 2000;
      const int64_t until = now + static_cast<int64_t>(rng() % 1500);
      for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) {
        ws->Observe(u, remaining, until, said);
      }
    } else if (op < 998) {
      const int64_t until = now + static_cast<int64_t>(rng() % 800);
      for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) ws->Block(until);
    } else if (op < 999) {
      const ModelLimits& l = rng() % 2 == 0 ? tight : loose;
      for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) ws->SetLimits(l, 2);
    } else if (rng() % 4 == 0) {
      for (WindowSet* ws : {cached.get(), uncached.get(), full.get()}) ws->Clear();
    }
    if (i % 1009 == 0) {
      for (int w = 0; w < cached->nwin; ++w) {
        ASSERT_EQ(cached->Used(w, now, 0), full->Used(w, now, 0)) << "window " << w << ", call " << i;
      }
    }
  }
  // Meaningful only if refusals were answered from memory often, and both
  // outcomes came often.
  EXPECT_GT(remembered, 50000);
  EXPECT_GT(refused, 100000);
  EXPECT_GT(admitted, 20000);
  std::printf("remembered %d of %d refusals (%d admitted)\n", remembered, refused, admitted);
}

// The refusal remembered is for the exact cost, and only until the wait has
// passed: the same cost later waits less by the time gone; another cost
// takes the full pass; any change forgets it.
TEST(WindowSetTest, ARefusalIsRememberedForItsCostUntilItsWaitPasses) {
  ModelLimits l;
  l.windows = {Sliding(Unit::kRequests, 60, 2), Sliding(Unit::kTokens, 60, 1000)};
  auto ws = std::make_unique<WindowSet>();
  ws->SetLimits(l, 0);
  ASSERT_EQ(ws->Decide(1000, 0, Cost{100, 0}, true).code, RT_OK);
  ASSERT_EQ(ws->Decide(1500, 0, Cost{100, 0}, true).code, RT_OK);
  const Verdict first = ws->Decide(2000, 0, Cost{100, 0}, true);
  ASSERT_EQ(first.code, RT_LIMITED);
  EXPECT_EQ(ws->refused_span_ms, first.wait_ms);
  const Verdict later = ws->Decide(2700, 0, Cost{100, 0}, false);
  EXPECT_EQ(later.code, RT_LIMITED);
  EXPECT_EQ(later.wait_ms, first.wait_ms - 700);
  EXPECT_EQ(ws->refused_at_ms, 2000);  // answered from memory
  // Another cost: the full pass, which remembers that one instead.
  EXPECT_EQ(ws->Decide(2800, 0, Cost{5, 5}, false).code, RT_LIMITED);
  EXPECT_EQ(ws->refused_at_ms, 2800);
  // A change forgets it.
  ws->Settle(2900, 0, 1000, 0, Cost{100, 0}, Cost{10, 0});
  EXPECT_EQ(ws->refused_span_ms, 0u);
  // Once the wait has passed, the full pass decides (and admits).
  ws->Clear();
  EXPECT_EQ(ws->Decide(3000, 0, Cost{1, 0}, true).code, RT_OK);
  EXPECT_EQ(ws->Decide(3000, 0, Cost{1, 0}, true).code, RT_OK);
  const Verdict full = ws->Decide(3000, 0, Cost{1, 0}, true);
  ASSERT_EQ(full.code, RT_LIMITED);
  const int64_t end = 3000 + static_cast<int64_t>(full.wait_ms);
  EXPECT_EQ(ws->Decide(end - 1, 0, Cost{1, 0}, true).wait_ms, 1u);
  EXPECT_EQ(ws->Decide(end, 0, Cost{1, 0}, true).code, RT_OK);
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
