// WindowSet: every window of one model, what the provider said about it,
// and the decisions over them.
//
// Plain data with no pointers, so the same value works in process memory
// (the "memory" backend) and in a shared-memory segment mapped at different
// addresses by different processes (the "shm:" backend). The caller holds
// whatever lock guards the set, and passes the time: `now` in ms of the
// monotonic clock, and `wall` in Unix ms (needed only by calendar-day
// windows: has_calendar).
#ifndef RATETRACK_SRC_WINDOW_SET_H_
#define RATETRACK_SRC_WINDOW_SET_H_

#include <cstdint>
#include <string>
#include <type_traits>

#include "config.h"
#include "ratetrack.h"
#include "sliding_window.h"

namespace ratetrack {

// Outcome of one decision on a model's windows. Fields are all 4 or 8
// bytes wide: a struct of mixed widths, written field by field and then
// copied with vector moves, stalls store forwarding on every call.
struct Decision {
  int32_t code;          // RT_OK, RT_LIMITED, RT_E_TOO_LARGE (or another status)
  uint32_t degraded;     // 1: decided by the on_error policy (Redis failed)
  uint64_t wait_ms;      // RT_LIMITED: > 0; RT_E_TOO_LARGE: RT_WAIT_NEVER
  uint64_t grant;        // RT_OK from an acquire that asked for one: the ticket
};

// What the windows alone say: 16 bytes, returned in two registers.
struct Verdict {
  int64_t code;
  uint64_t wait_ms;
};

// A window and its limit. The hot path reads only `cap`, `unit`, `calendar`
// and the window's first fields: one cache line; `limit` (with the time
// zone's name) is the full description, for configuration and stats.
struct alignas(64) WindowSlot {
  uint64_t cap;             // the limit in force: LimitInForce(limit, the unit's observed)
  Unit unit;                // == limit.unit
  bool calendar;            // == limit.calendar()
  SlidingWindow window;     // sliding windows
  WindowLimit limit;
  int64_t day_end_wall_ms;  // calendar windows: when the counted day ends
  uint64_t day_used;        // calendar windows: used this local day
};

// What the provider reported for one unit: at most `remaining` more until
// `until_ms` (monotonic), whatever the windows say.
struct ProviderCap {
  int64_t until_ms;
  uint64_t remaining;
  uint64_t used;            // admitted since the report
  uint64_t observed_limit;  // the provider's own limit (0: not reported)
};

// The limit in force for a window: its own, or the provider's limit for
// its unit when that is lower (`observed`, 0: none reported). Providers'
// headers describe their per-minute limits, so only the 60-second sliding
// window of a unit adopts one: the tracker never believes in more room than
// the provider said, and a higher report is only shown.
inline uint64_t LimitInForce(uint64_t limit, int64_t seconds, bool calendar, uint64_t observed) {
  if (observed == 0 || seconds != 60 || calendar) return limit;
  return observed < limit ? observed : limit;
}

// The fast path. Between two ticks of the windows (until the earliest
// moment any sliding window's newest bucket ends), with no calendar window,
// no provider cap and no 429 block in force, a decision needs only, per
// unit, how much every window of that unit still takes ("room", computed
// when the fast path is primed) and what has been booked since ("pending",
// not yet written into the windows). A request fits every window of unit u
// exactly when pending[u] + cost[u] <= room[u], so the fast path decides as
// the windows would, with four comparisons instead of a pass over every
// window. Every other operation first moves the pending amounts into the
// windows (Sync), into each window's newest bucket, where they belong:
// they were booked before that bucket ended.
//
// A refusal is remembered the same way. With no calendar window, what a
// refusal says (refused, and the wait) follows from the windows, the block
// and the caps alone, and while nothing changes them it stays true: a
// refused request of the same cost is refused until the wait has passed,
// with the wait shortened by the time gone (every source of the wait ends
// at a fixed time, and one that did not refuse does not start to). So the
// full pass remembers its refusal (the cost, when, for how long), and the
// fast path answers the same request from it until then; anything that
// changes the set (a booking on the fast path, Sync, which every other
// change runs first, Clear, Sanitize) forgets it. Only the exact cost is
// answered: a larger one is refused too, but may wait longer, and a smaller
// one may fit.
struct WindowSet {
  static constexpr int kUnits = 4;  // indexed by Unit

  int32_t nwin = 0;
  bool has_calendar = false;
  int64_t fast_until_ms = 0;     // the fast path holds while now < this
  uint64_t room[kUnits] = {};    // pending[u] <= room[u] while it holds
  uint64_t pending[kUnits] = {};
  // The refusal remembered: a request of (refused_input, refused_output) is
  // refused while now - refused_at_ms < refused_span_ms (unsigned: never
  // before refused_at_ms), with a wait of refused_at_ms + refused_span_ms -
  // now. refused_span_ms == 0: none.
  int64_t refused_at_ms = 0;
  uint64_t refused_span_ms = 0;
  uint64_t refused_input = 0;
  uint64_t refused_output = 0;
  // Sync in progress (shared memory: its writer may die half-way): windows
  // done (bit i), and the one being done with its newest bucket's count
  // once done. Repair finishes the job, counting nothing twice.
  uint32_t sync_done = 0;
  int32_t sync_index = -1;
  uint64_t sync_target = 0;
  int64_t blocked_until_ms = 0;  // a 429: refused until then (monotonic)
  int64_t caps_until_ms = 0;     // the latest cap's end: none live before it
  ProviderCap caps[kUnits] = {};
  WindowSlot slots[ModelLimits::kMaxWindows];

  // Checks every window at `now`; with `book`, books the request when it
  // fits. Never partial: a request refused by one window consumes nothing
  // from the others. For a set in this process's memory (one in shared
  // memory: DecideFast, then ShmSegment::DecideSlow, which checks it).
  Verdict Decide(int64_t now, int64_t wall, const Cost& cost, bool book) {
    const Verdict v = DecideFast(now, cost, book);
    if (__builtin_expect(v.code != kUndecided, 1)) return v;
    return DecideSlow(now, wall, cost, book);
  }
  // What DecideFast answers when only the slow path can decide.
  static constexpr int64_t kUndecided = -100;
  // The fast path alone: RT_OK (booked with `book`) when the fast path
  // holds and has room, RT_LIMITED and the wait when the request is the
  // refusal remembered and it still holds, else kUndecided. (A set in shared
  // memory: a remembered wait beyond kMaxWaitMs is not to be used.)
  __attribute__((always_inline)) Verdict DecideFast(int64_t now, const Cost& cost, bool book) {
    // Costs that could make input + output wrap take the careful path.
    if (__builtin_expect(FastRoom(now, cost), 1)) {
      if (book) AddPending(cost);
      return {RT_OK, 0};
    }
    const uint64_t gone = static_cast<uint64_t>(now) - static_cast<uint64_t>(refused_at_ms);
    if ((gone < refused_span_ms) & (cost.input == refused_input) &
        (cost.output == refused_output)) {
      return {RT_LIMITED, refused_span_ms - gone};
    }
    return {kUndecided, 0};
  }
  // Forgets the refusal remembered (the next one of that cost takes the
  // full pass). Every change of the set does this.
  void ForgetRefusal() { refused_span_ms = 0; }
  // The full pass (Sync, every window, Prime). The caller knows the set is
  // sound: one in this process's memory always is; one in shared memory,
  // which another process may have written, goes through
  // ShmSegment::DecideSlow, which checks it first.
  Verdict DecideSlow(int64_t now, int64_t wall, const Cost& cost, bool book);
  // Books a request that happened, whatever the limits say.
  void Record(int64_t now, int64_t wall, const Cost& cost) {
    // Booked regardless of the limits, but the fast path's room must stay.
    if (__builtin_expect(FastRoom(now, cost), 1)) {
      AddPending(cost);
      return;
    }
    RecordSlow(now, wall, cost);
  }
  // Books the difference between granted and actual at the grant's time `at`
  // (calendar windows: while the grant's day is still counted).
  void Settle(int64_t now, int64_t wall, int64_t at, int64_t at_wall,
              const Cost& granted, const Cost& actual);
  void Clear();
  uint64_t Used(int i, int64_t now, int64_t wall);

  // What the provider said: `remaining` more of `unit` until `until_ms`, and
  // its limit (0 if not said). A newer report replaces an older one.
  void Observe(Unit unit, uint64_t remaining, int64_t until_ms, uint64_t limit);
  // A 429: refused until `until_ms` (an earlier block is extended only).
  void Block(int64_t until_ms);

  // Installs new limits; windows that stay (same unit and length) keep their
  // usage.
  void SetLimits(const ModelLimits& limits, int64_t guard_ms);
  bool HasLimits(const ModelLimits& limits) const;
  ModelLimits Limits() const;

  // Restores the invariants after a writer died in the middle of an update
  // (a robust mutex reported EOWNERDEAD).
  void Repair();

  // Validation of a set read from shared memory ("shm:" backend), where
  // another process, a bug or a bad disk may have written anything. Every
  // field is read once into a local, checked, and the local used.
  //
  // The longest window a configuration allows (config.cc), and the longest
  // a provider's block or cap lasts (the tracker's kMaxBlockMs).
  static constexpr int64_t kMaxSeconds = 31 * 86400;
  static constexpr int64_t kMaxBlockMs = 86400 * 1000;
  // The longest wait a refusal can give (no calendar window): the longest
  // window plus its resolution (at most a 60th of it and the guard), with
  // room to spare; more than kMaxBlockMs.
  static constexpr int64_t kMaxWaitMs = kMaxSeconds * 1000 / 30 * 31;
  // Why the limits cannot be read (empty: they can): a window count beyond
  // kMaxWindows, a unit, a length or a time zone out of range. The limits
  // are the model's identity in the segment: such a set is refused (its
  // model's calls fail), never guessed at.
  std::string LimitsProblem() const;
  // Whether every operation at `now` stays in bounds and no wait exceeds
  // the longest window a configuration allows (plus its resolution) or a
  // day (a provider's word): window count, units, each window Sound, the
  // ends of blocks and caps. Cheap (no division): ShmSegment::DecideSlow
  // checks it before the full pass of a shared set, so a set someone wrote
  // since this process last locked it is never used unchecked (it is made
  // Sound with Sanitize, or refused). Sets in this process's memory are
  // never checked: they are always sound.
  bool Sound(int64_t now) const;
  // Makes the rest of the state consistent with the limits, in place (call
  // only when LimitsProblem() is empty), at `now` (monotonic ms) and `wall`
  // (Unix ms; 0: unknown, the calendar days are left to RollDay):
  //   - a window's copy of its limit (cap, unit, calendar) and has_calendar
  //     are rewritten from the limits;
  //   - a window whose shape does not match its length, or whose newest
  //     bucket is later than now, is emptied (SlidingWindow::Sanitize; with
  //     `deep`, sums are recounted from the buckets);
  //   - a calendar day that ends more than 26 hours after `wall` (no local
  //     day is longer) ends at the next local midnight instead (count kept);
  //   - a block or a provider cap that ends more than kMaxBlockMs after now
  //     is dropped;
  //   - the fast path is ended (what it booked moves into the windows) when
  //     its room, pending amounts or end disagree with the windows;
  //   - the refusal remembered is forgotten;
  //   - Sync's bookkeeping is cleared unless `writer_died` (Repair uses it).
  // Afterwards no operation crashes or overflows, and no wait is longer than
  // the longest window plus its resolution, a calendar day's remainder, or a
  // day (a provider's block). Counts are kept whatever their size (they
  // saturate): a count too large refuses for at most the window's length.
  // Returns what was repaired, for a message (empty: nothing).
  std::string Sanitize(int64_t now, int64_t wall, bool deep, bool writer_died);
  // Whether LimitsProblem() is empty and Sanitize(now, wall, false, false)
  // would change nothing: read only and cheap, for every lock of a slot
  // (the two above run only when it says no). `wall` is read only when the
  // set says it has a calendar day.
  bool Consistent(int64_t now, int64_t (*wall)()) const;

 private:
  // Whether the fast path holds at `now` and every unit has room for `cost`
  // (costs that could make input + output wrap take the careful path).
  __attribute__((always_inline)) bool FastRoom(int64_t now, const Cost& cost) const {
    if (now >= fast_until_ms || ((cost.input | cost.output) >> 62) != 0) return false;
    return (pending[0] < room[0]) & (cost.input + cost.output <= room[1] - pending[1]) &
           (cost.input <= room[2] - pending[2]) & (cost.output <= room[3] - pending[3]);
  }
  __attribute__((always_inline)) void AddPending(const Cost& cost) {
    ForgetRefusal();
    pending[0] += 1;
    pending[1] += cost.input + cost.output;
    pending[2] += cost.input;
    pending[3] += cost.output;
  }
  // Moves the fast path's pending amounts into the windows and ends it.
  void Sync();
  // Starts the fast path at `now` when it can hold (windows advanced to
  // `now`, nothing pending).
  void Prime(int64_t now);
  Verdict DecideWindows(int64_t now, int64_t wall, const Cost& cost, bool book);
  void RecordSlow(int64_t now, int64_t wall, const Cost& cost);
  // Sets every window's cap from its limit and what the provider reported.
  void ApplyObservedLimits();
};

static_assert(ModelLimits::kMaxWindows <= 32, "WindowSet::sync_done has a bit per window");
static_assert(std::is_trivially_copyable<WindowSet>::value,
              "WindowSet lives in shared memory");

// "requests_per_minute 500, tokens_per_minute 200000" (for messages).
std::string DescribeLimits(const ModelLimits& limits);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_WINDOW_SET_H_
