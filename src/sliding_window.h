// SlidingWindow: the window arithmetic, a pure value type.
//
// A window of `span` milliseconds is cut into buckets of `width` ms, about
// (span + guard) / 60. Each bucket counts what was admitted while it was the
// newest. A check at time t counts the newest `ring` buckets, which reach
// back at least span + guard from t. So in every interval of `span` ms at
// most `limit` units are admitted, never more. The price is resolution: an
// admitted unit keeps counting for up to `resolution_ms() = ring * width -
// span` after it left the window (about 1/60 of the span: 1 s for a minute,
// 24 min for a day). `guard` absorbs the clock's own resolution (a coarse
// clock can lag real time by a tick).
//
// No clock, no lock, no allocation: time is an argument, the caller holds
// whatever lock protects the value. Times are non-negative milliseconds of
// one monotonic clock. A time older than the newest bucket is booked into the
// newest bucket (it will count a little longer: conservative).
#ifndef RATETRACK_SRC_SLIDING_WINDOW_H_
#define RATETRACK_SRC_SLIDING_WINDOW_H_

#include <cstdint>

namespace ratetrack {

class SlidingWindow {
 public:
  static constexpr int kTargetBuckets = 60;
  static constexpr int kMaxRing = 64;

  SlidingWindow() : SlidingWindow(60000, 0) {}
  SlidingWindow(int64_t span_ms, int64_t guard_ms);

  int64_t span_ms() const { return span_ms_; }
  int64_t width_ms() const { return width_ms_; }
  int ring() const { return ring_; }
  // How long after it leaves the window a unit may still count, at most.
  int64_t resolution_ms() const { return ring_ * width_ms_ - span_ms_; }

  // Moves the window to `now_ms`, dropping buckets that no longer count.
  void Advance(int64_t now_ms) {
    if (now_ms < head_end_ms_) return;
    AdvanceSlow(now_ms);
  }

  // The end of the newest bucket: Advance is a no-op before then.
  int64_t head_end_ms() const { return head_end_ms_; }

  // The newest bucket's count.
  uint64_t head_count() const { return head_count_; }

  // Units currently counted (call Advance first).
  uint64_t used() const { return used_; }

  // Whether `cost` more units stay within `limit` (call Advance first).
  bool Fits(uint64_t cost, uint64_t limit) const {
    return used_ <= limit && cost <= limit - used_;
  }

  // Books `cost` units in the newest bucket (saturating; call Advance first).
  void Add(uint64_t cost) {
    head_count_ = SatAdd(head_count_, cost);
    used_ = SatAdd(used_, cost);
  }

  // Milliseconds from `now_ms` until `cost` more units fit under `limit`,
  // assuming nothing else is added (call Advance(now_ms) first). 0 if they
  // fit now; -1 if they never can (cost > limit).
  int64_t WaitMs(int64_t now_ms, uint64_t cost, uint64_t limit) const;

  // Books `amount` more (top_up) or fewer (!top_up, clamped at 0) units at
  // time `at_ms`, a past time of the same clock. Only while the bucket of
  // `at_ms` still counts; otherwise nothing changes (the units have left the
  // window). Returns whether the bucket still counted. Call Advance first.
  bool Adjust(int64_t at_ms, uint64_t amount, bool top_up);

  // Forgets everything.
  void Clear();

  // Restores the invariants after a writer died mid-update (shared memory):
  // the newest bucket's count in head_count_ only, head_end_ms_ matching
  // head_, used_ the sum of the buckets.
  void Repair();

  // Validation of a window read from shared memory, where another process,
  // a bug or a bad disk may have written anything (WindowSet's checks; an
  // in-process window is always Sound and Consistent).
  //
  // The largest clock resolution a window is built with (guard).
  static constexpr int64_t kMaxGuardMs = 1000;
  // Whether every operation on this value stays in bounds at `now_ms` and
  // any later time, and no wait exceeds its own length plus resolution: a
  // length of at most kMaxSpanMs, the width and ring its length and guard
  // give, a newest bucket that is not negative and not later than now.
  // Cheap (no division): for the slow path of every decision.
  static constexpr int64_t kMaxSpanMs = int64_t{31} * 86400 * 1000;
  bool Sound(int64_t now_ms) const;
  // Makes the value consistent with a window of `span_ms` at `now_ms`, in
  // place: a shape that is not the one SlidingWindow(span_ms, guard) has
  // (length, width, ring, or a guard beyond kMaxGuardMs), or a newest bucket
  // later than `now_ms`, empties the window (its counts cannot be placed);
  // the newest bucket's end is put back in line with it. `deep` (after a
  // writer died, or once when a process first meets the window) also does
  // what Repair does: a half-moved bucket is put back and the sum recounted
  // from the buckets. Every field is read once. Afterwards WaitMs(now' >=
  // now_ms) is at most span + resolution_ms(). Returns whether anything
  // changed.
  bool Sanitize(int64_t span_ms, int64_t now_ms, bool deep);
  // Whether Sanitize(span_ms, now_ms, false) would leave the value as it
  // is: read only, and cheap (no division), for every lock of a slot.
  bool Consistent(int64_t span_ms, int64_t now_ms) const;

  static uint64_t SatAdd(uint64_t a, uint64_t b) {
    uint64_t s = a + b;
    return s < a ? UINT64_MAX : s;
  }

 private:
  friend class SlidingWindowTestPeer;  // tests/shm_test.cc: torn states
  void AdvanceSlow(int64_t now_ms);
  // The bucket width and ring of a window that reaches `reach` ms back.
  static void Shape(int64_t reach, int64_t* width, int* ring);
  // Whether `width` and `ring` are Shape(reach)'s, told by multiplying.
  static bool HasShape(int64_t reach, int64_t width, int ring);
  void Resum();
  uint64_t Count(int64_t bucket) const {
    return bucket == head_ ? head_count_ : counts_[bucket % ring_];
  }

  // The hot path reads and writes only these three (one cache line with the
  // caller's limit): the newest bucket's count lives here, not in counts_,
  // until the window moves on.
  int64_t head_end_ms_ = 0;  // (head_ + 1) * width_ms_: first time past head
  uint64_t used_ = 0;        // sum over the ring, newest bucket included
  uint64_t head_count_ = 0;  // the newest bucket's count
  int64_t head_ = 0;         // bucket index (time / width) of the newest bucket
  int64_t span_ms_;
  int64_t guard_ms_;
  int64_t width_ms_;
  int ring_;
  uint64_t counts_[kMaxRing] = {};  // older buckets; counts_[head_ % ring_] is 0
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_SLIDING_WINDOW_H_
