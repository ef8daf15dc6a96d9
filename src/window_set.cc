#include "window_set.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ratetrack.h"

namespace ratetrack {

namespace {
uint64_t SatAdd(uint64_t a, uint64_t b) { return SlidingWindow::SatAdd(a, b); }

// No local day is longer than 25 hours (a daylight-saving change); a wall
// clock further than this before the counted day's end has stepped back.
constexpr int64_t kLongestDayMs = 26 * 3600 * 1000;

// A calendar window whose day is over starts a new one. A wall clock that
// stepped back before the counted day began keeps the day's count but ends
// it at the next midnight of the clock as it is now: the wait stays within
// a day, and nothing more is admitted than the count allows. (A step forward
// starts a new day: at most one day's worth more, as the README says.)
void RollDay(WindowSlot& s, int64_t wall) {
  if (wall >= s.day_end_wall_ms) {
    s.day_used = 0;
    s.day_end_wall_ms = NextLocalMidnightMs(s.limit.calendar_tz, wall);
  } else if (s.day_end_wall_ms - wall > kLongestDayMs) {
    s.day_end_wall_ms = NextLocalMidnightMs(s.limit.calendar_tz, wall);
  }
}
}  // namespace

void WindowSet::Sync() {
  fast_until_ms = 0;
  ForgetRefusal();
  if ((pending[0] | pending[1] | pending[2] | pending[3]) != 0) {
    // Each step is ordered (a writer killed between two of them leaves a
    // state Repair can finish): the window and its count once done, the
    // add, the mark.
    for (int i = 0; i < nwin; ++i) {
      WindowSlot& s = slots[i];
      // Calendar windows never run with the fast path.
      if (s.calendar || (sync_done >> i & 1) != 0) continue;
      const uint64_t p = pending[static_cast<int>(s.unit)];
      sync_target = SatAdd(s.window.head_count(), p);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      sync_index = i;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      s.window.Add(p);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      sync_done |= uint32_t{1} << i;
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
  }
  for (uint64_t& p : pending) p = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  sync_index = -1;
  sync_done = 0;
}

void WindowSet::Prime(int64_t now) {
  fast_until_ms = 0;
  if (has_calendar || blocked_until_ms > now || caps_until_ms > now) return;
  int64_t until = INT64_MAX;
  uint64_t r[kUnits] = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  for (int i = 0; i < nwin; ++i) {
    WindowSlot& s = slots[i];
    s.window.Advance(now);
    until = std::min(until, s.window.head_end_ms());
    if (s.cap == kUnlimited) continue;
    const uint64_t used = s.window.used();
    // Over its limit (records count whatever the limits say), a window
    // refuses even a request that costs it nothing: the careful path says so.
    if (used > s.cap) return;
    uint64_t& left = r[static_cast<int>(s.unit)];
    left = std::min(left, s.cap - used);
  }
  for (int u = 0; u < kUnits; ++u) room[u] = r[u];
  fast_until_ms = until;
}

Verdict WindowSet::DecideSlow(int64_t now, int64_t wall, const Cost& cost, bool book) {
  Sync();
  const Verdict v = DecideWindows(now, wall, cost, book);
  Prime(now);
  // Remembered until the wait has passed or the set changes (a calendar
  // day's wait is on the wall clock: never remembered).
  if (v.code == RT_LIMITED && !has_calendar) {
    refused_at_ms = now;
    refused_span_ms = v.wait_ms;
    refused_input = cost.input;
    refused_output = cost.output;
  }
  return v;
}

Verdict WindowSet::DecideWindows(int64_t now, int64_t wall, const Cost& cost, bool book) {
  // One cost per unit, indexed by Unit: requests, tokens, input, output.
  const uint64_t costs[kUnits] = {1, cost.In(Unit::kTokens), cost.input, cost.output};
  bool fits = true;
  int64_t wait = 1;
  const int n = nwin;
  for (int i = 0; i < n; ++i) {
    WindowSlot& s = slots[i];
    const uint64_t c = costs[static_cast<int>(s.unit)];
    const uint64_t limit = s.cap;
    if (s.calendar) {
      RollDay(s, wall);
      if (limit == kUnlimited) continue;
      if (c > limit) return {RT_E_TOO_LARGE, RT_WAIT_NEVER};
      if (s.day_used > limit || c > limit - s.day_used) {
        fits = false;
        wait = std::max(wait, s.day_end_wall_ms - wall);
      }
      continue;
    }
    s.window.Advance(now);
    if (limit == kUnlimited) continue;
    if (c > limit) return {RT_E_TOO_LARGE, RT_WAIT_NEVER};
    if (!s.window.Fits(c, limit)) {
      fits = false;
      wait = std::max(wait, s.window.WaitMs(now, c, limit));
    }
  }
  // What the provider said overrides what the windows believe.
  if (blocked_until_ms > now) {
    fits = false;
    wait = std::max(wait, blocked_until_ms - now);
  }
  const bool caps_live = caps_until_ms > now;
  if (caps_live) {
    for (int u = 0; u < kUnits; ++u) {
      const ProviderCap& p = caps[u];
      if (p.until_ms <= now) continue;
      if (p.used > p.remaining || costs[u] > p.remaining - p.used) {
        fits = false;
        wait = std::max(wait, p.until_ms - now);
      }
    }
  }
  if (!fits) return {RT_LIMITED, static_cast<uint64_t>(wait)};
  if (!book) return {RT_OK, 0};
  // Every window was advanced above: book straight into them.
  for (int i = 0; i < n; ++i) {
    WindowSlot& s = slots[i];
    const uint64_t c = costs[static_cast<int>(s.unit)];
    if (s.calendar) {
      s.day_used = SatAdd(s.day_used, c);
    } else {
      s.window.Add(c);
    }
  }
  if (caps_live) {
    for (int u = 0; u < kUnits; ++u) {
      if (caps[u].until_ms > now) caps[u].used = SatAdd(caps[u].used, costs[u]);
    }
  }
  return {RT_OK, 0};
}

void WindowSet::RecordSlow(int64_t now, int64_t wall, const Cost& cost) {
  Sync();
  for (int i = 0; i < nwin; ++i) {
    WindowSlot& s = slots[i];
    const uint64_t c = cost.In(s.unit);
    if (s.calendar) {
      RollDay(s, wall);
      s.day_used = SatAdd(s.day_used, c);
    } else {
      s.window.Advance(now);
      s.window.Add(c);
    }
  }
  if (caps_until_ms > now) {
    for (int u = 0; u < kUnits; ++u) {
      if (caps[u].until_ms > now) {
        caps[u].used = SatAdd(caps[u].used, cost.In(static_cast<Unit>(u)));
      }
    }
  }
  Prime(now);
}

void WindowSet::Settle(int64_t now, int64_t wall, int64_t at, int64_t at_wall,
                       const Cost& granted, const Cost& actual) {
  Sync();
  for (int i = 0; i < nwin; ++i) {
    WindowSlot& s = slots[i];
    if (s.limit.unit == Unit::kRequests) continue;
    const uint64_t g = granted.In(s.limit.unit);
    const uint64_t a = actual.In(s.limit.unit);
    if (g == a) continue;
    const bool top_up = a > g;
    const uint64_t delta = top_up ? a - g : g - a;
    if (s.limit.calendar()) {
      RollDay(s, wall);
      // Only while the grant's day is still the counted one.
      if (NextLocalMidnightMs(s.limit.calendar_tz, at_wall) != s.day_end_wall_ms) continue;
      s.day_used = top_up ? SatAdd(s.day_used, delta) : s.day_used - std::min(s.day_used, delta);
      continue;
    }
    s.window.Advance(now);
    s.window.Adjust(at, delta, top_up);
  }
  // A top-up is spent now as far as the provider's word goes: it counts
  // against a cap in force (a refund gives nothing back to one).
  if (caps_until_ms > now) {
    for (int u = 1; u < kUnits; ++u) {
      const Unit unit = static_cast<Unit>(u);
      const uint64_t g = granted.In(unit);
      const uint64_t a = actual.In(unit);
      if (a > g && caps[u].until_ms > now) caps[u].used = SatAdd(caps[u].used, a - g);
    }
  }
}

uint64_t WindowSet::Used(int i, int64_t now, int64_t wall) {
  Sync();
  WindowSlot& s = slots[i];
  if (s.limit.calendar()) {
    RollDay(s, wall);
    return s.day_used;
  }
  s.window.Advance(now);
  return s.window.used();
}

void WindowSet::Clear() {
  fast_until_ms = 0;
  ForgetRefusal();
  for (uint64_t& p : pending) p = 0;
  for (int i = 0; i < nwin; ++i) {
    slots[i].window.Clear();
    slots[i].day_used = 0;
  }
  for (ProviderCap& p : caps) p = ProviderCap{};
  blocked_until_ms = 0;
  caps_until_ms = 0;
  ApplyObservedLimits();
}

void WindowSet::Observe(Unit unit, uint64_t remaining, int64_t until_ms, uint64_t limit) {
  ProviderCap& p = caps[static_cast<int>(unit)];
  p.until_ms = until_ms;
  p.remaining = remaining;
  p.used = 0;
  caps_until_ms = std::max(caps_until_ms, until_ms);
  Sync();  // the fast path does not know caps: the next decision re-primes
  if (limit != 0 && limit != p.observed_limit) {
    p.observed_limit = limit;
    ApplyObservedLimits();
  }
}

void WindowSet::ApplyObservedLimits() {
  for (int i = 0; i < nwin; ++i) {
    WindowSlot& s = slots[i];
    s.cap = LimitInForce(s.limit.limit, s.limit.seconds, s.limit.calendar(),
                         caps[static_cast<int>(s.limit.unit)].observed_limit);
  }
}

void WindowSet::Block(int64_t until_ms) {
  blocked_until_ms = std::max(blocked_until_ms, until_ms);
  Sync();  // the fast path does not know blocks
}

void WindowSet::SetLimits(const ModelLimits& l, int64_t guard_ms) {
  Sync();
  std::vector<WindowSlot> next(l.windows.size());
  bool calendar = false;
  for (size_t i = 0; i < next.size(); ++i) {
    next[i].limit = l.windows[i];
    next[i].cap = l.windows[i].limit;
    next[i].unit = l.windows[i].unit;
    next[i].calendar = l.windows[i].calendar();
    next[i].window = SlidingWindow(l.windows[i].seconds * 1000, guard_ms);
    next[i].day_end_wall_ms = 0;
    next[i].day_used = 0;
    calendar |= l.windows[i].calendar();
    for (int j = 0; j < nwin; ++j) {
      if (slots[j].limit.SameWindow(l.windows[i])) {
        next[i].window = slots[j].window;
        next[i].day_end_wall_ms = slots[j].day_end_wall_ms;
        next[i].day_used = slots[j].day_used;
      }
    }
  }
  for (size_t i = 0; i < next.size(); ++i) slots[i] = next[i];
  nwin = static_cast<int32_t>(next.size());
  has_calendar = calendar;
  ApplyObservedLimits();
}

bool WindowSet::HasLimits(const ModelLimits& l) const {
  if (static_cast<size_t>(nwin) != l.windows.size()) return false;
  for (int i = 0; i < nwin; ++i) {
    if (!(slots[i].limit == l.windows[i])) return false;
  }
  return true;
}

ModelLimits WindowSet::Limits() const {
  ModelLimits l;
  for (int i = 0; i < nwin; ++i) l.windows.push_back(slots[i].limit);
  return l;
}

void WindowSet::Repair() {
  if (nwin < 0 || nwin > ModelLimits::kMaxWindows) nwin = 0;
  for (int i = 0; i < nwin; ++i) slots[i].window.Repair();
  // A writer killed in Sync: the window it was adding to has the pending
  // amount if its newest bucket reached the target count. Then Sync goes
  // on with the windows not done. (One killed in the fast path left a
  // request partly pending, some units booked and not others: conservative.)
  if (sync_index >= 0 && sync_index < nwin &&
      slots[sync_index].window.head_count() == sync_target) {
    sync_done |= uint32_t{1} << sync_index;
  }
  Sync();
}

std::string DescribeLimits(const ModelLimits& l) {
  std::string out;
  for (const WindowLimit& w : l.windows) {
    if (w.limit == kUnlimited) continue;
    absl::StrAppend(&out, out.empty() ? "" : ", ", WindowName(w), " ", w.limit);
    if (w.calendar()) absl::StrAppend(&out, " (", w.calendar_tz, ")");
  }
  return out.empty() ? "no limits" : out;
}

// ------------------------------------------------ shared-memory validation

namespace {
// One read of a field another process may be writing (no double fetch).
template <typename T>
T Once(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
// A bool or a Unit as its byte: a byte other than 0 or 1 is no bool.
template <typename T>
uint8_t Byte(const T& field) {
  static_assert(sizeof(T) == 1, "a one-byte field");
  return __atomic_load_n(reinterpret_cast<const uint8_t*>(&field), __ATOMIC_RELAXED);
}
// No local day is longer than 25 hours (a daylight-saving change).
constexpr int64_t kDayEndBoundMs = 26 * 3600 * 1000;
bool Terminated(const char (&tz)[sizeof(WindowLimit{}.calendar_tz)]) {
  return std::memchr(tz, '\0', sizeof tz) != nullptr;
}
}  // namespace

std::string WindowSet::LimitsProblem() const {
  const int n = Once(nwin);
  if (n < 0 || n > ModelLimits::kMaxWindows) {
    return absl::StrCat("a window count of ", n, " (at most ", ModelLimits::kMaxWindows, ")");
  }
  for (int i = 0; i < n; ++i) {
    const WindowLimit& l = slots[i].limit;
    const uint8_t unit = Byte(l.unit);
    const int64_t seconds = Once(l.seconds);
    if (unit >= kUnits) return absl::StrCat("window ", i, ": unit ", unit);
    if (!Terminated(l.calendar_tz)) {
      return absl::StrCat("window ", i, ": a time zone name that does not end");
    }
    const bool calendar = Byte(l.calendar_tz[0]) != 0;
    if (seconds < 1 || seconds > kMaxSeconds || (calendar && seconds != 86400)) {
      return absl::StrCat("window ", i, ": a length of ", seconds, " seconds");
    }
  }
  return "";
}

bool WindowSet::Sound(int64_t now) const {
  const int n = Once(nwin);
  if (n < 0 || n > ModelLimits::kMaxWindows || Byte(has_calendar) > 1) return false;
  for (int i = 0; i < n; ++i) {
    const WindowSlot& s = slots[i];
    const uint8_t calendar = Byte(s.calendar);
    if (Byte(s.unit) >= kUnits || calendar > 1 || !s.window.Sound(now)) return false;
    if (calendar != 0 && !Terminated(s.limit.calendar_tz)) return false;
  }
  const int64_t horizon = now + kMaxBlockMs;
  if (Once(blocked_until_ms) > horizon || Once(caps_until_ms) > horizon) return false;
  for (const ProviderCap& p : caps) {
    if (Once(p.until_ms) > horizon) return false;
  }
  return Once(refused_span_ms) <= static_cast<uint64_t>(kMaxWaitMs);
}

bool WindowSet::Consistent(int64_t now, int64_t (*wall_ms)()) const {
  const int n = Once(nwin);
  const uint8_t calendar_flag = Byte(has_calendar);
  if (n < 0 || n > ModelLimits::kMaxWindows || calendar_flag > 1) return false;
  const int64_t wall = calendar_flag != 0 ? wall_ms() : 0;
  bool any_calendar = false;
  int64_t first_end = INT64_MAX;
  uint64_t room_max[kUnits] = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  for (int i = 0; i < n; ++i) {
    const WindowSlot& s = slots[i];
    const uint8_t unit = Byte(s.limit.unit);
    const uint64_t limit = Once(s.limit.limit);
    const int64_t seconds = Once(s.limit.seconds);
    const bool calendar = Byte(s.limit.calendar_tz[0]) != 0;
    if (unit >= kUnits) return false;
    const uint64_t cap = LimitInForce(limit, seconds, calendar, Once(caps[unit].observed_limit));
    if (seconds < 1 || seconds > kMaxSeconds || Byte(s.unit) != unit || Once(s.cap) != cap ||
        Byte(s.calendar) != (calendar ? 1 : 0) || !s.window.Consistent(seconds * 1000, now)) {
      return false;
    }
    if (calendar) {
      if (seconds != 86400 || !Terminated(s.limit.calendar_tz)) return false;
      const int64_t end = Once(s.day_end_wall_ms);
      if (wall > 0 && end > wall && end - wall > kDayEndBoundMs) return false;
      any_calendar = true;
      continue;
    }
    first_end = std::min(first_end, s.window.head_end_ms());
    if (cap != kUnlimited) {
      const uint64_t used = s.window.used();
      room_max[unit] = std::min(room_max[unit], used > cap ? 0 : cap - used);
    }
  }
  if (any_calendar != (calendar_flag != 0)) return false;
  const int64_t horizon = now + kMaxBlockMs;
  const int64_t blocked = Once(blocked_until_ms);
  const int64_t caps_until = Once(caps_until_ms);
  if (blocked > horizon || caps_until > horizon) return false;
  for (int u = 0; u < kUnits; ++u) {
    const int64_t until = Once(caps[u].until_ms);
    if (until > horizon || until > caps_until) return false;
  }
  const int64_t fast_until = Once(fast_until_ms);
  if (fast_until != 0) {
    if (any_calendar || fast_until > first_end || blocked > now || caps_until > now) return false;
    for (int u = 0; u < kUnits; ++u) {
      const uint64_t room_u = Once(room[u]);
      if (room_u > room_max[u] || Once(pending[u]) > room_u) return false;
    }
  }
  if (Once(refused_span_ms) > static_cast<uint64_t>(kMaxWaitMs)) return false;
  return Once(sync_index) == -1 && Once(sync_done) == 0;
}

std::string WindowSet::Sanitize(int64_t now, int64_t wall, bool deep, bool writer_died) {
  std::string fixed;
  const auto note = [&fixed](absl::string_view what) {
    absl::StrAppend(&fixed, fixed.empty() ? "" : "; ", what);
  };
  const int n = Once(nwin);
  if (n < 0 || n > ModelLimits::kMaxWindows) return "unreadable limits";  // LimitsProblem
  bool any_calendar = false;
  int64_t first_end = INT64_MAX;  // the earliest end of a sliding window's newest bucket
  uint64_t room_max[kUnits] = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  for (int i = 0; i < n; ++i) {
    WindowSlot& s = slots[i];
    const uint8_t unit = Byte(s.limit.unit);
    const uint64_t limit = Once(s.limit.limit);
    const int64_t seconds = Once(s.limit.seconds);
    const bool calendar = Byte(s.limit.calendar_tz[0]) != 0;
    if (unit >= kUnits || seconds < 1 || seconds > kMaxSeconds) return "unreadable limits";
    const uint64_t cap = LimitInForce(limit, seconds, calendar, Once(caps[unit].observed_limit));
    // The hot path's copies of the limit.
    if (Byte(s.unit) != unit || Once(s.cap) != cap || Byte(s.calendar) != (calendar ? 1 : 0)) {
      s.unit = static_cast<Unit>(unit);
      s.cap = cap;
      s.calendar = calendar;
      note(absl::StrCat("window ", i, ": its copy of the limit"));
    }
    any_calendar |= calendar;
    if (s.window.Sanitize(seconds * 1000, now, deep)) {
      note(absl::StrCat("window ", i, ": its buckets"));
    }
    if (calendar) {
      const int64_t end = Once(s.day_end_wall_ms);
      if (wall > 0 && end > wall && end - wall > kDayEndBoundMs) {
        s.day_end_wall_ms = NextLocalMidnightMs(s.limit.calendar_tz, wall);
        note(absl::StrCat("window ", i, ": the end of its day"));
      }
      continue;
    }
    first_end = std::min(first_end, s.window.head_end_ms());
    if (cap != kUnlimited) {
      const uint64_t used = s.window.used();
      uint64_t& r = room_max[unit];
      r = std::min(r, used > cap ? 0 : cap - used);
    }
  }
  if (Byte(has_calendar) != (any_calendar ? 1 : 0)) {
    has_calendar = any_calendar;
    note("has_calendar");
  }
  // What the provider said lasts at most a day.
  const int64_t horizon = now + kMaxBlockMs;
  if (Once(blocked_until_ms) > horizon) {
    blocked_until_ms = 0;
    note("a block beyond a day");
  }
  int64_t caps_end = 0;
  for (int u = 0; u < kUnits; ++u) {
    if (Once(caps[u].until_ms) > horizon) {
      caps[u].until_ms = 0;
      caps[u].remaining = 0;
      caps[u].used = 0;
      note("a provider cap beyond a day");
    }
    caps_end = std::max(caps_end, caps[u].until_ms);
  }
  const int64_t caps_until = Once(caps_until_ms);
  if (caps_until < caps_end || caps_until > horizon) {
    caps_until_ms = caps_end;
    note("the end of the provider caps");
  }
  // The fast path: primed at a time <= now with no block, cap or calendar
  // day in force, its room what every window of a unit still took then, its
  // end the earliest end of a newest bucket; it books only up to its room.
  const int64_t fast_until = Once(fast_until_ms);
  if (fast_until != 0) {
    bool holds = !any_calendar && fast_until <= first_end && blocked_until_ms <= now &&
                 caps_until_ms <= now;
    for (int u = 0; u < kUnits; ++u) {
      const uint64_t room_u = Once(room[u]);
      holds = holds && room_u <= room_max[u] && Once(pending[u]) <= room_u;
    }
    if (!holds) {
      fast_until_ms = 0;  // the next operation's Sync books what is pending
      note("the fast path");
    }
  }
  // The refusal remembered is forgotten whatever it says (what it follows
  // from may just have been repaired); one beyond the longest wait is said.
  if (Once(refused_span_ms) > static_cast<uint64_t>(kMaxWaitMs)) note("a remembered refusal");
  ForgetRefusal();
  if (writer_died) {
    // Repair finishes a Sync with these: only their range is checked.
    const int32_t index = Once(sync_index);
    if (index < -1 || index >= n) sync_index = -1;
    sync_done = Once(sync_done) & ((uint32_t{1} << n) - 1);  // n <= kMaxWindows
  } else if (Once(sync_index) != -1 || Once(sync_done) != 0) {
    // Only a writer that died leaves a Sync half done (EOWNERDEAD). Done
    // again from the start: what is pending is counted, maybe twice.
    sync_index = -1;
    sync_done = 0;
    note("Sync's bookkeeping");
  }
  return fixed;
}

}  // namespace ratetrack
