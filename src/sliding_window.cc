#include "sliding_window.h"

#include <algorithm>

namespace ratetrack {

SlidingWindow::SlidingWindow(int64_t span_ms, int64_t guard_ms)
    : span_ms_(std::max<int64_t>(span_ms, 1)),
      guard_ms_(std::clamp<int64_t>(guard_ms, 0, kMaxGuardMs)) {
  // kTargetBuckets buckets cover span + guard; one more is the partly
  // elapsed newest bucket.
  Shape(span_ms_ + guard_ms_, &width_ms_, &ring_);
  Clear();
}

void SlidingWindow::Shape(int64_t reach, int64_t* width, int* ring) {
  *width = (reach + kTargetBuckets - 1) / kTargetBuckets;
  const int64_t n = (reach + *width - 1) / *width;  // <= kTargetBuckets
  *ring = static_cast<int>(n) + 1;
}

void SlidingWindow::Clear() {
  for (int i = 0; i < ring_; ++i) counts_[i] = 0;
  used_ = 0;
  head_count_ = 0;
  head_ = 0;
  head_end_ms_ = 0;  // the first Advance positions the ring
}

// A saturated sum no longer equals the sum of the buckets; recount it.
void SlidingWindow::Resum() {
  used_ = head_count_;
  for (int i = 0; i < ring_; ++i) used_ = SatAdd(used_, counts_[i]);
}

void SlidingWindow::Repair() {
  if (width_ms_ <= 0 || ring_ < 2 || ring_ > kMaxRing) {
    *this = SlidingWindow(span_ms_ > 0 ? span_ms_ : 60000, 0);
    return;
  }
  if (head_ < 0) head_ = 0;
  // AdvanceSlow copies head_count_ into the ring before moving head_; a
  // writer killed in between left the same count in both places.
  uint64_t& stray = counts_[head_ % ring_];
  head_count_ = std::max(head_count_, stray);
  stray = 0;
  if (head_end_ms_ != 0) head_end_ms_ = (head_ + 1) * width_ms_;
  Resum();
}

void SlidingWindow::AdvanceSlow(int64_t now_ms) {
  const int64_t k = now_ms / width_ms_;
  if (head_end_ms_ == 0 || k - head_ >= ring_) {
    // First use, or every bucket has expired.
    for (int i = 0; i < ring_; ++i) counts_[i] = 0;
    used_ = 0;
  } else {
    counts_[head_ % ring_] = head_count_;  // the old head joins the ring
    const bool saturated = used_ == UINT64_MAX;
    for (int64_t j = head_ + 1; j <= k; ++j) {
      int slot = static_cast<int>(j % ring_);
      used_ -= std::min(used_, counts_[slot]);
      counts_[slot] = 0;
    }
    head_count_ = 0;
    if (saturated) Resum();
  }
  head_count_ = 0;
  head_ = k;
  head_end_ms_ = (k + 1) * width_ms_;
}

int64_t SlidingWindow::WaitMs(int64_t now_ms, uint64_t cost,
                              uint64_t limit) const {
  if (cost > limit) return -1;
  if (Fits(cost, limit)) return 0;
  // Oldest bucket first: bucket j stops counting at (j + ring) * width.
  uint64_t remaining = used_;
  for (int64_t j = head_ - ring_ + 1; j <= head_; ++j) {
    if (j < 0) continue;
    remaining -= std::min(remaining, Count(j));
    if (remaining <= limit && cost <= limit - remaining) {
      int64_t at = (j + ring_) * width_ms_;
      return std::max<int64_t>(at - now_ms, 1);
    }
  }
  // Only reachable when the newest bucket alone is over: it expires last.
  return std::max<int64_t>((head_ + ring_) * width_ms_ - now_ms, 1);
}

bool SlidingWindow::Adjust(int64_t at_ms, uint64_t amount, bool top_up) {
  if (at_ms < 0) return false;
  int64_t j = at_ms / width_ms_;
  if (j > head_) j = head_;  // booked like Add does for stale times
  if (head_end_ms_ == 0 || head_ - j >= ring_) return false;
  uint64_t& c = j == head_ ? head_count_ : counts_[j % ring_];
  if (top_up) {
    c = SatAdd(c, amount);
    used_ = SatAdd(used_, amount);
  } else {
    const bool saturated = used_ == UINT64_MAX;
    uint64_t d = std::min(c, amount);
    c -= d;
    used_ -= std::min(used_, d);
    if (saturated) Resum();
  }
  return true;
}

namespace {
// One read of a field another process may be writing: the compiler may not
// read it again later (no double fetch), and a torn value is just a value.
template <typename T>
T Once(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
}  // namespace

bool SlidingWindow::Sound(int64_t now_ms) const {
  const int64_t span = Once(span_ms_);
  const int64_t guard = Once(guard_ms_);
  const int64_t width = Once(width_ms_);
  const int ring = Once(ring_);
  const int64_t head = Once(head_);
  if (span < 1 || span > kMaxSpanMs || guard < 0 || guard > kMaxGuardMs ||
      !HasShape(span + guard, width, ring)) {
    return false;
  }
  int64_t start;
  return head >= 0 && head <= now_ms && !__builtin_mul_overflow(head, width, &start) &&
         start <= now_ms;
}

bool SlidingWindow::HasShape(int64_t reach, int64_t width, int ring) {
  // width = ceil(reach / 60), ring = ceil(reach / width) + 1 (reach > 0).
  return width >= 1 && width <= reach && ring >= 2 && ring <= kMaxRing &&
         kTargetBuckets * (width - 1) < reach && reach <= kTargetBuckets * width &&
         (ring - 2) * width < reach && reach <= (ring - 1) * width;
}

bool SlidingWindow::Consistent(int64_t span_ms, int64_t now_ms) const {
  const int64_t span = Once(span_ms_);
  const int64_t guard = Once(guard_ms_);
  const int64_t width = Once(width_ms_);
  const int ring = Once(ring_);
  const int64_t head = Once(head_);
  const int64_t end = Once(head_end_ms_);
  if (span != span_ms || guard < 0 || guard > kMaxGuardMs ||
      !HasShape(span_ms + guard, width, ring)) {
    return false;
  }
  int64_t start;
  if (head < 0 || head > now_ms || __builtin_mul_overflow(head, width, &start) ||
      start > now_ms) {
    return false;
  }
  return end == 0 || end == start + width;
}

bool SlidingWindow::Sanitize(int64_t span_ms, int64_t now_ms, bool deep) {
  const int64_t span = Once(span_ms_);
  const int64_t guard = Once(guard_ms_);
  const int64_t width = Once(width_ms_);
  const int ring = Once(ring_);
  const int64_t g = guard < 0 || guard > kMaxGuardMs ? 0 : guard;
  if (span != span_ms || guard != g || !HasShape(span_ms + g, width, ring)) {
    *this = SlidingWindow(span_ms, g);
    return true;
  }
  // Every process reads one monotonic clock, and books only at times it
  // read under the lock: a newest bucket later than now is no bucket.
  const int64_t head = Once(head_);
  const int64_t now = std::max<int64_t>(now_ms, 0);
  int64_t head_start;
  if (head < 0 || head > now || __builtin_mul_overflow(head, width, &head_start) ||
      head_start > now) {
    Clear();
    return true;
  }
  bool changed = false;
  const int64_t end = Once(head_end_ms_);
  if (end != 0 && end != (head + 1) * width) {
    head_end_ms_ = (head + 1) * width;
    changed = true;
  }
  if (deep) {
    uint64_t& stray = counts_[head % ring];
    const uint64_t stray_count = Once(stray);
    if (stray_count != 0) {
      head_count_ = std::max(Once(head_count_), stray_count);
      stray = 0;
      changed = true;
    }
    const uint64_t before = Once(used_);
    Resum();
    changed |= used_ != before;
  }
  return changed;
}

}  // namespace ratetrack
